"""The gateway started exactly as the README tells a user, with the README's plain
gunicorn command and default settings (only GATEWAY_PORT and MODEL_URL, to point
it at a fake model on loopback; no PROMETHEUS_MULTIPROC_DIR, no test-only tuning),
and called the way its clients call it. Each defect of issue 13 that hid behind
test-only settings has a test here that failed before its fix."""
from __future__ import annotations

import base64
import io
import json
import os
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
import requests
from PIL import Image

from tests.gateway_support import ANALYZE, analyze, jpeg
from tests.openai_support import TOKENS, ChatUpstream, data_url, user
from tests.procs import Proc, free_port

pytestmark = pytest.mark.slow
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
README_COMMAND = [GUNICORN, "-c", "python:gateway.gunicorn_conf", "gateway.wsgi:app"]


@pytest.fixture(scope="module")
def documented(tmp_path_factory):
    """`.venv/bin/gunicorn -c python:gateway.gunicorn_conf gateway.wsgi:app`, as in the README:
    only MODEL_URL (a fake model on loopback) and GATEWAY_PORT=0 (any free port) set."""
    fake = ChatUpstream(model="llava-demo")
    tmp = tmp_path_factory.mktemp("tmpdir")
    proc = Proc(README_COMMAND, env={"GATEWAY_PORT": "0", "MODEL_URL": fake.url, "TMPDIR": str(tmp)})
    try:
        url = f"http://127.0.0.1:{proc.listening_port()}"
        proc.wait_for(url + "/health/ready", timeout=60)
        yield url, fake, proc, tmp
    finally:
        proc.stop()
        fake.close()


# Documented defaults: a model call may take up to UPSTREAM_READ_TIMEOUT_SECONDS (60 s),
# longer than gunicorn's 30 s worker timeout. One call of 31 s runs while the other
# tests of this module do; the last test collects it.
SLOW_CALL_S = 31.0
SLOW_PROMPT = "Take your time"


@pytest.fixture(scope="module")
def slow_call(documented):
    url, fake, proc, _ = documented
    fake.slow_prompts[SLOW_PROMPT] = SLOW_CALL_S
    pool = ThreadPoolExecutor(1)
    started = time.monotonic()
    future = pool.submit(analyze, url, jpeg(24, 24), SLOW_PROMPT, timeout=SLOW_CALL_S + 30)
    yield future, started, proc
    pool.shutdown(wait=True)


def test_a_slow_model_call_is_under_way(slow_call):
    future, _, _ = slow_call
    assert not future.done()


def metric(text: str, line_start: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))


# --------------------------------------------------------------------- metrics

def test_metrics_are_served_in_every_worker_without_prometheus_multiproc_dir(documented):
    """Before: gunicorn_conf imported prometheus-client before it set the directory,
    so /metrics answered 200 with an empty body under the README's command."""
    url, fake, _, tmp = documented
    assert analyze(url, jpeg(), "Metrics?").json()["status"] == "SUCCESS"
    made = [p.name for p in tmp.iterdir() if p.name.startswith("llava-gateway-metrics-")]
    assert len(made) == 1, f"one metrics directory, made by the master under TMPDIR: {made}"
    for _ in range(8):  # any of the 4 workers may answer the scrape: each sees every worker's samples
        text = requests.get(url + "/metrics", timeout=10).text
        assert metric(text, f'llava_requests_total{{endpoint="{ANALYZE}",status="SUCCESS"}}') >= 1, text[:500]
        assert "llava_admission_waiting_requests" in text and "llava_response_time_seconds_bucket" in text


def test_the_metrics_directory_is_removed_at_exit(tmp_path):
    fake = ChatUpstream()
    port = free_port()
    proc = Proc(README_COMMAND, env={"GATEWAY_PORT": str(port), "MODEL_URL": fake.url, "TMPDIR": str(tmp_path),
                                     "GATEWAY_WORKERS": "1"}, unset=("PROMETHEUS_MULTIPROC_DIR",))
    try:
        proc.wait_for(f"http://127.0.0.1:{port}/health/live", timeout=60)
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith("llava-gateway-metrics-")]
    finally:
        assert proc.stop() == 0, proc.output()[-2000:]
        fake.close()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("llava-gateway-metrics-")]


