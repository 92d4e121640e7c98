"""llava_server.py as a user meets it: a real process on a free port, real HTTP."""
import concurrent.futures
import json
import shutil
import signal
import threading
import time

import pytest
import requests

from llava_common import exit_codes
from tests import images
from tests.procs import Proc, free_port, poll, python


def start_server(demo_model_dir, **env) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(python("llava_server.py"), env={"MODEL_PATH": "demo", "DEMO_MODEL_DIR": str(demo_model_dir),
                                                 "MODEL_PORT": str(port), "WARMUP_REQUESTS": "1", **env})
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def server(demo_model_dir):
    proc, url = start_server(demo_model_dir, LLAVA_FAULTS="1", MAX_QUEUE="8", MAX_BODY_BYTES="3000000",
                             MAX_BATCH_WAIT_MS="50")
    with proc:
        proc.wait_for(url + "/health", 200, timeout=90)
        yield url


@pytest.fixture(autouse=True)
def disarm(request):
    yield
    if "server" in request.fixturenames:
        requests.post(request.getfixturevalue("server") + "/_faults", json={"mode": "none"}, timeout=5)


def health(url) -> dict:
    return requests.get(url + "/health", timeout=5).json()


def analyze(url, **body):
    body = {"image": images.b64(images.jpeg()), "prompt": "What is in this picture?", "max_tokens": 12,
            "temperature": 0, **body}
    return requests.post(url + "/v1/analyze", json=body, timeout=60)


def chat_body(**extra):
    return {"model": "llava-demo", "temperature": 0, "max_tokens": 24, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Describe the product."},
        {"type": "image_url", "image_url": {"url": images.data_url(images.jpeg(500, 500, seed=3))}}]}], **extra}


def read_sse(response) -> list:
    events = []
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("data: "):
            events.append(line[6:] if line[6:] == "[DONE]" else json.loads(line[6:]))
    return events


def test_health_reports_loading_progress_then_healthy(demo_model_dir):
    proc, url = start_server(demo_model_dir, WARMUP_REQUESTS="12", WARMUP_TOKENS="96")
    with proc:
        proc.wait_for(url + "/health/live", 200, timeout=60)
        seen = []
        while True:
            health = requests.get(url + "/health", timeout=5)
            if health.status_code == 200:
                break
            assert health.status_code == 503 and health.json()["status"] == "loading"
            seen.append(health.json())
            time.sleep(0.05)
        assert health.json()["status"] == "healthy" and health.json()["model"] == "llava-demo"
        assert any(s["phase"] == "warming up" for s in seen)
        steps = [s["progress"]["step"] for s in seen]
        assert steps == sorted(steps) and steps[-1] > steps[0]  # progress moved while loading


def test_requests_while_loading_get_503_with_retry_after(demo_model_dir):
    proc, url = start_server(demo_model_dir, WARMUP_REQUESTS="12", WARMUP_TOKENS="96")
    with proc:
        proc.wait_for(url + "/health", 503, timeout=60)
        response = analyze(url)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "model_loading"
        assert response.headers["Retry-After"] == "10"  # docs/model-api.md: model_loading, 503, Retry-After 10


def test_analyze_answers_a_real_jpeg(server):
    response = requests.post(server + "/v1/analyze", headers={"X-Request-ID": "req-123"}, timeout=60,
                      json={"image": images.b64(images.jpeg()), "prompt": "What is in this picture?", "max_tokens": 10})
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["result"], str) and body["result"].strip()
    assert body["usage"]["completionTokens"] == 10 and body["usage"]["promptTokens"] > 2000
    assert body["requestId"] == "req-123" and response.headers["X-Request-ID"] == "req-123"


def test_chat_completions_plain_and_streamed_agree(server):
    plain = requests.post(server + "/v1/chat/completions", json=chat_body(), timeout=60)
    assert plain.status_code == 200, plain.text
    completion = plain.json()
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["finish_reason"] == "length"
    assert completion["usage"]["completion_tokens"] == 24

    body = chat_body(stream=True, stream_options={"include_usage": True})
    with requests.post(server + "/v1/chat/completions", json=body,
                       stream=True, timeout=60) as streamed:
        assert streamed.headers["Content-Type"].startswith("text/event-stream")
        events = read_sse(streamed)
    assert events[-1] == "[DONE]"
    chunks = [e for e in events[:-1] if e["choices"]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == completion["choices"][0]["message"]["content"]
    assert len(chunks) > 10  # token by token
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert events[-2]["usage"] == completion["usage"]


def test_a_client_that_leaves_a_stream_frees_its_slot(server):
    before = _metric(server, "llava_model_generation_tokens_total")
    with requests.post(server + "/v1/chat/completions", json=chat_body(stream=True, max_tokens=1000),
                       stream=True, timeout=60) as streamed:
        lines = streamed.iter_lines()
        for _ in range(6):
            next(lines)
    poll(lambda: health(server)["running"] == 0, 10, "the row freed")
    assert _metric(server, "llava_model_generation_tokens_total") - before < 1000


def test_concurrent_requests_decode_together(server):
    steps_before = _metric(server, "llava_model_batch_size_count")
    alone_before = _metric(server, 'llava_model_batch_size_bucket{le="1.0"}')
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda i: analyze(server, max_tokens=16, image=images.b64(images.jpeg(seed=i))),
                                  range(8)))
    assert [r.status_code for r in responses] == [200] * 8
    steps = _metric(server, "llava_model_batch_size_count") - steps_before
    alone = _metric(server, 'llava_model_batch_size_bucket{le="1.0"}') - alone_before
    assert steps - alone > 0  # some decode steps ran several rows
    assert steps < 8 * 16  # fewer steps than one per token of each request


