"""Issue 17, "slow clients": the buffering proxy (deploy/nginx/nginx.conf, run by
Debian's nginx as compose and Kubernetes run it, only its listen and upstream
addresses pointed at loopback) in front of a real gateway under gunicorn.

Before: 16 connections that sent a request line and then a byte every 2 s held all
of a worker's threads, and /health/live timed out until they closed; compose
published gunicorn directly.
"""
from __future__ import annotations

import json
import re
import socket
import time

import pytest
import requests

from gateway.openai_api import body_limit
from gateway.settings import GatewaySettings
from tests.hostile_support import NGINX_CONF, Gunicorn, Nginx, Peak, SlowClients, nginx_binary, timed
from tests.openai_support import TOKENS, ChatUpstream, user

pytestmark = pytest.mark.slow
# A small worker, so that 32 slow clients are more than its threads: 4 calls + 8 waiting + 4 spare.
SMALL_WORKER = {"GATEWAY_WORKERS": 1, "GATEWAY_THREADS": 16, "MAX_UPSTREAM_IN_FLIGHT": 4, "ADMISSION_QUEUE": 8}


@pytest.fixture(scope="module")
def stack():
    nginx_binary()
    fake = ChatUpstream(model="llava-demo")
    gateway = Gunicorn(fake.url, **SMALL_WORKER)
    proxy = None
    try:
        proxy = Nginx(gateway.port)
        yield gateway, proxy, fake
    finally:
        if proxy:
            proxy.stop()
        gateway.stop()
        fake.close()


def health_while(port: int, seconds: float) -> list:
    """/health/live asked every 0.5 s for `seconds`: (status or exception name, seconds) each."""
    answers, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        answer, elapsed = timed(requests.get, f"http://127.0.0.1:{port}/health/live", timeout=2)
        answers.append((getattr(answer, "status_code", type(answer).__name__), round(elapsed, 2)))
        time.sleep(0.5)
    return answers


def test_slow_clients_do_not_hold_gunicorn_behind_the_proxy(stack):
    """32 slow connections (16 dripping their headers, 16 their body, a byte every 2 s)
    through the proxy: /health/live answers 200 within 1 s every time for 6 s, and the
    worker's memory rises by under 20 MiB. The same connections straight to gunicorn
    hold its 16 threads and /health/live goes unanswered: why the proxy is there."""
    gateway, proxy, _ = stack
    with Peak(gateway.worker()) as peak:
        slow = [SlowClients(proxy.port, 16), SlowClients(proxy.port, 16, body=True)]
        try:
            proxied = health_while(proxy.port, 6)
        finally:
            for clients in slow:
                clients.close()
    assert all(status == 200 and elapsed < 1.0 for status, elapsed in proxied), proxied
    assert peak.mib < 20, peak.mib

    slow = [SlowClients(gateway.port, 16), SlowClients(gateway.port, 16, body=True)]
    try:
        direct = health_while(gateway.port, 3)
    finally:
        for clients in slow:
            clients.close()
    assert all(status != 200 for status, _ in direct), direct
    gateway.proc.wait_for(gateway.url + "/health/live", timeout=30)  # free again once they are gone


def test_the_proxy_answers_and_streams_like_the_gateway(stack):
    """A chat completion and a stream through the proxy: the same answer, the request id
    passed both ways, and a stream's tokens relayed as they come (not buffered)."""
    _, proxy, fake = stack
    fake.token_delay_s = 0.2
    try:
        plain = requests.post(proxy.url + "/v1/chat/completions", json={"messages": [user("Hi?")], "temperature": 0},
                              headers={"X-Request-ID": "through-the-proxy"}, timeout=30)
        started = time.monotonic()
        arrived = []
        with requests.post(proxy.url + "/v1/chat/completions", stream=True, timeout=30,
                           json={"messages": [user("Stream?")], "stream": True}) as stream:
            for line in stream.iter_lines():
                if line.startswith(b"data: {"):
                    arrived.append(time.monotonic() - started)
    finally:
        fake.token_delay_s = 0.0
    assert plain.status_code == 200 and plain.headers["X-Client-Request-ID"] == "through-the-proxy"
    assert plain.json()["choices"][0]["message"]["content"] == "".join(TOKENS)
    assert len(arrived) >= len(TOKENS) and arrived[-1] - arrived[0] > 0.2 * (len(TOKENS) - 2)


def test_the_body_limit_fits_the_largest_legal_request_and_no_more(stack):
    """nginx's client_max_body_size is the gateway's largest legal chat body (MAX_IMAGES_PER_REQUEST
    images of MAX_UPLOAD_BYTES, base64, and 1 MiB of JSON) rounded up to a MiB; a larger one
    is answered 413 at once, from its Content-Length, in the shape of the API it was sent to."""
    _, proxy, _ = stack
    size = re.search(r"^\s*client_max_body_size (\d+)m;", NGINX_CONF.read_text(), re.M)
    limit = body_limit(GatewaySettings.from_env({}))
    assert limit <= int(size.group(1)) * 1024 * 1024 < limit + 1024 * 1024
    over = int(size.group(1)) * 1024 * 1024 + 1
    (status, body), elapsed = timed(announced, proxy.port, "/v1/chat/completions", over)
    assert status == 413 and json.loads(body)["error"]["code"] == "request_too_large" and elapsed < 1.0
    status, body = announced(proxy.port, "/api/v1/multimodal/analyze", over)
    assert status == 413 and json.loads(body)["status"] == "VALIDATION_ERROR"


def announced(port: int, path: str, length: int) -> tuple[int, bytes]:
    """(status, body) of a POST that announces `length` bytes and sends none of them."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {length}\r\n\r\n".encode())
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += s.recv(65536)
        head, _, body = reply.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?im)^content-length: (\d+)", head).group(1))
        while len(body) < length:  # (nginx then lingers on the connection for the body it refused)
            body += s.recv(65536)
    return int(head.split()[1]), body


def test_one_address_gets_at_most_128_requests_in_progress(stack):
    """128 requests whose bodies arrive slowly are held by nginx (none reaches gunicorn);
    the 129th from the same address is answered 429 with Retry-After at once."""
    gateway, proxy, _ = stack
    held = SlowClients(proxy.port, 128, body=True, every_s=1.0)
    try:
        time.sleep(0.5)
        refused, elapsed = timed(requests.post, proxy.url + "/v1/chat/completions", json={"messages": []}, timeout=10)
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1" and elapsed < 1.0
        assert refused.json()["error"]["type"] == "rate_limit_error"
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=2):
            pass  # gunicorn is idle meanwhile: nothing was passed on
        assert requests.get(gateway.url + "/health/live", timeout=2).status_code == 200
    finally:
        held.close()
