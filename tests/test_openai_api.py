"""The OpenAI face against a fake upstream over real HTTP, driven by the official
`openai` SDK (and plain requests where the wire matters): chat completions plain
and streamed, images, models, caching, the shared request path, errors in
OpenAI's shape, remote image URLs and the image token budget."""
from __future__ import annotations

import base64
import io
import json
import socket
import time

import openai
import pytest
import requests
from PIL import Image

from tests.gateway_support import gateway, jpeg
from tests.openai_support import TOKENS, ChatUpstream, ImageServer, data_url, user

CHAT = "/v1/chat/completions"


@pytest.fixture
def fake():
    upstream = ChatUpstream()
    yield upstream
    upstream.close()


def sdk(url: str, key: str = "unused", **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=15, **kw)


def post(url: str, body: dict, **kw) -> requests.Response:
    return requests.post(url + CHAT, json=body, timeout=15, **kw)


def sent_image(payload: dict, message: int = -1, part: int = 1) -> Image.Image:
    url = payload["messages"][message]["content"][part]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


# --------------------------------------------------------------------- answers

def test_sdk_plain_completion_with_an_image_and_several_turns(fake):
    png = io.BytesIO()
    Image.new("RGBA", (2000, 1000), (0, 0, 255, 128)).save(png, "PNG")
    with gateway(fake.url) as (url, _):
        completion = sdk(url).chat.completions.create(
            model="fake-llava", max_tokens=64, temperature=0, top_p=0.5,
            messages=[{"role": "system", "content": "Be brief."},
                      user("What is this?", data_url(png.getvalue(), "image/png")),
                      {"role": "assistant", "content": "A blue rectangle."},
                      {"role": "user", "content": "And its colour?"}])
    assert completion.choices[0].message.content == "".join(TOKENS)
    assert completion.choices[0].finish_reason == "stop" and completion.model == "fake-llava"
    assert completion.usage.prompt_tokens == 2950 and completion.usage.total_tokens == 2950 + len(TOKENS)
    payload = fake.payloads[-1]
    assert [m["role"] for m in payload["messages"]] == ["system", "user", "assistant", "user"]
    assert payload["max_tokens"] == 64 and payload["temperature"] == 0 and payload["top_p"] == 0.5
    assert payload["stream"] is False
    image = sent_image(payload, message=1)  # normalised like an upload: JPEG, long side 1008
    assert image.format == "JPEG" and image.size == (1008, 504)


def test_raw_base64_and_max_completion_tokens_are_accepted(fake):
    with gateway(fake.url) as (url, _):
        raw = base64.b64encode(jpeg()).decode()
        answer = post(url, {"model": "fake-llava", "max_completion_tokens": 7, "messages": [user("Hi?", raw)]})
    assert answer.status_code == 200, answer.text
    assert fake.payloads[-1]["max_tokens"] == 7 and sent_image(fake.payloads[-1]).size == (64, 48)


def test_sdk_stream_relays_tokens_as_they_are_generated(fake):
    fake.token_delay_s = 0.15
    with gateway(fake.url) as (url, _):
        started = time.monotonic()
        stream = sdk(url).chat.completions.create(model="fake-llava", stream=True,
                                                  messages=[user("Describe it.", data_url(jpeg()))],
                                                  stream_options={"include_usage": True})
        arrivals, text, usage, finish = [], [], None, None
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append(time.monotonic() - started)
                text.append(chunk.choices[0].delta.content)
            if chunk.choices and chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
            usage = chunk.usage or usage
    assert "".join(text) == "".join(TOKENS) and finish == "stop"
    assert usage.completion_tokens == len(TOKENS)
    # Not buffered: the first token arrives about one token delay in, long before the last.
    assert arrivals[0] < arrivals[-1] - 0.5, arrivals
    assert fake.payloads[-1]["stream"] is True


def test_stream_wire_format_and_usage_only_when_asked(fake):
    with gateway(fake.url) as (url, _):
        response = post(url, {"messages": [user("Hi")], "stream": True}, stream=True)
        lines = [line for line in response.iter_lines() if line]
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/event-stream")
    assert all(line.startswith(b"data: ") for line in lines) and lines[-1] == b"data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["id"] == "chatcmpl-" + response.headers["X-Request-ID"]
    assert not any("usage" in c for c in chunks), "usage is sent only with stream_options.include_usage"


