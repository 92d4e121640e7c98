"""The harness starts children from a whitelisted environment: what a developer
exported (API_KEYS, MAX_BATCH_SIZE, CACHE_URL) never reaches them; where packages
are (PYTHONPATH, the GPU machine's only site) does. `harness.serve`, the demo stack
for the Java integration tests, stops everything when its caller goes."""
import json
import os
import signal
import subprocess

import pytest
import requests

from tests.procs import ROOT, Proc, child_env, descendants, python


def test_exported_settings_do_not_reach_a_child(monkeypatch, tmp_path):
    for name, value in {"API_KEYS": "k", "MAX_BATCH_SIZE": "1", "CACHE_URL": "redis://elsewhere:6379/0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    site = tmp_path / "site"
    (site / "only_on_pythonpath").mkdir(parents=True)
    (site / "only_on_pythonpath" / "__init__.py").write_text("WHERE = 'pythonpath'\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    assert child_env()["PATH"] == "/usr/bin:/bin" and "API_KEYS" not in child_env()
    with Proc(python("-c", "import json, os, only_on_pythonpath; print(json.dumps(dict(os.environ)))"),
              env={"GATEWAY_PORT": "0"}, unset=("PYTHONUNBUFFERED",), log=tmp_path / "env.log") as proc:
        assert proc.wait(timeout=30) == 0
    seen = json.loads(proc.output())
    assert not {"API_KEYS", "MAX_BATCH_SIZE", "CACHE_URL", "PYTHONUNBUFFERED"} & set(seen)
    assert seen["GATEWAY_PORT"] == "0" and seen["HF_HUB_OFFLINE"] == "1" and seen["PATH"] == "/usr/bin:/bin"
    assert seen["PYTHONPATH"] == str(site)


@pytest.mark.slow
def test_serve_prints_the_urls_and_stops_the_stack_when_stdin_ends(demo_model_dir):
    """What clients/java's llava-test-stack relies on: settings as KEY=VALUE, one line of
    URLs once ready, and a whole stop (exit 0, no process left, the port free) when the
    caller's end of stdin closes, which it does even when the JVM is killed."""
    serve = subprocess.Popen(python("-m", "harness.serve", f"DEMO_MODEL_DIR={demo_model_dir}", "WARMUP_REQUESTS=1",
                                    "API_KEYS=k-1"), cwd=ROOT, env=child_env(), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        urls = json.loads(serve.stdout.readline())
        assert requests.get(urls["gateway"] + "/health/ready", timeout=10).status_code == 200
        assert requests.get(urls["gateway"] + "/v1/models", timeout=10).status_code == 401  # API_KEYS reached it
        stack = descendants(serve.pid)
        assert stack
        serve.stdin.close()
        assert serve.wait(timeout=150) == 0
        assert not [pid for pid in stack if os.path.exists(f"/proc/{pid}")]
        with pytest.raises(requests.ConnectionError):
            requests.get(urls["gateway"] + "/health/live", timeout=5)
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
