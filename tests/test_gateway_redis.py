"""CACHE_URL=redis://: one answer cache shared by every worker and gateway replica,
against a real redis-server: under the README's gunicorn (4 workers), across two
gateways, with a TTL; and a Redis that freezes, dies and comes back mid-run costs
misses, never failed or held-up requests."""
from __future__ import annotations

import json
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests

from tests.gateway_support import FakeUpstream, analyze, gateway, jpeg
from tests.openai_support import ChatUpstream
from tests.procs import Proc, free_port, poll
from tests.system import need

pytestmark = pytest.mark.slow
README_COMMAND = [str(Path(sys.executable).with_name("gunicorn")), "-c", "python:gateway.gunicorn_conf",
                  "gateway.wsgi:app"]
# gateway/cache.py gives Redis half a second; a request may wait on it twice (a read and
# a write), plus the request itself: written here, not imported from the code under test.
FROZEN_REDIS_BOUND_S = 2.5


def start_redis(port: int) -> Proc:
    proc = Proc([need("redis-server", ".ci/run installs redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no"], name="redis-server")
    client = redis.Redis(port=port, socket_timeout=1)

    def pong():
        try:
            return client.ping()
        except redis.ConnectionError:
            return False
    poll(pong, 20, "redis-server answering PING", alive=proc.running)
    return proc


@pytest.fixture(scope="module")
def redis_url():
    port = free_port()
    with start_redis(port):
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture
def fake():
    upstream = FakeUpstream()
    yield upstream
    upstream.close()


def metric(url: str, name: str) -> float:
    text = requests.get(url + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))


def test_two_gateways_share_one_redis_cache(redis_url, fake):
    with gateway(fake.url, CACHE_URL=redis_url) as (one, _), gateway(fake.url, CACHE_URL=redis_url) as (two, _):
        first = analyze(one, jpeg(), "shared?").json()
        second = analyze(two, jpeg(), "shared?").json()
        other = analyze(two, jpeg(), "different prompt").json()
    assert first["status"] == "SUCCESS" and second["status"] == "CACHED"
    assert second["result"] == first["result"] and second["usage"] == first["usage"]
    assert other["status"] == "SUCCESS" and fake.calls == 2


def test_redis_entries_expire_after_the_ttl(redis_url, fake):
    client = redis.Redis.from_url(redis_url)
    client.flushdb()  # only this test's entry below
    with gateway(fake.url, CACHE_URL=redis_url, CACHE_TTL_SECONDS=1) as (url, _):
        statuses = [analyze(url, jpeg(), "expiring").json()["status"]]
        statuses.append(analyze(url, jpeg(), "expiring").json()["status"])
        keys = client.keys("llava:answer:*")
        assert keys and all(0 < client.pttl(key) <= 1000 for key in keys)  # the TTL is Redis's, in ms
        poll(lambda: not client.exists(*keys), 5, "the entry expiring in Redis")
        statuses.append(analyze(url, jpeg(), "expiring").json()["status"])
    assert statuses == ["SUCCESS", "CACHED", "SUCCESS"] and fake.calls == 2


def test_redis_down_costs_misses_not_errors(fake):
    """No Redis server needed: nothing listens on the port."""
    down = f"redis://127.0.0.1:{free_port()}/0"
    with gateway(fake.url, CACHE_URL=down) as (url, _):
        started = time.monotonic()
        answers = [analyze(url, jpeg(), "no redis").json()["status"] for _ in range(2)]
        elapsed = time.monotonic() - started
        errors = metric(url, "llava_cache_errors_total")
    assert answers == ["SUCCESS", "SUCCESS"] and fake.calls == 2
    assert elapsed < 3.0
    assert errors == 4  # two reads and two writes failed


def test_redis_under_the_readmes_gunicorn_shares_one_cache_and_outlives_a_frozen_and_a_dead_redis(tmp_path):
    """The README's gunicorn command (4 workers) with CACHE_URL as docker compose sets
    it: the same request 8 times is 7 CACHED whichever worker answers; then Redis is
    frozen (SIGSTOP), resumed, killed and started again, and every request is answered."""
    port = free_port()
    redis_proc = start_redis(port)
    fake = ChatUpstream(model="llava-demo")
    proc = Proc(README_COMMAND, env={"GATEWAY_PORT": "0", "MODEL_URL": fake.url, "TMPDIR": str(tmp_path),
                                     "CACHE_URL": f"redis://127.0.0.1:{port}/0"})
    try:
        url = f"http://127.0.0.1:{proc.listening_port()}"
        proc.wait_for(url + "/health/ready", timeout=60)

        def eight_times(prompt: str) -> list[str]:
            first = analyze(url, jpeg(), prompt).json()["status"]
            with ThreadPoolExecutor(7) as pool:
                return [first, *(r.json()["status"] for r in pool.map(lambda _: analyze(url, jpeg(), prompt),
                                                                       range(7)))]

        statuses = eight_times("Redis shared?")
        assert statuses.count("CACHED") == 7, statuses

        def timed(prompt: str) -> tuple[str, float]:
            started = time.monotonic()
            body = analyze(url, jpeg(), prompt, timeout=30).json()
            return body["status"], time.monotonic() - started

        errors = metric(url, "llava_cache_errors_total")
        redis_proc.signal(signal.SIGSTOP)  # frozen: connections hang instead of being refused
        try:
            frozen = [timed(f"Redis frozen {i}") for i in range(3)]
        finally:
            redis_proc.signal(signal.SIGCONT)
        assert [s for s, _ in frozen] == ["SUCCESS"] * 3, frozen
        assert max(t for _, t in frozen) < FROZEN_REDIS_BOUND_S, frozen
        assert metric(url, "llava_cache_errors_total") >= errors + 3

        # Resumed: the connection pool recovers and the cache works again.
        poll(lambda: analyze(url, jpeg(), "Redis resumed").json()["status"] == "CACHED", 10,
             "a repeat answered CACHED after Redis resumed", interval=0.2)

        redis_proc.stop()  # dead: connections are refused at once
        dead = [timed("Redis dead") for _ in range(3)]
        assert [s for s, _ in dead] == ["SUCCESS"] * 3 and max(t for _, t in dead) < FROZEN_REDIS_BOUND_S, dead

        redis_proc = start_redis(port)  # back, empty
        poll(lambda: analyze(url, jpeg(), "Redis back").json()["status"] == "CACHED", 10,
             "a repeat answered CACHED after Redis came back", interval=0.2)
        assert json.loads(requests.get(url + "/health", timeout=5).text)["status"] == "UP"
    finally:
        proc.stop()
        redis_proc.stop()
        fake.close()