def test_answers_are_cached_and_a_cached_answer_streams_as_one_chunk(fake):
    body = {"model": "fake-llava", "temperature": 0, "messages": [user("What is this?", data_url(jpeg()))]}
    with gateway(fake.url) as (url, _):
        first = post(url, body)
        second = post(url, body)
        streamed = post(url, {**body, "stream": True}, stream=True)
        lines = [json.loads(line[6:]) for line in streamed.iter_lines() if line and line != b"data: [DONE]"]
        other = post(url, {**body, "temperature": 0.5})
    assert first.headers["X-Gateway-Status"] == "SUCCESS" and second.headers["X-Gateway-Status"] == "CACHED"
    assert second.json()["choices"][0]["message"]["content"] == first.json()["choices"][0]["message"]["content"]
    assert streamed.headers["X-Gateway-Status"] == "CACHED"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in lines if c["choices"]) == "".join(TOKENS)
    assert other.headers["X-Gateway-Status"] == "SUCCESS" and fake.calls == 2


def test_a_cache_hit_does_not_decode_the_images_again(fake, monkeypatch):
    from gateway import chat

    calls = []
    real = chat.normalise
    monkeypatch.setattr(chat, "normalise", lambda *a: calls.append(1) or real(*a))
    body = {"model": "fake-llava", "temperature": 0, "messages": [user("What is this?", data_url(jpeg()))]}
    with gateway(fake.url) as (url, _):
        statuses = [post(url, body).headers["X-Gateway-Status"] for _ in range(3)]
        streamed = post(url, {**body, "stream": True}, stream=True)
        streamed.close()
    assert statuses == ["SUCCESS", "CACHED", "CACHED"] and streamed.headers["X-Gateway-Status"] == "CACHED"
    assert len(calls) == 1 and fake.calls == 1  # only the miss judged and normalised the image


def test_a_completed_stream_is_cached(fake):
    body = {"messages": [user("Again?")], "temperature": 0}
    with gateway(fake.url) as (url, _):
        list(post(url, {**body, "stream": True}, stream=True).iter_lines())
        again = post(url, body)
    assert again.headers["X-Gateway-Status"] == "CACHED" and fake.calls == 1
    assert again.json()["usage"]["completion_tokens"] == len(TOKENS)


def test_client_disconnect_cancels_the_upstream_stream_and_frees_the_slot(fake):
    fake.tokens = ["tok"] * 200
    fake.token_delay_s = 0.05
    with gateway(fake.url, MAX_UPSTREAM_IN_FLIGHT=1) as (url, _):
        body = json.dumps({"messages": [user("Long answer")], "stream": True}).encode()
        host, port = url.split("//")[1].split(":")
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            received = b""
            while b"tok" not in received:  # the first tokens arrived ...
                received += conn.recv(4096)
        # ... and the client went away mid-stream
        assert fake.stream_closed.wait(5), "the upstream stream was not dropped"
        assert fake.sent < 100, f"the upstream kept generating ({fake.sent} tokens sent)"
        fake.tokens = ["ok"]
        after = post(url, {"messages": [user("Next")]})
    assert after.status_code == 200, after.text  # the admission slot was freed


def test_an_upstream_failure_mid_stream_is_reported_in_band(fake):
    with gateway(fake.url) as (url, _):
        fake.mode = "break"
        with pytest.raises(openai.APIError, match="out of memory"):
            list(sdk(url).chat.completions.create(model="fake-llava", stream=True, messages=[user("x")]))
        fake.mode = "truncated"
        lines = [line for line in post(url, {"messages": [user("y")], "stream": True}, stream=True).iter_lines()
                 if line]
    assert json.loads(lines[-2][6:])["error"]["code"] == "model_unavailable" and lines[-1] == b"data: [DONE]"


# --------------------------------------------------------------------- models