# --------------------------------------------------------------------- admission

def test_a_burst_of_300_gets_429s_with_retry_after_no_5xx_and_nothing_hangs(documented):
    url, fake, _, _ = documented
    fake.delay_s = 0.5  # each model call takes half a second

    def one(i):
        started = time.monotonic()
        try:
            response = analyze(url, jpeg(32, 32, (i % 250, 7, 9)), f"burst {i}", timeout=60)
            return response.status_code, response.headers.get("Retry-After"), time.monotonic() - started
        except requests.RequestException as exc:
            return type(exc).__name__, None, time.monotonic() - started

    try:
        with ThreadPoolExecutor(300) as pool:
            results = list(pool.map(one, range(300)))
    finally:
        fake.delay_s = 0.0
    codes = [code for code, _, _ in results]
    refused = [retry for code, retry, _ in results if code == 429]
    assert set(codes) <= {200, 429}, sorted(set(map(str, codes)))
    assert refused and all(retry and int(retry) >= 1 for retry in refused), refused[:5]
    assert codes.count(200) >= 40, "a worker answers its 8 calls and its 32 waiting requests"
    # Nothing hangs: the longest wait is the admission line, well under ADMISSION_WAIT_SECONDS.
    assert max(elapsed for *_, elapsed in results) < 30


# --------------------------------------------------------------------- the seed's parameters

def test_max_tokens_and_temperature_as_form_fields_are_used(documented):
    """Before: form fields were silently ignored; only the query string was read."""
    url, fake, _, _ = documented
    response = requests.post(url + ANALYZE, files={"image": ("p.jpg", jpeg(), "image/jpeg")},
                             data={"prompt": "Form fields?", "max-tokens": "21", "temperature": "0"}, timeout=30)
    assert response.json()["status"] == "SUCCESS", response.text
    assert (fake.payloads[-1]["max_tokens"], fake.payloads[-1]["temperature"]) == (21, 0.0)
    refused = requests.post(url + ANALYZE, files={"image": ("p.jpg", jpeg(), "image/jpeg")},
                            data={"prompt": "Form fields?", "max-tokens": "2000"}, timeout=30)
    assert refused.status_code == 400 and "`max-tokens` must be a whole number from 1 to 1024" in refused.text


# --------------------------------------------------------------------- OpenAI fidelity

