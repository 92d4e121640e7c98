"""The request path against a fake upstream over real HTTP: cache, single-flight,
admission, circuit breaker, fallback, upstream refusals, auth, request ids."""
from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.gateway_support import FakeUpstream, analyze, gateway, jpeg
from tests.procs import free_port


@pytest.fixture
def fake():
    upstream = FakeUpstream()
    yield upstream
    upstream.close()


class Clock:
    """The cache's clock, moved by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_cache_miss_then_hit_then_expiry(fake):
    clock = Clock()
    with gateway(fake.url, clock=clock, CACHE_TTL_SECONDS=600) as (url, _):
        first = analyze(url, jpeg(), "What is this?").json()
        second = analyze(url, jpeg(), "What is this?").json()
        other_prompt = analyze(url, jpeg(), "What colour is it?").json()
        other_params = analyze(url, jpeg(), "What is this?", params={"temperature": "0.7"}).json()
        other_bytes = analyze(url, jpeg(color=(0, 0, 200)), "What is this?").json()
        clock.now += 601
        expired = analyze(url, jpeg(), "What is this?").json()
        metrics = requests.get(url + "/metrics").text
    assert first["status"] == "SUCCESS" and first["result"] == "answer 1"
    assert second["status"] == "CACHED" and second["result"] == "answer 1"
    assert second["usage"] == first["usage"] and second["model"] == "fake-llava"
    assert [a["status"] for a in (other_prompt, other_params, other_bytes)] == ["SUCCESS"] * 3
    assert expired["status"] == "SUCCESS" and expired["result"] == "answer 5"
    assert fake.calls == 5
    assert "llava_cache_hits_total 1.0" in metrics and "llava_cache_misses_total 5.0" in metrics


def test_same_pixels_under_another_name_hit_the_cache(fake):
    with gateway(fake.url) as (url, _):
        analyze(url, jpeg(), filename="a.jpg")
        again = analyze(url, jpeg(), filename="b.png")
    assert again.json()["status"] == "CACHED" and fake.calls == 1


def test_identical_requests_in_flight_make_one_upstream_call(fake):
    fake.delay_s = 0.5
    with gateway(fake.url) as (url, _):
        with ThreadPoolExecutor(6) as pool:
            answers = [f.result().json() for f in [pool.submit(analyze, url, jpeg(), "same") for _ in range(6)]]
        metrics = requests.get(url + "/metrics").text
    assert fake.calls == 1
    assert {a["result"] for a in answers} == {"answer 1"}
    assert all(a["status"] in ("SUCCESS", "CACHED") for a in answers)
    assert "llava_singleflight_shared_total" in metrics


def test_model_calls_run_concurrently(fake):
    """pybreaker's call() holds a lock around the call; the gateway must not inherit that."""
    fake.delay_s = 0.6
    with gateway(fake.url) as (url, _):
        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            statuses = [f.result().json()["status"] for f in
                        [pool.submit(analyze, url, jpeg(), f"concurrent {i}") for i in range(4)]]
        elapsed = time.monotonic() - started
    assert statuses == ["SUCCESS"] * 4 and fake.calls == 4
    assert elapsed < 1.5, f"4 calls of 0.6 s took {elapsed:.2f} s: they were serialized"


