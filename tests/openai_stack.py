"""The demo stack (stack.py: supervisor + real model process on the demo model +
gunicorn gateway) as a session fixture, shared by the end-to-end and Java tests:
they load this module with `pytest_plugins`, so it starts once per session."""
from __future__ import annotations

import re
import time

import pytest

from tests.procs import Proc, free_port, python


class Stack:
    def __init__(self, proc: Proc, url: str, model_port: int):
        self.proc, self.url, self.model_url = proc, url, f"http://127.0.0.1:{model_port}"


@pytest.fixture(scope="session")
def demo_stack(demo_model_dir, tmp_path_factory):
    """`stack.py` as `make demo` runs it (supervisor + model process on the demo model
    + one gunicorn worker), with the cache off so that repeated requests reach the
    model. Started once for the end-to-end and Java tests."""
    tmp = tmp_path_factory.mktemp("openai-stack")
    ports = {name: free_port() for name in ("GATEWAY_PORT", "MODEL_PORT", "SUPERVISOR_PORT")}
    env = {**{k: str(v) for k, v in ports.items()}, "MODEL_PATH": "demo", "DEMO_MODEL_DIR": str(demo_model_dir),
           "WARMUP_REQUESTS": "1", "MODEL_URL": "", "CACHE_URL": "", "GATEWAY_WORKERS": "", "API_KEYS": "",
           "CACHE_MAX_ENTRIES": "0", "XDG_CACHE_HOME": str(tmp)}
    with Proc(python("stack.py"), env=env, unset=("PROMETHEUS_MULTIPROC_DIR",)) as proc:
        deadline = time.monotonic() + 180
        while not re.search(r"stack: ready", proc.output()):
            assert proc.popen.poll() is None, proc.output()[-4000:]
            assert time.monotonic() < deadline, "the demo stack was not ready in 180 s:\n" + proc.output()[-4000:]
            time.sleep(0.2)
        yield Stack(proc, f"http://127.0.0.1:{ports['GATEWAY_PORT']}", ports["MODEL_PORT"])