@pytest.mark.parametrize("suffix", ["/v1", ""], ids=["base URL with /v1", "base URL without /v1"])
def test_the_openai_sdk_works_with_either_base_url(documented, suffix):
    """Before: Spring AI 2.x and the SDKs post to {base-url}/chat/completions: with the
    README's base URL (no /v1) that was a 404."""
    url, fake, _, _ = documented
    client = openai.OpenAI(base_url=url + suffix, api_key="unused", max_retries=0, timeout=30)
    assert [m.id for m in client.models.list()] == ["llava-demo"]
    assert client.models.retrieve("llava-demo").id == "llava-demo"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")
    completion = client.chat.completions.create(model="llava-demo", temperature=0, seed=5, stop=["\n\n"],
                                                messages=[user("What is it?", data_url(jpeg()))])
    assert completion.choices[0].message.content == "".join(TOKENS)
    chunks = list(client.chat.completions.create(model="llava-demo", messages=[user("Stream?")], stream=True,
                                                 stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(TOKENS)
    assert chunks[-1].usage.completion_tokens == len(TOKENS)


def test_seed_and_stop_reach_the_model_and_the_cache_key(documented):
    url, fake, _, _ = documented
    # The default cache is shared by the workers, whichever one the SDK's connection reaches.
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=30)
    image = data_url(jpeg(40, 30, (1, 2, 3)))

    def ask(**kw):
        return client.chat.completions.with_raw_response.create(
            model="llava-demo", temperature=0.8, messages=[user("A sample?", image)], **kw)

    first, same, other = ask(seed=1), ask(seed=1), ask(seed=2)
    assert fake.payloads[-1]["seed"] == 2
    # Before: seed was dropped and left out of the key, so the second seed came back CACHED.
    statuses = [r.headers["X-Gateway-Status"] for r in (first, same, other)]
    assert statuses[1] == "CACHED" and statuses[2] == "SUCCESS", statuses
    ask(seed=1, stop="END")
    assert fake.payloads[-1]["stop"] == ["END"] and fake.payloads[-1]["seed"] == 1


def test_a_sample_without_a_seed_is_not_cached(documented):
    url, fake, _, _ = documented
    # A new connection each time: the default cache is shared by the workers.
    session = requests  # a connection per request: any worker may answer
    body = {"model": "llava-demo", "temperature": 0.7, "messages": [user("Sample me", data_url(jpeg(8, 8)))]}
    calls = fake.calls
    statuses = [session.post(url + "/v1/chat/completions", json=body, timeout=30).headers["X-Gateway-Status"]
                for _ in range(2)]
    assert statuses == ["SUCCESS", "SUCCESS"] and fake.calls == calls + 2
    greedy = {**body, "temperature": 0}
    statuses = [session.post(url + "/v1/chat/completions", json=greedy, timeout=30).headers["X-Gateway-Status"]
                for _ in range(2)]
    assert statuses == ["SUCCESS", "CACHED"]


def test_bad_image_content_is_400_invalid_request_error(documented):
    """Before: 415, which the SDKs do not map to BadRequestError."""
    url, _, _, _ = documented
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=30)
    bmp = io.BytesIO()
    Image.new("RGB", (8, 8)).save(bmp, "BMP")
    for image, words in ((b"this is not an image", "not a recognised image"), (bmp.getvalue(), "a BMP file")):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="llava-demo", messages=[user("?", data_url(image))])
        error = refused.value.body
        assert error["type"] == "invalid_request_error" and error["code"] == "unsupported_image_format"
        assert words in error["message"] and error["param"] == "messages[0].content[1].image_url"


SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


@pytest.mark.parametrize("response_format, upstream", [
    ({"type": "text"}, None), ({"type": "json_object"}, {"type": "json_object"}),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA, "strict": True}},
     {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA, "strict": True}}),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}}, 400)])
def test_response_format_reaches_the_model_or_is_refused_with_the_reason(documented, response_format, upstream):
    """Before: response_format was silently ignored (200 with free text)."""
    url, fake, _, _ = documented
    response = requests.post(url + "/v1/chat/completions", timeout=30, json={
        "model": "llava-demo", "messages": [user(f"JSON please {response_format}")],
        "response_format": response_format})
    if upstream == 400:
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "invalid_request" and error["param"] == "response_format"
        assert "not valid JSON Schema" in error["message"]
    else:
        assert response.status_code == 200, response.text
        assert fake.payloads[-1].get("response_format") == upstream


def test_the_schema_is_part_of_the_cache_key(documented):
    url, fake, _, _ = documented

    session = requests.Session()  # one connection, one worker: its cache (the default is per worker)

    def ask(schema):
        return session.post(url + "/v1/chat/completions", timeout=30, json={
            "model": "llava-demo", "temperature": 0, "messages": [user("Same question, two schemas")],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}})
    first, again, other = ask(SCHEMA), ask(SCHEMA), ask({**SCHEMA, "required": []})
    assert [r.headers.get("X-Gateway-Status") for r in (first, again, other)] == ["SUCCESS", "CACHED", "SUCCESS"]


