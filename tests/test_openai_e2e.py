"""End to end through the real model process (demo model) behind the gunicorn
gateway, as `make demo` runs them: the OpenAI SDK plain and streaming, streamed
text equal to the non-streamed text of the same greedy request, a client that
goes away freeing its row upstream, and the JDK's h2c upgrade offer on a POST
answered as HTTP/1.1."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys

import openai
import pytest
import requests

from tests.gateway_support import jpeg
from tests.openai_support import data_url, user
from tests.procs import ROOT, child_env, poll

pytest_plugins = ["tests.openai_stack"]
pytestmark = pytest.mark.slow


def model_metric(stack, name: str) -> float:
    text = requests.get(stack.model_url + "/metrics", timeout=5).text
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_sdk_plain_and_streamed_answers_are_the_same_greedy_text(demo_stack):
    client = openai.OpenAI(base_url=demo_stack.url + "/v1", api_key="unused", max_retries=0, timeout=60)
    messages = [user("What is in this picture?", data_url(jpeg(320, 240)))]
    plain = client.chat.completions.create(model="llava-demo", messages=messages, max_tokens=12, temperature=0)
    stream = client.chat.completions.create(model="llava-demo", messages=messages, max_tokens=12, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    deltas, usage = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            deltas.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    assert plain.model == "llava-demo" and plain.usage.prompt_tokens > 500
    assert 1 <= plain.usage.completion_tokens <= 12
    assert len(deltas) > 1, "tokens must arrive one by one, not as one block"
    assert "".join(deltas) == plain.choices[0].message.content
    assert usage.completion_tokens == plain.usage.completion_tokens
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=4)


def test_the_readmes_openai_sdk_example_runs_as_written(demo_stack, tmp_path):
    """The README's Python snippet, only its address changed to the stack's free port,
    run in a folder holding photo.jpg."""
    snippet = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    assert 'base_url="http://localhost:8080/v1"' in snippet and 'model="llava-demo"' in snippet
    (tmp_path / "photo.jpg").write_bytes(jpeg(640, 480))
    run = subprocess.run([sys.executable, "-c", snippet.replace("http://localhost:8080", demo_stack.url)],
                         cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.endswith("\n") and not run.stderr


def test_a_client_that_goes_away_frees_its_row_in_the_model(demo_stack):
    generated_before = model_metric(demo_stack, "llava_model_generation_tokens_total")
    body = json.dumps({"messages": [user("Tell me a long story.")], "max_tokens": 1000, "temperature": 0,
                       "stream": True}).encode()
    port = int(demo_stack.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        received = b""
        while received.count(b"data: ") < 4:
            received += conn.recv(4096)
    # Once nothing runs, nothing more is generated: the count below is final.
    poll(lambda: model_metric(demo_stack, "llava_model_requests_running") == 0, 10, "the row freed in the model")
    generated = model_metric(demo_stack, "llava_model_generation_tokens_total") - generated_before
    assert generated < 1000, f"the model went on generating for a client that left ({generated} tokens)"


def test_jdk_h2c_upgrade_offer_on_a_post_is_answered_as_http1(demo_stack):
    body = json.dumps({"messages": [user("Hi")], "max_tokens": 4}).encode()
    port = int(demo_stack.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
                     b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                     b"HTTP2-Settings: AAEAAEAAAAIAAAABAAMAAABkAAQBAAAAAAUAAEAA\r\n"
                     b"User-Agent: Java-http-client/17\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        reply = b""
        while b"chat.completion" not in reply:
            chunk = conn.recv(4096)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply[:300]
    assert b'"object":"chat.completion"' in reply


def test_32_concurrent_clients_wait_their_turn_instead_of_429(demo_stack):
    """Issue 13: `make demo` refused about a third of 16 concurrent clients with 429 at
    once (8 model calls per worker, none waiting). With default settings the gateway
    now queues them: 32 concurrent clients, no 429 at all."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.gateway_support import analyze

    def one(i):
        response = analyze(demo_stack.url, jpeg(64, 48, (i * 7 % 256, 40, 90)), f"Client {i}: what is this?",
                           params={"max-tokens": "8"}, timeout=120)
        return response.status_code, response.json()["status"]

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(one, range(32)))
    assert answers == [(200, "SUCCESS")] * 32, answers
