"""CACHE_URL=redis://: one answer cache shared by every worker and gateway
replica, against a real redis-server; a Redis outage costs misses, not errors."""
from __future__ import annotations

import shutil
import time

import pytest
import requests

from tests.gateway_support import FakeUpstream, analyze, gateway, jpeg
from tests.procs import Proc, free_port

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("redis-server") is None,
                                 reason="redis-server not installed (apt-get install redis-server)")]


@pytest.fixture(scope="module")
def redis_url():
    port = free_port()
    proc = Proc(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
    try:
        deadline = time.monotonic() + 20
        import redis
        client = redis.Redis(port=port)
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, proc.output()
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.stop()


@pytest.fixture
def fake():
    upstream = FakeUpstream()
    yield upstream
    upstream.close()


def test_two_gateways_share_one_redis_cache(redis_url, fake):
    with gateway(fake.url, CACHE_URL=redis_url) as (one, _), gateway(fake.url, CACHE_URL=redis_url) as (two, _):
        first = analyze(one, jpeg(), "shared?").json()
        second = analyze(two, jpeg(), "shared?").json()
        other = analyze(two, jpeg(), "different prompt").json()
    assert first["status"] == "SUCCESS" and second["status"] == "CACHED"
    assert second["result"] == first["result"] and second["usage"] == first["usage"]
    assert other["status"] == "SUCCESS" and fake.calls == 2


def test_redis_entries_expire_after_the_ttl(redis_url, fake):
    with gateway(fake.url, CACHE_URL=redis_url, CACHE_TTL_SECONDS=1) as (url, _):
        statuses = [analyze(url, jpeg(), "expiring").json()["status"]]
        statuses.append(analyze(url, jpeg(), "expiring").json()["status"])
        time.sleep(1.2)
        statuses.append(analyze(url, jpeg(), "expiring").json()["status"])
    assert statuses == ["SUCCESS", "CACHED", "SUCCESS"] and fake.calls == 2


def test_redis_down_costs_misses_not_errors(fake):
    down = f"redis://127.0.0.1:{free_port()}/0"
    with gateway(fake.url, CACHE_URL=down) as (url, _):
        started = time.monotonic()
        answers = [analyze(url, jpeg(), "no redis").json()["status"] for _ in range(2)]
        elapsed = time.monotonic() - started
        metrics = requests.get(url + "/metrics").text
    assert answers == ["SUCCESS", "SUCCESS"] and fake.calls == 2
    assert elapsed < 3.0
    assert "llava_cache_errors_total 4.0" in metrics  # two reads and two writes failed