def test_health_names_the_engine_and_its_rows(server):
    health = requests.get(server + "/health", timeout=5).json()
    assert health["engine"] == "continuous" and health["rows"] == 32  # MAX_BATCH_SIZE's default caps the rows
    assert health["maxModelLen"] == health["contextLength"] == 4096
    assert health["cudaGraphs"] == "off" and health["decode"] == "eager"  # no CUDA here
    text = requests.get(server + "/metrics", timeout=5).text
    for name in ("llava_model_kv_slots 32.0", "llava_model_rows_free", "llava_model_kv_slots_used",
                 "llava_model_decode_step_seconds_bucket", "llava_model_prefill_seconds_bucket",
                 "llava_model_decode_tokens_per_second", "llava_model_cuda_graphs 0.0",
                 "llava_model_cuda_graph_capture_failed 0.0"):
        assert name in text, name


def test_stop_seed_and_response_format_over_http(server):
    free = requests.post(server + "/v1/chat/completions", json=chat_body(max_tokens=30), timeout=60).json()
    text = free["choices"][0]["message"]["content"]
    stop = text.split()[len(text.split()) // 2]
    stopped = requests.post(server + "/v1/chat/completions", json=chat_body(max_tokens=30, stop=[stop]), timeout=60)
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["choices"][0]["message"]["content"] == text[:text.find(stop)]
    assert stopped.json()["choices"][0]["finish_reason"] == "stop"

    def sampled(seed):
        body = chat_body(temperature=1.0, seed=seed, max_tokens=20)
        return requests.post(server + "/v1/chat/completions", json=body, timeout=60).json()["choices"][0]["message"]
    assert sampled(7) == sampled(7) != sampled(8)

    as_text = requests.post(server + "/v1/chat/completions", json=chat_body(response_format={"type": "text"}),
                            timeout=60)
    assert as_text.status_code == 200
    schema = {"type": "object", "properties": {"verdict": {"enum": ["pass", "fail"]}, "defects": {
        "type": "array", "maxItems": 2, "items": {"type": "string", "maxLength": 20}}},
        "required": ["verdict", "defects"], "additionalProperties": False}
    qc = {"type": "json_schema", "json_schema": {"name": "qc", "schema": schema, "strict": True}}
    as_json = requests.post(server + "/v1/chat/completions", timeout=60,
                            json=chat_body(max_tokens=120, response_format=qc))
    assert as_json.status_code == 200, as_json.text
    assert as_json.json()["choices"][0]["finish_reason"] == "stop"
    assert set(json.loads(as_json.json()["choices"][0]["message"]["content"])) == {"verdict", "defects"}
    refused = requests.post(server + "/v1/chat/completions", timeout=60, json=chat_body(response_format={
        "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array", "uniqueItems": True}}}))
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "response_format"
    assert "uniqueItems" in refused.json()["error"]["message"]
    too_many = requests.post(server + "/v1/chat/completions", json=chat_body(stop=["a", "b", "c", "d", "e"]),
                             timeout=60)
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "stop"


def test_the_generate_engine_serves_the_same_answers(server, demo_model_dir):
    proc, url = start_server(demo_model_dir, ENGINE="generate")
    with proc:
        proc.wait_for(url + "/health", 200, timeout=90)
        health = requests.get(url + "/health", timeout=5).json()
        assert health["engine"] == "generate" and health["decode"] == "eager"
        for body in (chat_body(), chat_body(max_tokens=12, stop=["o"])):
            answers = [requests.post(u + "/v1/chat/completions", json=body, timeout=60).json() for u in (server, url)]
            assert answers[0]["choices"] == answers[1]["choices"]