def test_models_lists_the_served_model_and_aliases(fake):
    with gateway(fake.url, OPENAI_MODEL_ALIASES="gpt-4o-mini") as (url, _):
        client = sdk(url)
        names = [m.id for m in client.models.list()]
        alias = client.chat.completions.create(model="gpt-4o-mini", messages=[user("Hi")])
        with pytest.raises(openai.NotFoundError) as unknown:
            client.chat.completions.create(model="gpt-4", messages=[user("Hi")])
    assert names == ["fake-llava", "gpt-4o-mini"]
    assert alias.choices[0].message.content
    error = unknown.value.body
    assert error["code"] == "model_not_found" and error["param"] == "model" and "fake-llava" in error["message"]


def test_any_model_name_with_a_star_alias_and_upstream_model_setting(fake):
    with gateway(fake.url, OPENAI_MODEL_ALIASES="*", UPSTREAM_MODEL="llava-v1.6") as (url, _):
        names = [m.id for m in sdk(url).models.list()]
        answer = post(url, {"model": "anything", "messages": [user("Hi")]})
    assert names == ["llava-v1.6"] and answer.status_code == 200
    assert fake.payloads[-1]["model"] == "llava-v1.6"


# --------------------------------------------------------------------- errors

def error_of(response: requests.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


@pytest.mark.parametrize("body, param, fragment", [
    ({"messages": []}, "messages", "must not be empty"),
    ({"messages": [user("x")], "n": 2}, "n", "n=1"),
    ({"messages": [user("x")], "max_tokens": 0}, "max_tokens", "from 1 to 1024"),
    ({"messages": [user("x")], "temperature": 3}, "temperature", "from 0 to 2"),
    ({"messages": [user("x")], "top_p": 0}, "top_p", "greater than 0"),
    ({"messages": [user("x")], "stream": "yes"}, "stream", "true or false"),
    ({"messages": [user("x")], "tools": [{"type": "function"}]}, "tools", "not supported"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}, "messages",
     "last message"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", "one of 'user', 'system'"),
    ({"messages": [user("x", "data:image/png;base64,@@@")]}, "messages[0].content[1].image_url", "base64"),
    ({"messages": [{"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                   user("x")]}, "messages[0].content", "user messages only"),
    ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "messages[0].content[0].type",
     "one of 'text', 'image_url'"),
    ({"messages": [user("x")], "stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
    ({"messages": [user("x")], "stop": "x" * 300}, "stop[0]", "at most 256 characters"),
    ({"messages": [user("x")], "seed": 2 ** 64}, "seed", "whole number from -9223372036854775808"),
    ({"messages": [user("x")], "seed": "7"}, "seed", "whole number"),
    ({"messages": [user("x")], "presence_penalty": 0.5}, "presence_penalty", "not supported"),
    ({"messages": [user("x")], "logprobs": True}, "logprobs", "not supported"),
    ({"messages": [user("x")], "response_format": {"type": "yaml"}}, "response_format.type",
     "'text', 'json_object' or 'json_schema'"),
    ({"messages": [user("x")], "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": 5}}}},
     "response_format", "not valid JSON Schema"),
    ({"messages": [user("x")], "response_format": {"type": "json_schema"}}, "response_format",
     "needs a `json_schema` object"),
    ({"messages": [user("x")], "max_tokens": 4, "min_tokens": 5}, "min_tokens", "must not exceed"),
])
def test_bad_requests_get_400_naming_the_field(fake, body, param, fragment):
    with gateway(fake.url) as (url, _):
        response = post(url, body)
    error = error_of(response)
    assert response.status_code == 400 and error["param"] == param and fragment in error["message"], error
    assert error["type"] == "invalid_request_error" and fake.calls == 0


def test_empty_defaults_of_refused_fields_and_ignored_fields_are_accepted(fake):
    """Clients send empty defaults (Spring AI, LangChain4j: `tools: []`, `logprobs: false`,
    penalties 0) and fields that do not change the answer: those keep working."""
    body = {"messages": [user("x")], "tools": [], "tool_choice": "none", "logprobs": False, "presence_penalty": 0.0,
            "frequency_penalty": 0, "logit_bias": {}, "modalities": ["text"], "user": "u-1", "metadata": {"a": "b"},
            "store": False, "parallel_tool_calls": True, "service_tier": "auto", "n": 1, "max_tokens": 16.0,
            "seed": 3.0, "stop": [], "top_k": 40, "min_tokens": 2}
    with gateway(fake.url) as (url, _):
        response = post(url, body)
    assert response.status_code == 200, response.text
    sent = fake.payloads[-1]
    assert (sent["max_tokens"], sent["seed"], sent["top_k"], sent["min_tokens"]) == (16, 3, 40, 2)
    assert "stop" not in sent and "tools" not in sent and "user" not in sent


def test_status_codes_in_openai_shape(fake):
    bmp = io.BytesIO()
    Image.new("RGB", (8, 8)).save(bmp, "BMP")
    with gateway(fake.url, API_KEYS="k1", MAX_UPLOAD_BYTES=4096) as (url, _):
        key = {"Authorization": "Bearer k1"}
        no_key = post(url, {"messages": [user("x")]})
        unsupported = post(url, {"messages": [user("x", data_url(bmp.getvalue()))]}, headers=key)
        too_big = post(url, {"messages": [user("x", data_url(jpeg(400, 400, (1, 2, 3)) + b"\0" * 5000))]},
                       headers=key)
        body_too_big = requests.post(url + CHAT, data=b"x" * (5 * 4096 * 2 + 2 * 1024 * 1024), headers=key,
                                     timeout=15)
        no_route = requests.get(url + "/v1/nothing", headers=key, timeout=5)
        not_json = requests.post(url + CHAT, data=b"{", headers=key, timeout=5)
        with pytest.raises(openai.AuthenticationError):
            sdk(url, key="wrong").chat.completions.create(model="fake-llava", messages=[user("x")])
    assert no_key.status_code == 401 and error_of(no_key)["code"] == "invalid_api_key"
    # Bad image content is 400 invalid_request_error, as OpenAI answers it; the code and message say what.
    assert unsupported.status_code == 400 and error_of(unsupported)["code"] == "unsupported_image_format"
    assert error_of(unsupported)["type"] == "invalid_request_error" and "BMP" in error_of(unsupported)["message"]
    assert error_of(unsupported)["param"] == "messages[0].content[1].image_url"
    assert too_big.status_code == 400 and error_of(too_big)["code"] == "image_too_large"
    assert body_too_big.status_code == 413 and error_of(body_too_big)["code"] == "request_too_large"
    assert no_route.status_code == 404 and error_of(no_route)["code"] == "not_found"
    assert not_json.status_code == 400 and "JSON" in error_of(not_json)["message"]
    assert fake.calls == 0


def test_upstream_refusals_and_outages(fake):
    body = {"messages": [user("x")]}
    with gateway(fake.url, BREAKER_FAIL_MAX=100) as (url, _):
        fake.mode = "context"
        context = post(url, body)
        fake.mode = "queue_full"
        queue = post(url, body)
        fake.mode = "error500"
        failing = post(url, body)
        with pytest.raises(openai.InternalServerError):  # the SDK sees an error, not fallback text
            sdk(url).chat.completions.create(model="fake-llava", messages=[user("x")])
        stream_failing = post(url, {**body, "stream": True})
        metrics = requests.get(url + "/metrics", timeout=5).text
    assert context.status_code == 400 and error_of(context)["code"] == "context_length_exceeded"
    assert error_of(context)["message"] == "upstream says context_length_exceeded"
    assert queue.status_code == 429 and queue.headers["Retry-After"] == "1"
    for response in (failing, stream_failing):  # FALLBACK_ENABLED is true: still an error here
        assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1
        assert error_of(response)["type"] == "service_unavailable"
    assert 'llava_requests_total{endpoint="/v1/chat/completions",status="SERVICE_UNAVAILABLE"} 3.0' in metrics
    assert 'llava_upstream_errors_total{kind="server_error"} 3.0' in metrics


def test_model_down_is_503_fast_and_admission_429(fake):
    fake.mode = "stall"
    with gateway(fake.url, MAX_UPSTREAM_IN_FLIGHT=1, ADMISSION_QUEUE=0) as (url, _):
        import threading
        held = threading.Thread(target=post, args=(url, {"messages": [user("slow")]}))
        held.start()
        deadline = time.monotonic() + 5
        while fake.calls == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        overloaded = post(url, {"messages": [user("another")]})
        overloaded_stream = post(url, {"messages": [user("another")], "stream": True})
        fake.release.set()
        held.join(10)
    assert overloaded.status_code == 429 and overloaded.headers["Retry-After"] == "1"
    assert error_of(overloaded)["type"] == "rate_limit_error"
    assert overloaded_stream.status_code == 429
    with gateway("http://127.0.0.1:9") as (url, _):  # nothing listens there
        started = time.monotonic()
        down = post(url, {"messages": [user("x")]})
    assert down.status_code == 503 and time.monotonic() - started < 2
    assert error_of(down)["code"] == "model_unavailable"


# --------------------------------------------------------------------- images: budget, remote URLs

def test_too_many_image_tokens_are_refused_before_the_model(fake):
    big = jpeg(1000, 1000)  # 2,928 tokens each
    with gateway(fake.url) as (url, _):
        two = post(url, {"messages": [user("Compare", data_url(big), data_url(big))], "max_tokens": 100})
        one = post(url, {"messages": [user("Describe", data_url(big))], "max_tokens": 100})
        many = post(url, {"messages": [user("x", *[data_url(jpeg())] * 5)]})
    error = error_of(two)
    assert two.status_code == 400 and error["code"] == "context_length_exceeded"
    assert "2 image(s) cost 5856 tokens" in error["message"] and "4096" in error["message"]
    assert one.status_code == 200
    assert many.status_code == 400 and "at most 4 images" in error_of(many)["message"]
    assert fake.calls == 1


def test_image_token_count_matches_the_real_processor(demo_model_dir):
    from transformers import AutoProcessor

    from gateway.budget import image_tokens

    processor = AutoProcessor.from_pretrained(demo_model_dir)
    token_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    for size in [(64, 48), (1008, 336), (336, 1008), (672, 672), (1008, 756), (100, 1000), (1000, 3)]:
        ids = processor(images=[Image.new("RGB", size)], text=["<image> hi"], return_tensors="pt")["input_ids"]
        assert image_tokens(*size) == int((ids == token_id).sum()), size


def test_remote_image_urls_are_refused_by_default(fake):
    server = ImageServer(jpeg())
    try:
        with gateway(fake.url) as (url, _):
            response = post(url, {"messages": [user("x", server.url + "/img")]})
            metadata = post(url, {"messages": [user("x", "http://169.254.169.254/latest/meta-data")]})
    finally:
        server.close()
    error = error_of(response)
    assert response.status_code == 400 and error["code"] == "remote_image_refused"
    assert "data:image/jpeg;base64" in error["message"] and metadata.status_code == 400
    assert server.hits == 0 and fake.calls == 0


def test_allow_listed_hosts_are_fetched_within_limits(fake):
    server = ImageServer(jpeg(80, 60))
    host = server.url.split("//")[1]
    try:
        # host:port entries only; the server is on loopback, which only REMOTE_IMAGE_ALLOW_PRIVATE opens
        with gateway(fake.url, REMOTE_IMAGE_HOSTS=f"images.example.com:443,{host}", MAX_UPLOAD_BYTES=4096,
                     REMOTE_IMAGE_TIMEOUT_SECONDS=1, REMOTE_IMAGE_ALLOW_PRIVATE="true") as (url, _):
            fetched = post(url, {"messages": [user("x", server.url + "/img")]})
            other_port = post(url, {"messages": [user("x", "http://127.0.0.1:9/img")]})
            redirect = post(url, {"messages": [user("x", server.url + "/redirect")]})
            started = time.monotonic()
            slow = post(url, {"messages": [user("x", server.url + "/slow")]})
            slow_s = time.monotonic() - started
            server.body = jpeg(400, 400, (1, 2, 3)) + b"\0" * 5000
            too_big = post(url, {"messages": [user("x", server.url + "/img")]})
    finally:
        server.close()
    assert fetched.status_code == 200 and sent_image(fake.payloads[-1]).size == (80, 60)
    assert other_port.status_code == 400 and error_of(other_port)["code"] == "remote_image_refused"
    # after the allow-list, one answer whatever went wrong (it does not tell what answered)
    generic = {error_of(r)["message"] for r in (redirect, slow, too_big)}
    assert len(generic) == 1 and "could not be fetched" in generic.pop()
    assert {r.status_code for r in (redirect, slow, too_big)} == {400}
    assert {error_of(r)["code"] for r in (redirect, slow, too_big)} == {"remote_image_refused"}
    assert slow_s < 1.5
    assert fake.calls == 1
