"""The stack under test, as processes this suite started itself.

supervisor.py (which spawns the model process) and gunicorn (the gateway) run as
two separate process groups, not through stack.py: the faults need to stop and
start each one on its own (a new supervisor on the same ports, a new gateway
after a SIGTERM), which stack.py deliberately does not do. Every pid signalled
here is one of ours: a Popen's pid, or a child read from its /proc entry.
"""
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

from gateway.settings import GatewaySettings

ROOT = Path(__file__).resolve().parent.parent

# Tuned for a quick run: faults are detected and healed in seconds, not minutes.
# Each value is documented in the README's settings tables.
SETTINGS = {
    "MODEL_PATH": "demo",
    "LLAVA_FAULTS": "1",                       # the model serves POST /_faults
    "WARMUP_REQUESTS": "1",
    "SHUTDOWN_GRACE_SECONDS": "3",
    "SUPERVISOR_POLL_INTERVAL_SECONDS": "0.5",
    "SUPERVISOR_POLL_TIMEOUT_SECONDS": "1",
    "SUPERVISOR_FAILURE_THRESHOLD": "2",
    "SUPERVISOR_STOP_GRACE_SECONDS": "4",
    "SUPERVISOR_STABLE_SECONDS": "5",
    "GATEWAY_WORKERS": "2",
    "GATEWAY_THREADS": "16",
    "MAX_UPSTREAM_IN_FLIGHT": "4",             # x 2 workers = MAX_BATCH_SIZE
    "ADMISSION_QUEUE": "8",                    # 16 clients: some wait their turn, the rest see 429 at once
    "ADMISSION_WAIT_SECONDS": "5",             # well under the clients' 20 s: a wait ends in an answer
    "UPSTREAM_READ_TIMEOUT_SECONDS": "5",      # "slow past the read timeout" costs 5 s, not 60
    "UPSTREAM_HEALTH_INTERVAL_SECONDS": "0.5",
    "BREAKER_RESET_SECONDS": "3",
    "CACHE_URL": "",
    "API_KEYS": "",
    "LOG_LEVEL": "warning",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Proc:
    """One child in its own process group (so a signal reaches only it and what it
    spawned), output appended to a log file."""

    def __init__(self, name: str, argv: list[str], env: dict, log: Path):
        self.name, self.log = name, log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float) -> int | None:
        """SIGTERM the group, SIGKILL it past `timeout`; the exit code."""
        if self.alive():
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
            except ProcessLookupError:
                pass
        return self.popen.returncode


class Stack:
    def __init__(self, workdir: Path, demo_model_dir: Path | None = None):
        self.workdir = workdir
        self.ports = {name: free_port() for name in ("GATEWAY_PORT", "MODEL_PORT", "SUPERVISOR_PORT")}
        self.env = {**os.environ, **SETTINGS, **{k: str(v) for k, v in self.ports.items()},
                    "MODEL_URL": f"http://127.0.0.1:{self.ports['MODEL_PORT']}",
                    "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
        if demo_model_dir is not None:
            self.env["DEMO_MODEL_DIR"] = str(demo_model_dir)
        self.gateway_url = f"http://127.0.0.1:{self.ports['GATEWAY_PORT']}"
        self.model_url = self.env["MODEL_URL"]
        self.supervisor_url = f"http://127.0.0.1:{self.ports['SUPERVISOR_PORT']}"
        self.read_timeout_s = float(SETTINGS["UPSTREAM_READ_TIMEOUT_SECONDS"])
        self.graceful_timeout_s = GatewaySettings.from_env(self.env).graceful_timeout_s  # gunicorn_conf's
        self.supervisor: Proc | None = None
        self.gateway: Proc | None = None

    # ------------------------------------------------------------------ processes

    def start_supervisor(self) -> Proc:
        self.supervisor = self._start("supervisor", [sys.executable, "supervisor.py"], {})
        return self.supervisor

    def start_gateway(self) -> Proc:
        metrics_dir = tempfile.mkdtemp(prefix="metrics-", dir=self.workdir)
        self.gateway = self._start("gateway", [sys.executable, "-m", "gunicorn", "-c", "python:gateway.gunicorn_conf",
                                               "gateway.wsgi:app"], {"PROMETHEUS_MULTIPROC_DIR": metrics_dir})
        return self.gateway

    def _start(self, name: str, argv: list[str], extra: dict) -> Proc:
        return Proc(name, argv, {**self.env, **extra}, self.workdir / f"{name}.log")

    def close(self) -> None:
        for proc in (self.gateway, self.supervisor):
            if proc is not None:
                proc.stop(timeout=30)

    # ------------------------------------------------------------------ state

    def status(self) -> dict | None:
        """The supervisor's /status, or None when it does not answer."""
        try:
            return requests.get(self.supervisor_url + "/status", timeout=1).json()
        except (requests.RequestException, ValueError):
            return None

    def model_pid(self) -> int:
        """The model process: the supervisor's READY child, checked to be its child."""
        status = self.status()
        assert status and status["state"] == "READY", f"supervisor not READY: {status}"
        pid = int(status["pid"])
        assert pid in children(self.supervisor.pid), f"model pid {pid} is not a child of our supervisor"
        return pid

    def gateway_ready(self) -> bool:
        try:
            return requests.get(self.gateway_url + "/health/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def wait_ready(self, timeout: float, old_pid: int | None = None) -> float:
        """Until the supervisor is READY (with a pid other than `old_pid`) and the
        gateway finds the model ready; the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            for proc in (self.supervisor, self.gateway):
                if proc is not None and not proc.alive():
                    raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
            status = self.status()
            if status and status["state"] == "READY" and status["pid"] != old_pid and self.gateway_ready():
                return time.monotonic() - started
            time.sleep(0.1)
        raise RuntimeError(f"stack not ready within {timeout:.0f} s (supervisor: {self.status()})")

    def fault(self, mode: str, **spec) -> dict:
        """Arm the model process's fault injection (LLAVA_FAULTS=1)."""
        response = requests.post(self.model_url + "/_faults", json={"mode": mode, **spec}, timeout=5)
        response.raise_for_status()
        return response.json()

    def gateway_rss(self) -> int:
        """Resident memory of the gateway's workers (the master only forks them)."""
        return sum(rss_bytes(pid) for pid in children(self.gateway.pid))