def test_the_request_id_and_traceparent_reach_the_log(demo_model_dir):
    proc, url = start_server(demo_model_dir)
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with proc:
        proc.wait_for(url + "/health", 200, timeout=90)
        answer = requests.post(url + "/v1/analyze", timeout=60,
                               headers={"X-Request-ID": "abc <script> [x]", "traceparent": trace,
                                        "X-Client-Request-ID": "order <7>", "X-Tenant-ID": "t]en ant"},
                               json={"image": images.b64(images.jpeg()), "prompt": "What is in this picture?",
                                     "max_tokens": 2})
        assert answer.status_code == 200
    line = next(line for line in proc.output().splitlines() if "POST /v1/analyze" in line)
    # only id-safe characters reach the log, of every id
    assert "[abcscriptx tenant=tenant client_request_id=order7]" in line and f"traceparent={trace}" in line


@pytest.mark.parametrize("method,path,body,status,code", [
    ("post", "/v1/analyze", b"{not json", 400, "invalid_request"),
    ("post", "/v1/analyze", {"prompt": "hi", "image": "not base64!"}, 400, "invalid_image"),
    ("post", "/v1/analyze", {"prompt": "hi", "image": images.b64(b"GIF89a garbage")}, 400, "invalid_image"),
    ("post", "/v1/analyze", {"prompt": "hi", "image": images.b64(b"plain text")}, 415, "unsupported_image_format"),
    ("post", "/v1/analyze", {"prompt": "", "image": images.b64(images.jpeg())}, 400, "invalid_request"),
    ("post", "/v1/analyze", {"prompt": "hi", "image": images.b64(images.jpeg()), "max_tokens": 4000}, 400,
     "invalid_request"),
    ("post", "/v1/chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": images.data_url(images.jpeg(672, 672, seed=i))}}
        for i in range(2)]}],
        "max_tokens": 1024}, 400, "context_length_exceeded"),
    ("post", "/v1/analyze", b"x" * 3_100_000, 413, "request_too_large"),
    ("get", "/v1/analyze", None, 405, "method_not_allowed"),
    ("get", "/no/such/path", None, 404, "not_found"),
])
def test_bad_requests_get_json_errors(server, method, path, body, status, code):
    kwargs = {"data": body} if isinstance(body, bytes) else {"json": body}
    response = getattr(requests, method)(server + path, timeout=30, **({} if body is None else kwargs))
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text


def test_a_full_queue_answers_429_with_retry_after(server):
    requests.post(server + "/_faults", json={"mode": "slow", "seconds": 2, "count": 1}, timeout=5)
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        first = pool.submit(analyze, server, max_tokens=2)
        # the engine holds the first one in the injected slow generate
        poll(lambda: health(server)["running"] >= 1, 10, "the first request running")
        queued = [pool.submit(analyze, server, max_tokens=2) for _ in range(8)]  # the server's MAX_QUEUE=8
        poll(lambda: health(server)["waiting"] >= 8, 10, "8 requests waiting")
        refused = analyze(server, max_tokens=2)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "queue_full"
        assert refused.headers["Retry-After"] == "1"  # docs/model-api.md: queue_full, 429, Retry-After 1
        assert [f.result().status_code for f in [first, *queued]] == [200] * 9


def test_out_of_memory_fails_the_batch_with_503_and_the_process_serves_on(server):
    requests.post(server + "/_faults", json={"mode": "oom", "count": 1}, timeout=5)
    failed = analyze(server)
    assert failed.status_code == 503 and failed.json()["error"]["code"] == "out_of_memory"
    assert failed.headers["Retry-After"] == "2"  # docs/model-api.md: out_of_memory, 503, Retry-After 2
    assert analyze(server).status_code == 200
    assert _metric(server, "llava_model_oom_events_total") >= 1


def test_metrics_carry_the_designed_names(server):
    analyze(server)
    text = requests.get(server + "/metrics", timeout=5).text
    for name in ("llava_model_time_to_first_token_seconds_bucket", "llava_model_e2e_latency_seconds_count",
                 "llava_model_queue_wait_seconds_count", "llava_model_batch_size_count",
                 "llava_model_prompt_tokens_total",
                 "llava_model_generation_tokens_total", "llava_model_requests_running", "llava_model_requests_waiting",
                 "llava_model_requests_total", "llava_model_ready 1.0"):
        assert name in text, name


def _metric(url: str, name: str) -> float:
    for line in requests.get(url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


# ---------------------------------------------------------------- start-up failures and stop


def other_architecture(tmp_path):
    from transformers import LlamaConfig

    LlamaConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=16).save_pretrained(tmp_path)
    return tmp_path


def config_without_weights(tmp_path, demo_model_dir):
    for f in demo_model_dir.iterdir():
        if not f.name.endswith(".safetensors"):
            shutil.copy(f, tmp_path / f.name)
    return tmp_path


