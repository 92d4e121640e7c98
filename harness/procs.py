"""One real child process: started from a whitelisted environment on loopback ports,
waited for by polling the state it should reach (never a fixed sleep), stopped by
process group.

The environment is built, not inherited: a developer's exported API_KEYS,
MAX_BATCH_SIZE or CACHE_URL must not change what a test sees, so a child gets only
what makes a program run at all on this machine, plus what the caller names.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Mapping, TypeVar

import requests

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
# Where programs and the home directory are, who runs them, locale and time zone, and
# where temporary files go. Nothing any of our processes reads as a setting.
INHERITED = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
# What every child gets: output line by line, and no network (the README's tests
# need none; the Makefile sets HF_HUB_OFFLINE=1 for `make test` and `make demo`).
BASE = {"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}


def free_port() -> int:
    """A free loopback port, for servers that cannot be told to pick one (port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def child_env(env: Mapping[str, str] | None = None, unset: tuple[str, ...] = (),
              inherit: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The whitelisted part of `inherit`, then BASE, then `env`, less `unset`."""
    full = {name: inherit[name] for name in INHERITED if name in inherit}
    full.update(BASE)
    full.update({k: str(v) for k, v in (env or {}).items()})
    for name in unset:  # as a user's shell would have it: not set at all
        full.pop(name, None)
    return full


def poll(check: Callable[[], T], timeout: float, what: str, interval: float = 0.05,
         alive: Callable[[], None] = lambda: None) -> T:
    """Call `check` until it returns something truthy; that value. `alive` raises when
    what is waited on can no longer come (a process exited)."""
    deadline = time.monotonic() + timeout
    while True:
        alive()
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)


class Proc:
    """A child process in its own process group (a signal reaches only it and what it
    spawned) whose output goes to a file."""

    def __init__(self, argv: list[str], env: dict | None = None, cwd: Path = ROOT, unset: tuple[str, ...] = (),
                 log: Path | None = None, name: str | None = None):
        self.name = name or Path(argv[0]).name
        if log is None:
            handle = tempfile.NamedTemporaryFile(prefix="proc-", suffix=".log", delete=False)
            handle.close()
            log = Path(handle.name)
        self.log = Path(log)
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(argv, cwd=cwd, env=child_env(env, unset), stdout=out,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, chars: int = 4000) -> str:
        return self.output()[-chars:]

    def running(self) -> None:
        """Raise (with the last output) if the process has exited."""
        if self.popen.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")

    def wait_for(self, url: str, status: int = 200, timeout: float = 60.0) -> requests.Response:
        """Poll `url` until it answers `status`; fail at once if the process exits."""
        def answered():  # a tuple: a Response is falsy when its status is an error
            try:
                response = requests.get(url, timeout=2)
            except requests.RequestException:
                return None
            return (response,) if response.status_code == status else None
        try:
            return poll(answered, timeout, f"{url} answering {status}", 0.1, self.running)[0]
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.tail()}") from None

    def wait_for_output(self, pattern: str, timeout: float) -> re.Match:
        """Poll the output until `pattern` appears in it; the match."""
        try:
            return poll(lambda: re.search(pattern, self.output()), timeout, f"{pattern!r} in the output", 0.1,
                        self.running)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.tail()}") from None

    def listening_port(self, timeout: float = 60.0) -> int:
        """The port a server started with port 0 reports (`listening on http://host:PORT`,
        gunicorn's `Listening at: http://host:PORT`, the supervisor's `status on ...`)."""
        found = self.wait_for_output(r"(?:[Ll]istening (?:on|at:)|status on) https?://[^\s:]+:(\d+)", timeout)
        return int(found.group(1))

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.popen.wait(timeout=timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM the group, then SIGKILL it if it outlives `timeout`; the exit code."""
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


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def descendants(pid: int) -> list[int]:
    """Every process under `pid`: children, their children, and so on."""
    found, todo = [], children(pid)
    while todo:
        found.append(todo.pop())
        todo.extend(children(found[-1]))
    return found


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