def test_trace_context_and_request_id_reach_the_model(documented):
    url, fake, _, _ = documented
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    response = requests.post(url + "/chat/completions", timeout=30, headers={
        "traceparent": traceparent, "X-Request-ID": "order-7"}, json={"messages": [user("Traced?")]})
    assert response.status_code == 200 and response.headers["X-Client-Request-ID"] == "order-7"
    sent = {k.lower(): v for k, v in fake.headers[-1].items()}
    assert sent["traceparent"] == traceparent and sent["x-request-id"] == response.headers["X-Request-ID"] != "order-7"
    assert sent["x-client-request-id"] == "order-7"
    requests.post(url + "/chat/completions", timeout=30, headers={"traceparent": "garbage"},
                  json={"messages": [user("Not traced")]})
    assert "traceparent" not in {k.lower() for k in fake.headers[-1]}


# --------------------------------------------------------------------- Spring conventions

def test_health_answers_in_actuator_shape(documented):
    url, _, _, _ = documented
    assert requests.get(url + "/health/live", timeout=5).json() == {"status": "UP"}
    ready = requests.get(url + "/health/ready", timeout=5)
    assert ready.status_code == 200 and ready.json()["status"] == "UP"
    health = requests.get(url + "/health", timeout=5).json()
    assert health["status"] == "UP" and health["components"]["model"]["status"] == "UP"


def test_errors_are_problem_details_when_the_client_asks(documented):
    url, _, _, _ = documented
    files = {"image": ("p.jpg", b"not an image", "image/jpeg")}
    plain = requests.post(url + ANALYZE, files=files, data={"prompt": "?"}, timeout=30)
    assert plain.headers["Content-Type"].startswith("application/json")
    assert plain.json()["status"] == "VALIDATION_ERROR"  # the seed's AnalysisResult stays the default
    # Spring's RestTemplate sends `application/json, application/*+json`: still the AnalysisResult.
    spring = requests.post(url + ANALYZE, files=files, data={"prompt": "?"}, timeout=30,
                           headers={"Accept": "application/json, application/*+json"})
    assert spring.json()["status"] == "VALIDATION_ERROR"
    problem = requests.post(url + ANALYZE, files=files, data={"prompt": "?"}, timeout=30,
                            headers={"Accept": "application/problem+json"})
    assert problem.status_code == 415 and problem.headers["Content-Type"] == "application/problem+json"
    body = problem.json()
    assert body["status"] == 415 and body["title"] == "Unsupported Media Type" and body["type"] == "about:blank"
    assert body["code"] == "VALIDATION_ERROR" and "not a recognised image" in body["detail"]
    assert body["instance"] == ANALYZE and body["requestId"] == problem.headers["X-Request-ID"]


# --------------------------------------------------------------------- recorded Java clients

RECORDED = Path(__file__).parent / "recorded"


def _recorded(name: str, image: bytes) -> dict:
    text = (RECORDED / name).read_text().replace("$IMAGE_BASE64", base64.b64encode(image).decode())
    return json.loads(text)


@pytest.mark.parametrize("name", sorted(p.name for p in RECORDED.glob("*.json")))
def test_recorded_java_client_requests_are_answered(documented, name):
    """Request bodies as Spring AI, LangChain4j, openai-java and llava-client send them
    (recorded from the real libraries by clients/java's RecordedRequestsIT; README.md there),
    posted to the path each client uses."""
    url, fake, _, _ = documented
    recorded = _recorded(name, jpeg(48, 32, (9, 9, 9)))
    response = requests.post(url + recorded["path"], json=recorded["body"], stream=True, timeout=30,
                             headers={"Content-Type": "application/json", **recorded.get("headers", {})})
    assert response.status_code == 200, response.text
    if recorded["body"].get("stream"):
        lines = [line for line in response.iter_lines() if line]
        assert lines[-1] == b"data: [DONE]"
        chunks = [json.loads(line[6:]) for line in lines[:-1]]
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == \
            "".join(TOKENS)
        if recorded["body"].get("stream_options", {}).get("include_usage"):
            assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == len(TOKENS)
    else:
        assert response.json()["choices"][0]["message"]["content"] == "".join(TOKENS)
    sent = fake.payloads[-1]
    assert sent["messages"][-1]["role"] == "user"
    if any(part.get("type") == "image_url" for m in recorded["body"]["messages"]
           for part in (m["content"] if isinstance(m["content"], list) else [])):
        assert any(part.get("type") == "image_url" for part in sent["messages"][-1]["content"])
    asked = recorded["body"].get("response_format") or {}
    if asked.get("type") == "json_schema":  # structured output: the schema reaches the model, to be enforced
        assert sent["response_format"]["type"] == "json_schema"
        assert sent["response_format"]["json_schema"]["schema"] == asked["json_schema"]["schema"]



