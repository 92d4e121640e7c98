"""The supervised child process: spawned in its own process group, tied to the
supervisor's life, its output forwarded line by line and its last lines kept."""
from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
import sys
import threading

from llava_common.parent_death import die_with_parent

log = logging.getLogger("llava_supervisor.child")

# A line longer than this is forwarded in pieces, so a child writing without
# newlines cannot make the supervisor buffer without bound.
MAX_LINE_BYTES = 64 * 1024
# Lines kept per stream for crash reports (more than are logged, which is a setting).
TAIL_KEPT = 200

class Child:
    """Implements states.ProcessPort for one command; each spawn replaces the last child.

    The child is SIGKILLed by the kernel when the supervisor dies, even by SIGKILL
    (llava_common/parent_death.py), so a model never outlives its supervisor holding a
    GPU. Spawn from a thread that lives as long as the supervisor (the main thread).
    """

    def __init__(self, argv: list[str], env: dict[str, str], name: str, out=None, err=None):
        self.argv, self.env, self.name = argv, env, name
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.popen: subprocess.Popen | None = None
        self._reported = False
        self._readers: list[threading.Thread] = []
        self._tails = {"stdout": collections.deque(maxlen=TAIL_KEPT), "stderr": collections.deque(maxlen=TAIL_KEPT)}
        self._write_lock = threading.Lock()

    # ---- ProcessPort ----

    def spawn(self) -> int:
        for tail in self._tails.values():
            tail.clear()
        self.popen = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, start_new_session=True,
                                      preexec_fn=die_with_parent(signal.SIGKILL))
        self._reported = False
        pid = self.popen.pid
        self._readers = [threading.Thread(target=self._forward, args=(self.popen.stdout, "stdout", self.out, pid),
                                          name=f"child-{pid}-stdout", daemon=True),
                         threading.Thread(target=self._forward, args=(self.popen.stderr, "stderr", self.err, pid),
                                          name=f"child-{pid}-stderr", daemon=True)]
        for reader in self._readers:
            reader.start()
        return pid

    def terminate(self) -> None:
        # SIGCONT after SIGTERM (as systemd does): a stopped (SIGSTOPped) child
        # cannot act on SIGTERM until it runs again, and deserves its graceful exit.
        self._signal_group(signal.SIGTERM)
        self._signal_group(signal.SIGCONT)

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)

    def tail(self) -> list[str]:
        """The last stderr lines (where Python tracebacks and logs go), else stdout's."""
        return list(self._tails["stderr"] or self._tails["stdout"])

    # ---- runner ----

    def poll(self) -> int | None:
        """The child's return code, reported once, after it has exited; else None."""
        if self.popen is None or self._reported:
            return None
        code = self.popen.poll()
        if code is None:
            return None
        self._reported = True
        # Grandchildren left in its group would hold its pipes (and maybe a GPU).
        self._signal_group(signal.SIGKILL)
        for reader in self._readers:  # the last lines belong in the crash report
            reader.join(timeout=2.0)
        return code

    def kill_and_reap(self, timeout: float = 5.0) -> None:
        """Last resort on the way out: nothing of the child may survive the supervisor."""
        if self.popen is None:
            return
        self._signal_group(signal.SIGKILL)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.error("child (pid %d) still not reaped after SIGKILL", self.popen.pid)

    # ---- internals ----

    def _signal_group(self, sig: int) -> None:
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, sig)  # start_new_session: the group id is the child's pid
        except ProcessLookupError:
            pass  # the group is gone already

    def _forward(self, pipe, stream: str, sink, pid: int) -> None:
        prefix = f"{self.name}[{pid}] | "
        tail = self._tails[stream]
        with pipe:
            for raw in iter(lambda: pipe.readline(MAX_LINE_BYTES), b""):
                # A progress bar redraws itself with \r: keep what a terminal would show.
                parts = [part for part in raw.decode("utf-8", errors="replace").rstrip("\n").split("\r") if part]
                line = parts[-1] if parts else ""
                tail.append(line)
                with self._write_lock:
                    try:
                        sink.write(prefix + line + "\n")
                        sink.flush()
                    except (OSError, ValueError):
                        pass  # our own stdout is gone (closed pipe): keep draining so the child never blocks
