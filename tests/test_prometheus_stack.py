"""A real Prometheus (Debian's package) scrapes the running demo stack on loopback:
the gateway, the model process and the supervisor are up, and llava_requests_total
counts the request sent through the gateway, by status."""
from __future__ import annotations

import pytest
import requests
import yaml

from harness.stack import DemoStack, demo_env
from tests.gateway_support import analyze, jpeg
from tests.procs import Proc, free_port, poll
from tests.system import need

pytestmark = pytest.mark.slow


def query(prom: str, expr: str) -> list:
    response = requests.get(prom + "/api/v1/query", params={"query": expr}, timeout=5)
    response.raise_for_status()
    return response.json()["data"]["result"]


def wait_for(prom: str, expr: str, ok, timeout: float = 60):
    return poll(lambda: (result := query(prom, expr)) and ok(result) and result, timeout, expr, interval=0.5)


def test_prometheus_scrapes_the_demo_stack(demo_model_dir, tmp_path):
    prometheus = need("prometheus", ".ci/run installs Debian's prometheus package")
    env = demo_env(demo_model_dir, WARMUP_REQUESTS=1)
    prom_port = free_port()
    config = {"global": {"scrape_interval": "1s"}, "scrape_configs": [
        {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{env[port]}"]}]}
        for job, port in (("gateway", "GATEWAY_PORT"), ("model", "MODEL_PORT"), ("supervisor", "SUPERVISOR_PORT"))]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prom = f"http://127.0.0.1:{prom_port}"
    with DemoStack(env) as stack, \
            Proc([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                  f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                  f"--web.listen-address=127.0.0.1:{prom_port}"]) as server:
        gateway = stack.url
        stack.wait_ready(180)
        server.wait_for(prom + "/-/ready", 200, timeout=60)
        answer = analyze(gateway, jpeg(), "What is in this picture?", params={"max-tokens": "4"}, timeout=60)
        assert answer.json()["status"] == "SUCCESS", answer.text

        up = wait_for(prom, "up", lambda r: len(r) == 3 and all(s["value"][1] == "1" for s in r))
        assert {s["metric"]["job"] for s in up} == {"gateway", "model", "supervisor"}
        counted = wait_for(prom, 'llava_requests_total{status="SUCCESS"}', lambda r: r and float(r[0]["value"][1]) >= 1)
        assert counted[0]["metric"]["endpoint"] == "/api/v1/multimodal/analyze"
        assert wait_for(prom, "llava_model_generation_tokens_total", lambda r: r and float(r[0]["value"][1]) >= 4)
        assert wait_for(prom, 'llava_supervisor_state{state="READY"}', lambda r: r and r[0]["value"][1] == "1")