# --------------------------------------------------------------------- defaults of issue 18

# The documented defaults (docs/reference/settings.md), written here rather than imported from the code under test.
DEFAULT_WORKERS = 4
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024


def served_by(tmp: Path) -> dict[int, float]:
    """Analyze requests answered so far, per gunicorn worker pid, from the metrics
    directory the master made under TMPDIR (prometheus-client's file per process)."""
    from prometheus_client.mmap_dict import MmapedDict

    counts = {}
    for path in tmp.glob("llava-gateway-metrics-*/counter_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        counts[pid] = sum(value for key, value, *_ in MmapedDict.read_all_values_from_file(str(path))
                          if json.loads(key)[0] == "llava_requests" and ANALYZE in key)
    return counts


def test_the_same_request_8_times_is_answered_cached_7_times_by_any_worker(documented):
    """Before: every worker had its own in-process cache, so a repeat that landed on
    another of the 4 workers went to the model again. Each round sends one request,
    then the same one 7 times at once on separate connections; a round counts only
    when more than one worker answered it (the kernel picks the worker)."""
    url, fake, _, tmp = documented
    spread = 0
    for round_ in range(6):
        before, calls = served_by(tmp), fake.calls
        prompt = f"Shared by the workers? {round_}"
        first = analyze(url, jpeg(), prompt).json()["status"]
        with ThreadPoolExecutor(7) as pool:
            repeats = [r.json()["status"] for r in pool.map(lambda _: analyze(url, jpeg(), prompt), range(7))]
        workers = [pid for pid, n in served_by(tmp).items() if n > before.get(pid, 0)]
        statuses = [first, *repeats]
        assert statuses.count("CACHED") == 7 and fake.calls == calls + 1, (statuses, workers)
        spread += len(workers) > 1
        if spread >= 2:
            break
    assert spread >= 2, "the requests never spread over several workers: the test proved nothing"
    assert len(served_by(tmp)) <= DEFAULT_WORKERS


