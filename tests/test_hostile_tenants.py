"""Issue 17, "tenants": two API keys ask the same question of a gateway under
gunicorn. The caller's key (a hash of it) is part of every cache and single-flight
key, so neither gets the other's answer, cached or in flight, unless
CACHE_SHARED_ACROSS_KEYS=true asks for sharing.

Before: key B got key A's answer, `CACHED`.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway import auth
from gateway.cache import cache_key, chat_cache_key
from tests.gateway_support import FakeUpstream, analyze, jpeg
from tests.hostile_support import Gunicorn, timed

pytestmark = pytest.mark.slow
A, B = "key-of-tenant-a", "key-of-tenant-b"


def as_(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def fake():
    upstream = FakeUpstream()
    yield upstream
    upstream.close()


def test_one_key_never_gets_an_answer_made_for_another(fake):
    """Bound: B's identical request is a SUCCESS of its own (one more model call),
    A's repeat is CACHED; each answer within 1 s."""
    gateway = Gunicorn(fake.url, GATEWAY_WORKERS=1, API_KEYS=f"{A},{B}")
    try:
        image = jpeg(40, 30)
        answers = [timed(analyze, gateway.url, image, "Same question?", headers=as_(key)) for key in (A, B, A, B)]
    finally:
        gateway.stop()
    assert [r.json()["status"] for r, _ in answers] == ["SUCCESS", "SUCCESS", "CACHED", "CACHED"]
    assert answers[0][0].json()["result"] != answers[1][0].json()["result"]
    assert fake.calls == 2 and max(t for _, t in answers) < 1.0


def test_identical_requests_in_flight_are_shared_only_within_a_key(fake):
    """A and B ask at the same moment while the model takes 0.5 s: two model calls,
    not one shared (the single-flight key carries the tenant too); two requests of
    A at once share one call."""
    fake.delay_s = 0.5
    gateway = Gunicorn(fake.url, GATEWAY_WORKERS=1, API_KEYS=f"{A},{B}")
    try:
        image = jpeg(41, 30)
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda key: analyze(gateway.url, image, "At once?", headers=as_(key)), (A, B, A)))
    finally:
        gateway.stop()
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert fake.calls == 2
    assert answers[0].json()["result"] == answers[2].json()["result"] != answers[1].json()["result"]


def test_sharing_across_keys_is_a_setting(fake):
    gateway = Gunicorn(fake.url, GATEWAY_WORKERS=1, API_KEYS=f"{A},{B}", CACHE_SHARED_ACROSS_KEYS="true")
    try:
        image = jpeg(42, 30)
        statuses = [analyze(gateway.url, image, "Shared?", headers=as_(key)).json()["status"] for key in (A, B)]
    finally:
        gateway.stop()
    assert statuses == ["SUCCESS", "CACHED"] and fake.calls == 1


def test_every_cache_key_carries_the_tenant():
    """Both key functions (analyze and chat) differ by tenant and by nothing else."""
    a, b = auth.tenant(A), auth.tenant(B)
    assert a != b and A not in a
    assert cache_key(b"img", "p", 8, 0.2, "m", a) != cache_key(b"img", "p", 8, 0.2, "m", b)
    assert cache_key(b"img", "p", 8, 0.2, "m", a) == cache_key(b"img", "p", 8, 0.2, "m", a)
    messages = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert chat_cache_key(messages, {"max_tokens": 8}, "m", a) != chat_cache_key(messages, {"max_tokens": 8}, "m", b)
    started = time.monotonic()
    assert auth.check({"X-API-Key": B}, (A, B)) == b and time.monotonic() - started < 0.1
