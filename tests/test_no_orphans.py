"""No orphans: what stack.py (`make demo`) and supervisor.py start ends with them, even
when they are killed with SIGKILL and can clean nothing up themselves: every process
they started is gone and every port is free again. A supervisor started on its own
still outlives the shell that started it (it may run as a daemon)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import requests

from gateway import local_cache, multiproc
from harness.stack import PORTS, DemoStack, demo_env
from tests.fixtures.supervised import Supervised, alive, fake, wait_gone
from tests.procs import ROOT, child_env, cmdline, descendants, free_port, poll, python

pytestmark = pytest.mark.slow

# Idle, the gateway and the supervisor stop in a second or two; the bound is the
# supervisor's default SUPERVISOR_STOP_GRACE_SECONDS (30 s) and a margin.
STOP_S = 40


def port_free(port: int) -> bool:
    """No server listens on `port` (a socket of a closed connection may linger)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as every server here binds
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_sigkill_to_make_demos_stack_stops_everything_it_started(demo_model_dir, tmp_path):
    """`make demo`'s stack.py, ready, then SIGKILL: its supervisor and gateway get SIGTERM
    from the kernel and stop as on Ctrl-C: the model process, gunicorn's master and its
    workers end, the three ports are free, and gunicorn removed the temporary
    directories it made (a graceful stop, not a kill)."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = demo_env(demo_model_dir, XDG_CACHE_HOME=tmp_path, TMPDIR=scratch)
    with DemoStack(env) as demo:
        demo.wait_ready()
        tree = descendants(demo.proc.pid)
        started = " ".join(cmdline(pid) for pid in tree)
        for program in ("supervisor.py", "llava_server.py", "gunicorn"):
            assert program in started, f"{program} not running under stack.py: {started}"
        made = gateway_temporaries(scratch)
        assert len(made) == 2, f"expected gunicorn's metrics and cache directories, found {made}"

        demo.proc.signal(signal.SIGKILL)
        assert demo.proc.wait(timeout=10) == -signal.SIGKILL
        try:
            poll(lambda: not [pid for pid in tree if alive(pid)], STOP_S, "every process stack.py started gone",
                 interval=0.2)
        finally:  # a failure must not leave them to the next test
            for pid in tree:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
    assert all(port_free(int(env[name])) for name in PORTS), {name: port_free(int(env[name])) for name in PORTS}
    assert not gateway_temporaries(scratch), "left behind in TMPDIR"


def gateway_temporaries(tmpdir: Path) -> list[str]:
    return sorted(p.name for p in tmpdir.iterdir() if p.name.startswith((multiproc.PREFIX, local_cache.PREFIX)))


def test_sigkill_to_the_supervisor_takes_the_real_model_process_with_it(demo_model_dir):
    """supervisor.py as the README starts it (MODEL_PATH=demo, defaults otherwise) with
    the real model process: SIGKILL the supervisor, and the kernel kills the model."""
    with Supervised(env={"MODEL_PATH": "demo", "DEMO_MODEL_DIR": str(demo_model_dir)}, tuned=False) as sup:
        model = sup.wait_ready(timeout=180)["pid"]
        assert "llava_server.py" in cmdline(model)
        sup.signal(signal.SIGKILL)
        assert sup.wait_exit() == -signal.SIGKILL
        assert wait_gone(model, 5), "the model process outlived a SIGKILLed supervisor"
        assert poll(lambda: port_free(sup.model_port), 5, "MODEL_PORT free")


def test_a_supervisor_started_on_its_own_outlives_the_shell_that_started_it(tmp_path):
    """Only a parent that asks ties a child to its life: a supervisor started in the
    background by a shell that then exits keeps serving, its child with it (a daemon)."""
    url = f"http://127.0.0.1:{free_port()}"
    env = child_env({"SUPERVISOR_PORT": url.rsplit(":", 1)[1], "MODEL_PORT": str(free_port())})
    command = " ".join(python("supervisor.py", "--", *fake("healthy")))
    shell = subprocess.run(["sh", "-c", f"{command} >{tmp_path / 'supervisor.log'} 2>&1 & echo $!"], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=10, check=True)
    supervisor = int(shell.stdout)
    try:
        ready = poll(lambda: ready_status(url), 20, "the orphaned supervisor READY")
        assert alive(supervisor) and alive(ready["pid"])
    finally:
        os.kill(supervisor, signal.SIGTERM)
        assert wait_gone(supervisor, 15), "the supervisor did not stop on SIGTERM"
    assert wait_gone(ready["pid"], 5)


def ready_status(url: str) -> dict | None:
    try:
        snap = requests.get(url + "/status", timeout=2).json()
    except requests.RequestException:
        return None
    return snap if snap["state"] == "READY" else None