def _multipart(image: bytes) -> tuple[bytes, bytes]:
    boundary = "llava18"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nToo big?\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST {ANALYZE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
            f"boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return head, body


def read_response(conn: socket.socket) -> tuple[int, dict, bytes]:
    """One HTTP/1.1 response with a Content-Length body, read off the socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"the connection closed before a whole response head: {data[:200]!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = conn.recv(65536)
        assert chunk, "the connection closed inside the response body"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def send_whole_then_read(port: int, head: bytes, body: bytes) -> tuple[socket.socket, int, dict, bytes]:
    """As requests, RestTemplate and curl do: the whole body first, then the answer."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        conn.sendall(head + body)  # before: EPIPE or ECONNRESET here, the answer never read
        return (conn, *read_response(conn))
    except BaseException:
        conn.close()
        raise


def assert_usable_or_closed(conn: socket.socket, headers: dict) -> None:
    """Kept alive: a second request on the same connection is answered. Otherwise the
    answer must have said `Connection: close`."""
    if headers.get("connection", "").lower() == "close":
        return
    conn.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    status, _, body = read_response(conn)  # before: the connection was closed under a keep-alive answer
    assert status == 200 and json.loads(body) == {"status": "UP"}


def test_a_21_mb_upload_sent_whole_reads_its_413_and_keeps_the_connection(documented):
    """Before: gunicorn drained at most 64 KiB of a body the gateway left unread, then
    closed the connection under a client still sending: the client saw a broken pipe
    instead of the 413, and an answer saying `Connection: keep-alive` on a connection
    that was closed."""
    url, fake, _, _ = documented
    calls = fake.calls
    head, body = _multipart(b"\xff\xd8\xff" + os.urandom(21 * 1024 * 1024))
    conn, status, headers, answer = send_whole_then_read(int(url.rsplit(":", 1)[1]), head, body)
    with conn:
        result = json.loads(answer)
        assert status == 413 and result["status"] == "VALIDATION_ERROR", answer[:300]
        assert f"the image limit is {DEFAULT_MAX_UPLOAD_BYTES} bytes" in result["result"]
        assert fake.calls == calls
        assert_usable_or_closed(conn, headers)
        assert headers.get("connection", "keep-alive").lower() == "keep-alive"  # 21 MB is worth keeping it


def test_a_refusal_before_the_body_is_read_reaches_a_client_sending_5_mb(tmp_path):
    """401 is decided from the headers, before the body is read: the client still
    reads it, on a connection it can use again (API_KEYS as the README shows)."""
    fake = ChatUpstream(model="llava-demo")
    proc = Proc(README_COMMAND, env={"GATEWAY_PORT": "0", "MODEL_URL": fake.url, "API_KEYS": "k-18",
                                     "TMPDIR": str(tmp_path)})
    try:
        port = proc.listening_port()
        proc.wait_for(f"http://127.0.0.1:{port}/health/live", timeout=60)
        head, body = _multipart(jpeg() + os.urandom(5 * 1024 * 1024))
        conn, status, headers, answer = send_whole_then_read(port, head, body)
        with conn:
            assert status == 401 and json.loads(answer)["status"] == "UNAUTHORIZED", answer[:300]
            assert_usable_or_closed(conn, headers)
        with requests.Session() as session:  # requests sends the whole body before it reads, too
            refused = session.post(f"http://127.0.0.1:{port}{ANALYZE}", data={"prompt": "?"}, timeout=30,
                                   files={"image": ("p.jpg", jpeg() + os.urandom(5 * 1024 * 1024), "image/jpeg")})
            assert refused.status_code == 401
            assert session.get(f"http://127.0.0.1:{port}/health/live", timeout=10).status_code == 200
        assert fake.calls == 0
    finally:
        proc.stop()
        fake.close()


def test_a_body_too_large_to_drain_is_answered_with_connection_close(tmp_path):
    """Past 4 x MAX_UPLOAD_BYTES the rest of a refused body is not read: the answer
    says `Connection: close` (before: `keep-alive`, on a connection then closed)."""
    fake = ChatUpstream(model="llava-demo")
    limit = 1024 * 1024
    proc = Proc(README_COMMAND, env={"GATEWAY_PORT": "0", "MODEL_URL": fake.url, "MAX_UPLOAD_BYTES": str(limit),
                                     "TMPDIR": str(tmp_path)})
    try:
        port = proc.listening_port()
        proc.wait_for(f"http://127.0.0.1:{port}/health/live", timeout=60)
        head, body = _multipart(b"\xff\xd8\xff" + os.urandom(8 * limit))
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            def send():
                try:
                    conn.sendall(head + body)
                except OSError:
                    pass  # the gateway stopped reading: expected past the bound
            with ThreadPoolExecutor(1) as pool:
                sending = pool.submit(send)
                status, headers, answer = read_response(conn)  # read while sending, as a careful client does
                sending.result(timeout=30)
        assert status == 413 and json.loads(answer)["status"] == "VALIDATION_ERROR"
        assert headers.get("connection", "").lower() == "close", headers
    finally:
        proc.stop()
        fake.close()


def test_a_model_call_longer_than_gunicorns_worker_timeout_is_answered(slow_call):
    """Never run before (the tests shortened both): at the defaults a 31 s model call
    gets its SUCCESS; gunicorn does not kill the worker that waits for it."""
    future, started, proc = slow_call
    response = future.result(timeout=SLOW_CALL_S + 30)
    assert response.status_code == 200 and response.json()["status"] == "SUCCESS", response.text
    assert time.monotonic() - started >= SLOW_CALL_S
    assert "WORKER TIMEOUT" not in proc.output() and "Worker exiting" not in proc.output()
