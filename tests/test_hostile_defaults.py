"""Issue 17, "defaults", on the gateway's side: what it does when started with its
defaults or close to them (the compose and Kubernetes side is
tests/test_hostile_deploy.py).

- A gateway that listens beyond loopback refuses to start without API_KEYS unless
  ALLOW_ANONYMOUS=true; on loopback (the README's `make demo`) it stays anonymous.
- /health, open to anyone, names no internal URL.
- Whatever requests wait for (a model call slot, an identical call in flight, an
  image decode), they never take the worker's last spare threads: health probes
  are answered while the API answers 429.
- Workers are replaced after GATEWAY_MAX_REQUESTS requests, with jitter, and run
  with two malloc arenas.
"""
from __future__ import annotations

import runpy
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from gateway import memory
from gateway.settings import GatewaySettings
from llava_common.settings import SettingsError
from tests.gateway_support import FakeUpstream, analyze, jpeg
from tests.hostile_support import README_COMMAND, Gunicorn, listening, timed
from tests.procs import ROOT, Proc, free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def fake():
    upstream = FakeUpstream()
    yield upstream
    upstream.close()


def test_a_published_gateway_needs_keys_or_an_explicit_anonymous():
    """Refused at start (exit 3, nothing bound) beyond loopback without keys."""
    port = free_port()
    proc = Proc(README_COMMAND, env={"GATEWAY_HOST": "0.0.0.0", "GATEWAY_PORT": str(port)},
                unset=("API_KEYS", "ALLOW_ANONYMOUS"))
    assert proc.wait(timeout=30) == 3
    assert "GATEWAY_HOST=0.0.0.0 listens beyond loopback and API_KEYS is empty" in proc.output()
    assert not listening(port)
    for allowed in ({"API_KEYS": "k"}, {"ALLOW_ANONYMOUS": "true"}, {"GATEWAY_HOST": "127.0.0.1"},
                    {"GATEWAY_HOST": "localhost"}, {"GATEWAY_HOST": "::1"}):
        GatewaySettings.from_env({"GATEWAY_HOST": "0.0.0.0", **allowed})
    for published in ("0.0.0.0", "::", "10.0.0.5", "gateway.internal"):
        with pytest.raises(SettingsError, match="ALLOW_ANONYMOUS"):
            GatewaySettings.from_env({"GATEWAY_HOST": published})


def test_keys_and_the_cache_password_can_come_from_secret_files(tmp_path, fake):
    """API_KEYS_FILE and CACHE_PASSWORD_FILE (Docker and Kubernetes secrets are files):
    the gateway reads them, and a key from the file is required."""
    (tmp_path / "keys").write_text("from-a-file\n")
    (tmp_path / "redis").write_text("s3cret/p@ss\n")
    settings = GatewaySettings.from_env({"API_KEYS_FILE": str(tmp_path / "keys"), "CACHE_URL": "redis://redis:6379/0",
                                         "CACHE_PASSWORD_FILE": str(tmp_path / "redis")})
    assert settings.api_keys == ("from-a-file",) and settings.cache_url == "redis://:s3cret%2Fp%40ss@redis:6379/0"
    assert "s3cret" not in repr(settings) and "from-a-file" not in repr(settings)
    with pytest.raises(SettingsError, match="API_KEYS_FILE='/nonexistent': cannot be read"):
        GatewaySettings.from_env({"API_KEYS_FILE": "/nonexistent"})
    gateway = Gunicorn(fake.url, GATEWAY_WORKERS=1, API_KEYS_FILE=tmp_path / "keys")
    try:
        without = analyze(gateway.url, jpeg())
        with_key = analyze(gateway.url, jpeg(), headers={"X-API-Key": "from-a-file"})
    finally:
        gateway.stop()
    assert (without.status_code, with_key.status_code) == (401, 200)


def test_health_names_no_internal_url(fake):
    gateway = Gunicorn(fake.url, GATEWAY_WORKERS=1)
    try:
        health = requests.get(gateway.url + "/health", timeout=5)
    finally:
        gateway.stop()
    port = fake.url.rsplit(":", 1)[1]
    assert health.status_code == 200 and health.json()["components"]["model"]["details"]["replicas"] == [
        {"ready": True, "breaker": "closed"}]
    assert "127.0.0.1" not in health.text and port not in health.text


def test_waiting_requests_never_take_the_spare_threads(fake):
    """40 identical requests while the model stalls: they wait as followers of one call
    (no admission slot bounds those), yet with 16 threads no more than 12 are kept;
    the rest get 429 at once, and /health/live answers in under 1 s throughout."""
    fake.mode = "stall"
    gateway = Gunicorn(fake.url, GATEWAY_WORKERS=1, GATEWAY_THREADS=16, MAX_UPSTREAM_IN_FLIGHT=4, ADMISSION_QUEUE=8,
                       UPSTREAM_READ_TIMEOUT_SECONDS=30)
    image = jpeg(43, 30)
    try:
        with ThreadPoolExecutor(40) as pool:
            asked = [pool.submit(timed, analyze, gateway.url, image, "Same?", timeout=60) for _ in range(40)]
            time.sleep(1.5)
            health = [timed(requests.get, gateway.url + "/health/live", timeout=5) for _ in range(4)]
            refused = [f.result() for f in asked if f.done()]
            fake.release.set()
            answers = [f.result() for f in asked]
    finally:
        gateway.stop()
    assert all(r.status_code == 200 and t < 1.0 for r, t in health), health
    assert len(refused) >= 40 - 12 and all(r.status_code == 429 and r.headers["Retry-After"] for r, _ in refused)
    assert sorted({r.json()["status"] for r, _ in answers}) == ["OVERLOADED", "SUCCESS"]
    assert fake.calls == 1


def test_workers_are_replaced_after_max_requests(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setenv("GATEWAY_MAX_REQUESTS", "200")
    config = runpy.run_path(str(ROOT / "gateway" / "gunicorn_conf.py"))
    assert (config["max_requests"], config["max_requests_jitter"]) == (200, 20)
    assert memory.limit_arenas() and memory.trim() in (True, False)
    gateway = Gunicorn(fake.url, GATEWAY_WORKERS=1, GATEWAY_MAX_REQUESTS=20)
    try:
        first = gateway.worker()
        codes = [requests.get(gateway.url + "/health/live", timeout=5).status_code for _ in range(30)]
        deadline = time.monotonic() + 10
        while gateway.workers() == [first] and time.monotonic() < deadline:
            time.sleep(0.1)
        later = gateway.workers()
    finally:
        gateway.stop()
    assert set(codes) == {200} and later and first not in later
