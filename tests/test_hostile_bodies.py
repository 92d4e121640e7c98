"""Issue 17, "memory multipliers": request bodies and images that used to make a
gateway worker hold many times what they weigh, sent to the gateway as the README
starts it (gunicorn, one worker, default limits) on loopback. Each test states the
bound it holds: the answer's status, how long it took, and how far the worker's
peak resident memory rose while it was answered (tests/hostile_support.Peak).

Before (the review, on the demo stack): 10 MiB of empty arrays raised a worker by
300 MB and 40 MiB by 1.1 GB before any check; nesting 100,000 deep answered 500;
200,000 empty messages kept the model process busy for 11 s; a 166 KB PNG of
6320x6320 decoded to 650 MB; four in one request were decoded before the token
budget refused them; eight such requests left a worker at 4.8 GB.
"""
from __future__ import annotations

import base64
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from PIL import Image

from tests.gateway_support import FakeUpstream
from tests.hostile_support import MIB, Gunicorn, Peak, status_kib, timed

pytestmark = pytest.mark.slow
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def stack():
    fake = FakeUpstream()
    gateway = Gunicorn(fake.url, GATEWAY_WORKERS=1)
    try:
        requests.get(gateway.url + "/v1/models", timeout=10)  # the worker's imports and first request are done
        yield gateway, fake
    finally:
        gateway.stop()
        fake.close()


def post(url: str, body: bytes, timeout: float = 60) -> requests.Response:
    return requests.post(url + CHAT, data=body, headers={"Content-Type": "application/json"}, timeout=timeout)


def png(side: int, mode: str = "RGBA") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (side, side), (10, 20, 30, 40)[:len(mode)]).save(out, "PNG")
    return out.getvalue()


def chat_with_images(images: list[bytes], text: str = "What is it?", max_tokens: int = 16) -> bytes:
    parts = [{"type": "text", "text": text}] + [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(i).decode()}}
        for i in images]
    return json.dumps({"messages": [{"role": "user", "content": parts}], "max_tokens": max_tokens}).encode()


def refused(response, status: int = 400) -> str:
    assert response.status_code == status, response.text[:300]
    return response.json()["error"]["message"]


