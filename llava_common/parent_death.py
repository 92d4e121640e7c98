"""Children that end with their parent: no process we start may outlive the one that
started it holding a port or a GPU (stack.py's supervisor and gateway, the
supervisor's model process), even when that parent is killed with SIGKILL and can
run no cleanup of its own.

Linux's PR_SET_PDEATHSIG asks the kernel to send a signal to the child when its
parent dies. It is set in the child between fork() and exec() (`preexec_fn`), so only
the process that starts a child decides: a supervisor started on its own by systemd
or a shell is free to run as a daemon.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Callable

from . import exit_codes

PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_prctl = _libc.prctl if _libc is not None else None  # resolved here: the forked child only calls it


def die_with_parent(sig: signal.Signals = signal.SIGKILL) -> Callable[[], None]:
    """A `preexec_fn` for subprocess.Popen: the child gets `sig` when the calling
    process dies. Popen from a thread that lives as long as the process (the main
    thread): the kernel fires the signal when the *thread* that forked exits."""
    parent_pid = os.getpid()

    def preexec() -> None:
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        # The death signal is armed only from here on: if the parent died between
        # fork() and prctl() it will never come (and without prctl there is none at
        # all). The child has then been re-parented, so getppid() tells: never exec
        # an orphan.
        if os.getppid() != parent_pid:
            os._exit(exit_codes.CRASH)
    return preexec
