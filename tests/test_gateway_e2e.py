"""End to end, as a new user runs it: `stack.py` (what `make demo` runs) brings up
supervisor + the real model process on the demo model + the gunicorn gateway;
an upload answers, the same again answers CACHED, killing the model process turns
the next answer into FALLBACK within a second or two, and Ctrl-C stops it all."""
from __future__ import annotations

import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from harness.stack import DemoStack, demo_env
from tests.gateway_support import analyze, jpeg
from tests.procs import ROOT, children, cmdline, poll

pytestmark = pytest.mark.slow


def test_demo_stack_answers_caches_falls_back_and_stops(demo_model_dir, tmp_path):
    """`make demo`'s stack with nothing else set: default warmup, 4 gateway workers, the
    default (shared) cache. Only the ports (free ones), the demo model built once per
    session and where the example photo goes are given."""
    env = demo_env(demo_model_dir, XDG_CACHE_HOME=tmp_path)
    ports = {name: env[name] for name in ("GATEWAY_PORT", "MODEL_PORT", "SUPERVISOR_PORT")}
    with DemoStack(env) as demo:
        stack = demo.proc
        example = stack.wait_for_output(r"curl -F image=@(\S+) -F prompt=\"What's in this picture\?\" (\S+)", 180)
        photo, url = Path(example.group(1)), example.group(2)
        assert photo.exists() and url == f"http://localhost:{ports['GATEWAY_PORT']}/api/v1/multimodal/analyze"
        base = url.split("/api/")[0].replace("localhost", "127.0.0.1")

        first = analyze(base, photo.read_bytes(), "What's in this picture?", params={"max-tokens": "8"},
                        headers={"X-Request-ID": "e2e-first"}, timeout=120)
        body = first.json()
        assert first.status_code == 200 and body["status"] == "SUCCESS", body
        assert body["model"] == "llava-demo" and body["requestId"] == first.headers["X-Request-ID"] != "e2e-first"
        assert first.headers["X-Client-Request-ID"] == "e2e-first"
        assert body["usage"]["promptTokens"] > 500 and 1 <= body["usage"]["completionTokens"] <= 8
        assert f"{body['requestId']} tenant=- client_request_id=e2e-first" in stack.output(), \
            "both ids must reach the model process's log"

        # The banner's promise, "the same again answers CACHED", whichever of the 4 workers answers.
        with ThreadPoolExecutor(7) as pool:
            again = list(pool.map(lambda _: analyze(base, photo.read_bytes(), "What's in this picture?",
                                                    params={"max-tokens": "8"}).json(), range(7)))
        assert [a["status"] for a in again] == ["CACHED"] * 7 and again[0]["result"] == body["result"]
        metrics = requests.get(base + "/metrics", timeout=10).text  # make demo sets no PROMETHEUS_MULTIPROC_DIR
        assert 'llava_requests_total{endpoint="/api/v1/multimodal/analyze",status="CACHED"} 7.0' in metrics

        # The banner and the README give the same OpenAI base URL.
        banner = re.search(r"OpenAI-compatible base URL[^:]*: (\S+)", stack.output()).group(1)
        documented = banner.replace(f":{ports['GATEWAY_PORT']}", ":8080")
        assert documented.endswith("/v1") and f"`{documented}`" in (ROOT / "README.md").read_text()

        supervisor = next(p for p in children(stack.pid) if "supervisor.py" in cmdline(p))
        model = next(p for p in children(supervisor) if "llava_server.py" in cmdline(p))
        os.kill(model, signal.SIGKILL)
        poll(lambda: not Path(f"/proc/{model}").exists() or "zombie" in Path(f"/proc/{model}/status").read_text(),
             5, "the model process gone")
        started = time.monotonic()
        fallback = analyze(base, jpeg(), "Is the model there?", params={"max-tokens": "8"}, timeout=10)
        assert fallback.json()["status"] == "FALLBACK" and time.monotonic() - started < 2.0

        stack.signal(signal.SIGINT)  # Ctrl-C
        assert stack.wait(timeout=90) == 0, stack.output()[-4000:]
        assert "stack: stopped" in stack.output()
    for pid in (supervisor, model):
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