@pytest.mark.parametrize("mib, bound_mib", [(10, 10 + 30), (40, 40 + 80)])
def test_a_body_of_empty_arrays_is_refused_before_it_becomes_objects(stack, mib, bound_mib):
    """Bound: 400 within 1 s; the worker holds the raw body and little more (before:
    30 objects' worth per byte, 1.1 GB for 40 MiB)."""
    gateway, fake = stack
    calls = fake.calls
    body = b'{"messages": [' + b"[]," * (mib * MIB // 3) + b"[]]}"
    with Peak(gateway.worker()) as peak:
        response, elapsed = timed(post, gateway.url, body)
    assert "JSON values" in refused(response)
    assert elapsed < 1.0, elapsed
    assert peak.mib < bound_mib, f"the worker's peak rose {peak.mib:.0f} MiB for a {mib} MiB body"
    assert fake.calls == calls


@pytest.mark.parametrize("depth", [100_000, 5_000])
def test_deep_nesting_is_a_400_not_a_500(stack, depth):
    """Bound: 400 within 1 s, +10 MiB. 100,000 deep is over the value count; 5,000
    deep is under it and over Python's recursion limit."""
    gateway, _ = stack
    body = b'{"messages": ' + b"[" * depth + b"]" * depth + b"}"
    with Peak(gateway.worker()) as peak:
        response, elapsed = timed(post, gateway.url, body)
    refused(response)
    assert elapsed < 1.0 and peak.mib < 10, (elapsed, peak.mib)


def test_many_empty_messages_never_reach_the_model(stack):
    """200,000 empty messages (6 MiB): 400 at the gateway within 1 s, +30 MiB; the
    model is not called (before: it tokenised them for 11 s). One past each cap
    (MAX_MESSAGES, MAX_CONTENT_PARTS, MAX_PROMPT_CHARS) is refused by name."""
    gateway, fake = stack
    calls = fake.calls
    flood = json.dumps({"messages": [{"role": "user", "content": ""}] * 200_000}).encode()
    with Peak(gateway.worker()) as peak:
        response, elapsed = timed(post, gateway.url, flood)
    refused(response)
    assert elapsed < 1.0 and peak.mib < 30, (elapsed, peak.mib)

    def messages(n: int, parts: int = 1, text: str = "hi") -> bytes:
        content = [{"type": "text", "text": text}] * parts
        return json.dumps({"messages": [{"role": "user", "content": content}] * n}).encode()

    assert "MAX_MESSAGES" in refused(post(gateway.url, messages(257)))
    assert "MAX_CONTENT_PARTS" in refused(post(gateway.url, messages(2, parts=257)))
    assert "MAX_PROMPT_CHARS" in refused(post(gateway.url, messages(1, text="x" * 8001)))
    assert fake.calls == calls
    assert post(gateway.url, messages(256, text="x" * 31)).status_code == 200  # at the caps: answered


def test_a_decompression_bomb_is_refused_from_its_header(stack):
    """The review's 166 KB PNG of 6320x6320 (650 MB decoded): 400 within 0.5 s, the
    worker +10 MiB: no pixel is decoded. The native upload answers 413 alike."""
    gateway, fake = stack
    calls = fake.calls
    bomb = png(6320)
    assert len(bomb) < 200_000
    with Peak(gateway.worker()) as peak:
        response, elapsed = timed(post, gateway.url, chat_with_images([bomb]))
        upload = requests.post(gateway.url + "/api/v1/multimodal/analyze", files={"image": ("b.png", bomb)},
                               data={"prompt": "?"}, timeout=30)
    assert "16,777,216" in refused(response)
    assert upload.status_code == 413 and "16,777,216" in upload.json()["result"]
    assert elapsed < 0.5 and peak.mib < 10, (elapsed, peak.mib)
    assert fake.calls == calls


def test_images_over_the_token_budget_are_refused_before_any_is_decoded(stack):
    """Four 4096x4096 PNGs (each ~160 MB while decoded) cost 4 x 2,928 tokens: 400
    context_length_exceeded within 0.5 s, +10 MiB (before: all four were decoded first)."""
    gateway, fake = stack
    calls = fake.calls
    big = png(4096)
    with Peak(gateway.worker()) as peak:
        response, elapsed = timed(post, gateway.url, chat_with_images([big] * 4))
    message = refused(response)
    assert response.json()["error"]["code"] == "context_length_exceeded" and "1008x1008: 2928" in message
    assert elapsed < 0.5 and peak.mib < 10, (elapsed, peak.mib)
    assert fake.calls == calls


def test_concurrent_large_images_are_decoded_a_few_at_a_time_and_the_memory_goes_back(stack):
    """Eight requests at once, each with the largest PNG allowed (4096x4096 RGBA, ~156 MiB
    while decoded): all answered 200; at most DECODE_CONCURRENCY (2) decode at once, so the
    worker's peak rises by under 400 MiB (measured ~310; before: 4.8 GB, and it stayed
    there); a second later its resident memory is back within 64 MiB of where it started."""
    gateway, fake = stack
    pid = gateway.worker()
    big = png(4096)
    bodies = [chat_with_images([big], text=f"request {i}") for i in range(8)]
    idle_mib = status_kib(pid, "VmRSS") / 1024
    for _ in range(2):  # a second burst must not add to the first
        with Peak(pid) as peak:
            with ThreadPoolExecutor(8) as pool:
                statuses = [r.status_code for r in pool.map(lambda b: post(gateway.url, b), bodies)]
        assert statuses == [200] * 8
        assert peak.mib < 400, f"the worker's peak rose {peak.mib:.0f} MiB"
        time.sleep(1)
        assert status_kib(pid, "VmRSS") / 1024 < idle_mib + 64
    assert {payload["messages"][0]["content"][1]["image_url"]["url"][:23] for payload in fake.payloads[-8:]} == \
        {"data:image/jpeg;base64,"}
