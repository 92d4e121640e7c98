"""prometheus-client's multiprocess directory, for the gateway under gunicorn.

prometheus-client decides where samples live once, when it is first imported: in
files under PROMETHEUS_MULTIPROC_DIR when that is set, else in process memory.
Under gunicorn every worker is a process and /metrics must sum them all, so the
directory must be in the environment before anything imports prometheus-client:
in the master, before any worker is forked. This module therefore imports
prometheus-client only inside functions, and gunicorn_conf (which imports nothing
else that does) calls `choose()` while it loads.
"""
from __future__ import annotations

import os
import shutil
import tempfile

ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "llava-gateway-metrics-"


def choose(environ=os.environ) -> str | None:
    """Use the directory the environment names, or make a temporary one and name it
    there. Returns the directory made here (to remove at exit), None for a given one."""
    if environ.get(ENV):
        return None
    made = tempfile.mkdtemp(prefix=PREFIX)
    environ[ENV] = made
    return made


def prepare(path: str) -> None:
    """Empty the directory at start: files left by a previous run would be summed in."""
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.remove(os.path.join(path, name))


def worker_exited(pid: int) -> None:
    """Drop a dead worker's live gauges (in-flight requests, breaker states)."""
    if os.environ.get(ENV):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid)


def remove(made: str | None) -> None:
    if made:
        shutil.rmtree(made, ignore_errors=True)