@pytest.mark.parametrize("case,make,words", [
    ("missing directory", lambda tmp, demo: "/nonexistent/llava", "no checkpoint there"),
    ("hub id not cached offline", lambda tmp, demo: "llava-hf/not-a-cached-model", "HF_HUB_OFFLINE"),
    ("another architecture", lambda tmp, demo: other_architecture(tmp), "'llama' checkpoint"),
    ("no weights", lambda tmp, demo: config_without_weights(tmp, demo), "cannot load the weights"),
])
def test_unusable_checkpoints_exit_with_boot_error_and_one_line(tmp_path, demo_model_dir, case, make, words):
    proc = Proc(python("llava_server.py"), env={"MODEL_PATH": str(make(tmp_path, demo_model_dir)),
                                                 "MODEL_PORT": str(free_port()), "HF_HOME": str(tmp_path / "hf")})
    with proc:
        code = proc.wait(timeout=90)
    output = proc.output()
    assert code == exit_codes.BOOT_ERROR, output[-3000:]
    reason = [line for line in output.splitlines() if "cannot start:" in line]
    assert len(reason) == 1 and words in reason[0], output[-3000:]
    assert "Traceback" not in output, output[-3000:]


def test_a_bad_setting_exits_with_boot_error_naming_it():
    proc = Proc(python("llava_server.py"), env={"MAX_BATCH_SIZE": "lots", "MODEL_PORT": str(free_port())})
    with proc:
        assert proc.wait(timeout=60) == exit_codes.BOOT_ERROR
    assert "MAX_BATCH_SIZE='lots': expected a whole number" in proc.output()


def test_sigterm_finishes_in_flight_requests_then_exits_zero(demo_model_dir):
    proc, url = start_server(demo_model_dir, LLAVA_FAULTS="1")
    with proc:
        proc.wait_for(url + "/health", 200, timeout=90)
        requests.post(url + "/_faults", json={"mode": "slow", "seconds": 2, "count": 1}, timeout=5)
        result = {}
        worker = threading.Thread(target=lambda: result.setdefault("r", analyze(url)))
        worker.start()
        poll(lambda: health(url)["running"] >= 1, 10, "the request running")
        proc.signal(signal.SIGTERM)
        draining = poll(lambda: (r := requests.get(url + "/health", timeout=5)).status_code == 503 and (r,), 10,
                        "/health saying stopping")[0]
        refused = analyze(url)
        worker.join(timeout=30)
        assert proc.wait(timeout=30) == exit_codes.OK
    assert draining.status_code == 503 and draining.json()["status"] == "stopping"
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down"
    assert refused.headers["Retry-After"] == "5"  # docs/model-api.md: shutting_down, 503, Retry-After 5
    assert result["r"].status_code == 200


def test_the_readme_command_serves_at_the_default_settings(demo_model_dir):
    """`MODEL_PATH=demo python llava_server.py` with nothing else but MODEL_PORT=0 (any
    free port) and the session's demo model: ready with the documented defaults, and a
    SIGTERM stops it with exit 0."""
    proc = Proc(python("llava_server.py"), env={"MODEL_PATH": "demo", "MODEL_PORT": "0",
                                                 "DEMO_MODEL_DIR": str(demo_model_dir)})
    with proc:
        url = f"http://127.0.0.1:{proc.listening_port()}"
        body = proc.wait_for(url + "/health", 200, timeout=120).json()
        # docs/reference/settings.md, model process: ENGINE continuous, MAX_MODEL_LEN 0 = the model's
        # 4,096 tokens, MAX_BATCH_SIZE 32 caps the rows, CUDA graphs only on a GPU.
        assert (body["engine"], body["maxModelLen"], body["device"], body["dtype"]) == \
            ("continuous", 4096, "cpu", "float32")
        assert 1 <= body["rows"] <= 32 and body["decode"] == "eager" and body["model"] == "llava-demo"
        assert "warmup request 3/3" in proc.output()  # WARMUP_REQUESTS defaults to 3
        answer = requests.post(url + "/v1/chat/completions", json=chat_body(max_tokens=8), timeout=60)
        assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] <= 8
        proc.signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == exit_codes.OK


def test_more_warmup_requests_than_the_queue_holds_still_start(demo_model_dir):
    """Warmup submits in groups the queue admits (was: exit 3, 'the model queue is full')."""
    proc, url = start_server(demo_model_dir, WARMUP_REQUESTS="7", WARMUP_TOKENS="2", MAX_QUEUE="2",
                             HTTP_THREADS="64")
    with proc:
        proc.wait_for(url + "/health", 200, timeout=90)
    assert proc.output().count("warmup request") == 7
