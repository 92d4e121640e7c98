"""The demo stack, as processes this harness starts itself.

`demo_env` is the one environment of the demo stack: what `make demo` sets
(MODEL_PATH=demo; the Makefile's HF_HUB_OFFLINE=1 comes with every child) plus
free loopback ports, the rest at the defaults unless a caller names a setting.
`DemoStack` runs it through stack.py, as `make demo` does (tests, benchmarks).
`Stack` runs supervisor.py and gunicorn as two separate process groups (the chaos
suite): its faults stop and start each one on its own (a new supervisor on the
same ports, a new gateway after a SIGTERM), which stack.py deliberately does not
do. Every pid signalled here is one of ours: a Popen's pid, or a child read from
its /proc entry.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import requests

from .procs import Proc, children, free_port, python, rss_bytes

PORTS = ("GATEWAY_PORT", "MODEL_PORT", "SUPERVISOR_PORT")
STACK_READY = "stack: ready"


def demo_env(demo_model_dir: Path | None = None, **settings) -> dict[str, str]:
    """`make demo`'s environment on free ports: MODEL_PATH=demo, the ports, and
    `settings` (only what the caller means to change; everything else defaults)."""
    env = {"MODEL_PATH": "demo", **{name: str(free_port()) for name in PORTS}}
    if demo_model_dir is not None:  # built once per test session instead of in ~/.cache
        env["DEMO_MODEL_DIR"] = str(demo_model_dir)
    env.update({k: str(v) for k, v in settings.items()})
    return env


class DemoStack:
    """stack.py (supervisor + model process + gunicorn gateway) as `make demo` runs it."""

    def __init__(self, env: dict[str, str], log: Path | None = None):
        self.env = env
        self.url = f"http://127.0.0.1:{env['GATEWAY_PORT']}"
        self.model_url = f"http://127.0.0.1:{env['MODEL_PORT']}"
        self.supervisor_url = f"http://127.0.0.1:{env['SUPERVISOR_PORT']}"
        self.proc = Proc(python("stack.py"), env=env, log=log, name="stack")

    def wait_ready(self, timeout: float = 180.0) -> "DemoStack":
        """Until stack.py prints its banner (the gateway found the model ready)."""
        self.proc.wait_for_output(STACK_READY, timeout)
        return self

    def close(self) -> int | None:
        return self.proc.stop(timeout=90)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# Tuned for the chaos suite's quick run: faults are detected and healed in seconds,
# not minutes. Each setting is documented in docs/reference/settings.md.
CHAOS_SETTINGS = {
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
    "LOG_LEVEL": "warning",
}


class Stack:
    """Supervisor (which spawns the model process) and gunicorn gateway, each in its
    own process group, logs under `workdir`."""

    def __init__(self, workdir: Path, demo_model_dir: Path | None = None, settings: dict | None = None):
        self.workdir = workdir
        self.settings = dict(CHAOS_SETTINGS if settings is None else settings)
        self.env = demo_env(demo_model_dir, **self.settings)
        self.env["MODEL_URL"] = f"http://127.0.0.1:{self.env['MODEL_PORT']}"
        self.gateway_url = f"http://127.0.0.1:{self.env['GATEWAY_PORT']}"
        self.model_url = self.env["MODEL_URL"]
        self.supervisor_url = f"http://127.0.0.1:{self.env['SUPERVISOR_PORT']}"
        from gateway.settings import GatewaySettings
        gateway = GatewaySettings.from_env(self.env)
        self.read_timeout_s = gateway.read_timeout_s
        self.graceful_timeout_s = gateway.graceful_timeout_s  # gunicorn_conf's
        self.supervisor: Proc | None = None
        self.gateway: Proc | None = None

    # ------------------------------------------------------------------ processes

    def start_supervisor(self) -> Proc:
        self.supervisor = self._start("supervisor", python("supervisor.py"), {})
        return self.supervisor

    def start_gateway(self) -> Proc:
        metrics_dir = tempfile.mkdtemp(prefix="metrics-", dir=self.workdir)
        self.gateway = self._start("gateway", python("-m", "gunicorn", "-c", "python:gateway.gunicorn_conf",
                                                     "gateway.wsgi:app"), {"PROMETHEUS_MULTIPROC_DIR": metrics_dir})
        return self.gateway

    def _start(self, name: str, argv: list[str], extra: dict) -> Proc:
        return Proc(argv, {**self.env, **extra}, log=self.workdir / f"{name}.log", name=name)

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
                    raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail(3000)}")
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