def wait_for_calls(fake, n: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while fake.calls < n and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake.calls >= n, f"{fake.calls} upstream calls, expected {n}"


def test_admission_queues_before_it_refuses(fake):
    """Past MAX_UPSTREAM_IN_FLIGHT a request waits its turn; only past ADMISSION_QUEUE
    waiting ones is it refused at once, with Retry-After."""
    fake.mode = "stall"
    with gateway(fake.url, MAX_UPSTREAM_IN_FLIGHT=2, ADMISSION_QUEUE=1) as (url, _):
        with ThreadPoolExecutor(3) as pool:
            held = [pool.submit(analyze, url, jpeg(), f"prompt {i}") for i in range(2)]
            wait_for_calls(fake, 2)
            queued = pool.submit(analyze, url, jpeg(), "prompt 3")
            deadline = time.monotonic() + 5
            while "llava_admission_waiting_requests 1.0" not in requests.get(url + "/metrics").text:
                assert time.monotonic() < deadline, "the third request did not wait for a slot"
                time.sleep(0.02)
            started = time.monotonic()
            refused = analyze(url, jpeg(), "prompt 4")
            refused_in = time.monotonic() - started
            cached_path_free = requests.get(url + "/health/live").status_code
            fake.mode = "ok"
            fake.release.set()
            finished = [f.result().json()["status"] for f in held]
            waited = queued.result().json()["status"]
        metrics = requests.get(url + "/metrics").text
    assert refused.status_code == 429 and refused.json()["status"] == "OVERLOADED"
    assert int(refused.headers["Retry-After"]) >= 1 and "retry in" in refused.json()["result"]
    assert refused_in < 1.0 and cached_path_free == 200
    assert finished == ["SUCCESS", "SUCCESS"] and waited == "SUCCESS" and fake.calls == 3
    assert 'llava_admission_rejected_total{reason="queue_full"} 1.0' in metrics


def test_admission_wait_is_bounded_in_time(fake):
    fake.mode = "stall"
    with gateway(fake.url, MAX_UPSTREAM_IN_FLIGHT=1, ADMISSION_WAIT_SECONDS=0.5) as (url, _):
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(analyze, url, jpeg(), "holds the slot")
            wait_for_calls(fake, 1)
            started = time.monotonic()
            refused = analyze(url, jpeg(), "waits too long")
            waited = time.monotonic() - started
            fake.release.set()
            held.result()
        metrics = requests.get(url + "/metrics").text
    assert refused.status_code == 429 and refused.json()["status"] == "OVERLOADED"
    assert "0.5 s" in refused.json()["result"]
    assert 0.5 <= waited < 2.0 and int(refused.headers["Retry-After"]) >= 1
    assert 'llava_admission_rejected_total{reason="wait_timeout"} 1.0' in metrics and fake.calls == 1


def test_fallback_when_upstream_is_down():
    down = f"http://127.0.0.1:{free_port()}"
    with gateway(down) as (url, _):
        started = time.monotonic()
        response = analyze(url, jpeg())
        elapsed = time.monotonic() - started
        ready = requests.get(url + "/health/ready")
        health = requests.get(url + "/health")
    body = response.json()
    assert response.status_code == 200 and body["status"] == "FALLBACK"
    assert "temporarily unavailable" in body["result"] and body["usage"] is None
    assert elapsed < 1.0
    assert ready.status_code == 503 and ready.json()["status"] == "DOWN"
    assert health.status_code == 200 and health.json()["status"] == "UP"
    assert health.json()["components"]["model"]["status"] == "DOWN"


def test_fallback_on_timeout_with_its_own_message(fake):
    fake.mode = "stall"
    with gateway(fake.url, UPSTREAM_READ_TIMEOUT_SECONDS=0.5) as (url, _):
        started = time.monotonic()
        body = analyze(url, jpeg()).json()
        elapsed = time.monotonic() - started
        metrics = requests.get(url + "/metrics").text
    assert body["status"] == "FALLBACK" and "longer than usual" in body["result"]
    assert 0.5 <= elapsed < 2.0
    assert 'llava_upstream_errors_total{kind="timeout"} 1.0' in metrics


@pytest.mark.parametrize("mode, kind", [("error500", "server_error"), ("garbage", "bad_response")])
def test_fallback_on_upstream_failure(fake, mode, kind):
    fake.mode = mode
    with gateway(fake.url, FALLBACK_MESSAGE="Please try again later.") as (url, _):
        body = analyze(url, jpeg()).json()
        again = analyze(url, jpeg()).json()
        metrics = requests.get(url + "/metrics").text
    assert body["status"] == again["status"] == "FALLBACK" and body["result"] == "Please try again later."
    assert fake.calls == 2, "a fallback answer must not be cached"
    assert f'llava_upstream_errors_total{{kind="{kind}"}} 2.0' in metrics


def test_service_unavailable_when_fallback_is_off():
    with gateway(f"http://127.0.0.1:{free_port()}", FALLBACK_ENABLED="false", RETRY_AFTER_SECONDS=7) as (url, _):
        response = analyze(url, jpeg())
    assert response.status_code == 503 and response.json()["status"] == "SERVICE_UNAVAILABLE"
    assert response.headers["Retry-After"] == "7" and "not ready" in response.json()["result"]


def test_upstream_loading_is_not_ready_and_falls_back(fake):
    fake.mode = "loading"
    with gateway(fake.url, FALLBACK_ENABLED="false") as (url, _):
        response = analyze(url, jpeg())
        ready = requests.get(url + "/health/ready").status_code
    assert response.status_code == 503 and "not ready" in response.json()["result"]
    assert fake.calls == 0 and ready == 503


def test_context_length_exceeded_is_the_clients_error(fake):
    fake.mode = "context"
    with gateway(fake.url, BREAKER_FAIL_MAX=1) as (url, app):
        responses = [analyze(url, jpeg(), f"p{i}") for i in range(3)]
        breaker = app.extensions["gateway"].upstream.replicas[0].breaker.state
    assert [r.status_code for r in responses] == [400] * 3
    assert responses[0].json()["status"] == "VALIDATION_ERROR" and "over 4096" in responses[0].json()["result"]
    assert breaker == "closed" and fake.calls == 3


def test_a_requests_own_failure_never_opens_the_breaker(fake):
    """Issue 25: a 503 out_of_memory is this request's (llava_common/failures.py): it is
    answered as an outage (FALLBACK) but neither counts against the breaker nor marks the
    replica not ready; two 500s then open it (BREAKER_FAIL_MAX=2) as before."""
    fake.mode = "oom"
    with gateway(fake.url, BREAKER_FAIL_MAX=2) as (url, app):
        replica = app.extensions["gateway"].upstream.replicas[0]
        own = [analyze(url, jpeg(), f"oom {i}").json()["status"] for i in range(4)]
        state_after_own, ready_after_own = replica.breaker.state, replica.ready
        fake.mode = "error500"
        [analyze(url, jpeg(), f"fail {i}") for i in range(2)]
    assert own == ["FALLBACK"] * 4 and fake.calls == 6
    assert (state_after_own, ready_after_own) == ("closed", True) and replica.breaker.state == "open"


def test_upstream_queue_full_is_overloaded(fake):
    fake.mode = "queue_full"
    with gateway(fake.url) as (url, _):
        response = analyze(url, jpeg())
    assert response.status_code == 429 and response.json()["status"] == "OVERLOADED"
    assert response.headers["Retry-After"] == "1"


def test_breaker_opens_then_half_opens_then_closes(fake):
    fake.mode = "error500"
    with gateway(fake.url, BREAKER_FAIL_MAX=3, BREAKER_RESET_SECONDS=0.6, FALLBACK_ENABLED="false") as (url, app):
        replica = app.extensions["gateway"].upstream.replicas[0]
        failures = [analyze(url, jpeg(), f"fail {i}").status_code for i in range(3)]
        assert replica.breaker.state == "open" and fake.calls == 3
        started = time.monotonic()
        refused = analyze(url, jpeg(), "while open")
        refused_in = time.monotonic() - started
        assert fake.calls == 3, "an open breaker must not call the model"
        assert refused.status_code == 503 and "circuit breaker" in refused.json()["result"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 1
        metrics_open = requests.get(url + "/metrics").text

        time.sleep(0.7)  # reset timeout passes: the next call is the half-open trial, and it fails
        trial = analyze(url, jpeg(), "trial 1")
        assert fake.calls == 4 and trial.status_code == 503 and replica.breaker.state == "open"

        time.sleep(0.7)
        fake.mode = "ok"
        recovered = analyze(url, jpeg(), "trial 2")
        assert recovered.json()["status"] == "SUCCESS" and replica.breaker.state == "closed"
        metrics_closed = requests.get(url + "/metrics").text
    assert failures == [503] * 3 and refused_in < 0.2
    assert f'llava_breaker_state{{upstream="{fake.url}"}} 2.0' in metrics_open
    assert f'llava_breaker_state{{upstream="{fake.url}"}} 0.0' in metrics_closed


def test_replicas_least_loaded_ready_one_is_chosen(fake):
    second = FakeUpstream()
    dead = f"http://127.0.0.1:{free_port()}"
    try:
        fake.delay_s = second.delay_s = 0.4
        with gateway(f"{dead},{fake.url},{second.url}") as (url, _):
            with ThreadPoolExecutor(4) as pool:
                statuses = [f.result().json()["status"] for f in
                            [pool.submit(analyze, url, jpeg(), f"spread {i}") for i in range(4)]]
        assert statuses == ["SUCCESS"] * 4
        assert fake.calls >= 1 and second.calls >= 1 and fake.calls + second.calls == 4
    finally:
        second.close()


def test_request_ids_are_made_here_and_the_clients_own_is_kept_apart(fake):
    """Every request id is the gateway's (issue 25: a client's would let another tenant
    reuse it); a well-formed X-Request-ID comes back in X-Client-Request-ID and goes
    upstream beside ours, a malformed one is dropped."""
    with gateway(fake.url) as (url, _):
        given = analyze(url, jpeg(), headers={"X-Request-ID": "order-42.a"})
        made = analyze(url, jpeg(), "another")
        hostile = analyze(url, jpeg(), "third", headers={"X-Request-ID": "bad id; <script>" + "x" * 200})
    for response, sent in zip((given, made, hostile), fake.request_ids):
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
        assert response.json()["requestId"] == response.headers["X-Request-ID"] == sent
    assert given.headers["X-Client-Request-ID"] == "order-42.a" and fake.client_request_ids[0] == "order-42.a"
    assert "X-Client-Request-ID" not in made.headers and "X-Client-Request-ID" not in hostile.headers
    assert fake.client_request_ids[1:] == ["", ""]


@pytest.mark.parametrize("headers, http", [
    ({}, 401),
    ({"Authorization": "Bearer wrong"}, 401),
    ({"X-API-Key": "secret-one-x"}, 401),
    ({"Authorization": "Bearer secret-two"}, 200),
    ({"X-API-Key": "secret-one"}, 200),
    ({"Authorization": "bearer  secret-one "}, 200),
])
def test_api_keys(fake, headers, http):
    with gateway(fake.url, API_KEYS="secret-one, secret-two") as (url, _):
        response = analyze(url, jpeg(), headers=headers)
        health = [requests.get(url + path).status_code for path in ("/health", "/health/live")]
    assert response.status_code == http
    assert response.json()["status"] == ("UNAUTHORIZED" if http == 401 else "SUCCESS")
    if http == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer") and fake.calls == 0
    assert health == [200, 200]


def test_unknown_route_and_method_answer_json(fake):
    with gateway(fake.url) as (url, _):
        missing = requests.get(url + "/api/v1/nope")
        wrong = requests.get(url + "/api/v1/multimodal/analyze")
    assert missing.status_code == 404 and missing.json()["status"] == "VALIDATION_ERROR"
    assert wrong.status_code == 405 and "GET is not allowed" in wrong.json()["result"]


def test_a_cache_hit_does_not_decode_the_image_again(fake, monkeypatch):
    from gateway import native_api

    calls = []
    real = native_api.normalise
    monkeypatch.setattr(native_api, "normalise", lambda *a: calls.append(1) or real(*a))
    with gateway(fake.url) as (url, _):
        first = analyze(url, jpeg(), "What is this?").json()
        hits = [analyze(url, jpeg(), "What is this?").json()["status"] for _ in range(3)]
        broken = analyze(url, jpeg()[:200], "What is this?")
    assert first["status"] == "SUCCESS" and hits == ["CACHED"] * 3
    assert len(calls) == 2  # the first upload and the broken one; never a hit
    assert broken.status_code in (400, 415) and broken.json()["status"] == "VALIDATION_ERROR"


class DropsMidCall:
    """A replica that looks healthy but hangs up after reading a chat request (a
    model process dying mid-call): the request may have reached a model."""

    def __init__(self):
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.dropped = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                request = conn.recv(65536)
                if request.startswith(b"GET /health"):
                    body = b'{"status": "healthy", "model": "fake-llava"}'
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                else:
                    self.dropped += 1  # read the request, answer nothing, hang up

    def close(self):
        self.sock.close()


def test_a_call_dropped_mid_way_is_not_sent_to_another_replica(fake):
    dropping = DropsMidCall()
    try:
        with gateway(f"{dropping.url},{fake.url}") as (url, _):
            answer = analyze(url, jpeg(), "Once only").json()
            metrics = requests.get(url + "/metrics").text
        assert answer["status"] == "FALLBACK"
        assert dropping.dropped == 1 and fake.calls == 0  # never sent twice
        assert 'llava_upstream_errors_total{kind="bad_response"} 1.0' in metrics
    finally:
        dropping.close()


def test_a_model_that_said_loading_is_asked_again_soon_not_after_the_health_interval(fake):
    """Before: a worker trusted "loading" for UPSTREAM_HEALTH_INTERVAL_SECONDS (2 s by
    default), so the first requests after the model turned ready answered FALLBACK
    (`make demo`'s 4 workers, right after its banner)."""
    clock = Clock()
    fake.mode = "loading"
    with gateway(fake.url, clock=clock, UPSTREAM_HEALTH_INTERVAL_SECONDS=2) as (url, _):
        assert analyze(url, jpeg(), "Loading?").json()["status"] == "FALLBACK"
        fake.mode = "ok"
        clock.now += 0.3  # well inside the 2 s health interval
        assert analyze(url, jpeg(), "Ready now?").json()["status"] == "SUCCESS"


def test_a_model_not_listening_yet_is_asked_again_soon():
    """The same for a model process that is not listening yet (its supervisor is still
    starting it): a refused connection costs nothing to ask again."""
    clock = Clock()
    port = free_port()
    with gateway(f"http://127.0.0.1:{port}", clock=clock, UPSTREAM_HEALTH_INTERVAL_SECONDS=2) as (url, _):
        assert analyze(url, jpeg(), "Anyone there?").json()["status"] == "FALLBACK"
        late = FakeUpstream(port=port)  # the model process now listens
        try:
            clock.now += 0.3
            assert analyze(url, jpeg(), "Now?").json()["status"] == "SUCCESS"
        finally:
            late.close()


def test_a_burst_after_the_model_turned_ready_waits_for_one_quick_probe_instead_of_falling_back(fake):
    """Before: the request that re-probed a model last seen loading got SUCCESS, the
    others of the same burst used the stale "loading" and answered FALLBACK (32
    concurrent clients on `make demo`)."""
    clock = Clock()
    fake.mode = "loading"
    with gateway(fake.url, clock=clock, UPSTREAM_HEALTH_INTERVAL_SECONDS=2) as (url, _):
        assert analyze(url, jpeg(), "Loading?").json()["status"] == "FALLBACK"
        fake.mode = "ok"
        clock.now += 0.3
        with ThreadPoolExecutor(8) as pool:
            statuses = [r.json()["status"] for r in pool.map(lambda i: analyze(url, jpeg(), f"burst {i}"), range(8))]
    assert statuses == ["SUCCESS"] * 8, statuses
