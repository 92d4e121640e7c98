"""Real processes for tests: start a server on a free loopback port, wait until a
URL answers, fail at once if the process dies, stop it by process group."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A child process in its own process group whose output goes to a temp file."""

    def __init__(self, argv: list[str], env: dict | None = None, cwd: Path = ROOT, unset: tuple[str, ...] = ()):
        self.log = tempfile.NamedTemporaryFile(prefix="proc-", suffix=".log", delete=False)
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
        for name in unset:  # as a user's shell would have it: not set at all
            full_env.pop(name, None)
        self.popen = subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=self.log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def wait_for(self, url: str, status: int = 200, timeout: float = 60.0) -> requests.Response:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise AssertionError(f"process exited with {self.popen.returncode} before {url} answered {status}:\n"
                                     + self.output()[-4000:])
            try:
                last = requests.get(url, timeout=2)
                if last.status_code == status:
                    return last
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{url} did not answer {status} within {timeout}s (last: "
                             f"{last.status_code if last is not None else 'no answer'}):\n" + self.output()[-4000:])

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.popen.wait(timeout=timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM the group, then SIGKILL it if it outlives `timeout`."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
            except ProcessLookupError:
                pass
        try:  # leftovers of the group (grandchildren), if any
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self.popen.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def python(*args: str) -> list[str]:
    return [sys.executable, *args]
