"""Issue 17, "logs": client text that reaches a log line or an answer, sent to a
gateway under gunicorn with API_KEYS set (the review needed no key). Every log
line the gateway writes stays one line (control characters escaped) and short
(messages cut at 2,000 characters); answers quote client text escaped and cut.

Before: a path with %0d%0a forged log lines without a key; a 5 MB `model` value
was logged and echoed whole.
"""
from __future__ import annotations

import json
import re

import pytest
import requests

from tests.gateway_support import FakeUpstream
from tests.hostile_support import MIB, Gunicorn, Peak, timed

pytestmark = pytest.mark.slow
KEY = "key-of-tenant-a"
FORGED = "2026-11-26 12:00:00,000 INFO gateway gateway.auth: admin logged in"
# What every line the gateway's own logging writes looks like (gateway/logs.py FORMAT).
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ gateway ")


@pytest.fixture(scope="module")
def stack():
    fake = FakeUpstream()
    gateway = Gunicorn(fake.url, GATEWAY_WORKERS=1, API_KEYS=KEY, UPSTREAM_MODEL="fake-llava")
    try:
        yield gateway, fake
    finally:
        gateway.stop()
        fake.close()


def gateway_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if " gateway " in line]


def test_a_path_with_crlf_cannot_forge_a_log_line(stack):
    """No key, a path carrying CR LF and a fake log line: 401 in under 1 s; the log
    has one line for the request with the CR LF escaped, and no forged line."""
    gateway, _ = stack
    path = "/v1/chat%0D%0A" + FORGED.replace(" ", "%20") + "%0D%0A"
    response, elapsed = timed(requests.get, gateway.url + path, timeout=10)
    assert response.status_code == 401 and elapsed < 1.0
    output = gateway.proc.output()
    assert not any(line.startswith(FORGED) for line in output.splitlines())
    [logged] = [line for line in gateway_lines(output) if "admin logged in" in line]
    assert LINE.match(logged) and "\\x0d\\x0a" in logged


def test_a_huge_model_name_is_refused_and_never_echoed_or_logged_whole(stack):
    """A 5 MB `model`: 400 in under 1 s with an answer under 1 KB, every log line under
    2.2 KB, the worker +30 MiB (the body itself)."""
    gateway, fake = stack
    body = {"model": "m" * (5 * MIB), "messages": [{"role": "user", "content": "hi"}]}
    with Peak(gateway.worker()) as peak:
        response, elapsed = timed(requests.post, gateway.url + "/v1/chat/completions", data=json.dumps(body),
                                  headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
                                  timeout=30)
    assert response.status_code == 400 and response.json()["error"]["param"] == "model"
    assert len(response.content) < 1024 and elapsed < 1.0 and peak.mib < 30, (len(response.content), elapsed,
                                                                             peak.mib)
    assert max(len(line) for line in gateway_lines(gateway.proc.output())) < 2200


def test_client_text_in_answers_is_escaped_and_cut(stack):
    """A model name at the cap with CR LF in it, and a 4,000-character path: the
    answers quote them escaped and cut short."""
    gateway, _ = stack
    headers = {"Authorization": f"Bearer {KEY}"}
    model = "evil\r\nX-Injected: 1" + "m" * 230
    named = requests.post(gateway.url + "/v1/chat/completions", headers=headers, timeout=10,
                          json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert named.status_code == 404 and "evil\\x0d\\x0aX-Injected" in named.json()["error"]["message"]
    assert len(named.json()["error"]["message"]) < 600 and "X-Injected" not in named.headers
    long = requests.get(gateway.url + "/v1/" + "p" * 4000, headers=headers, timeout=10)
    assert long.status_code == 404 and len(long.json()["error"]["message"]) < 400
    assert "more characters" in long.json()["error"]["message"]
    bad_id = requests.get(gateway.url + "/v1/models", headers={**headers, "X-Request-ID": "a\tb" * 50}, timeout=10)
    assert re.fullmatch(r"[0-9a-f]{32}", bad_id.headers["X-Request-ID"])  # ours, always
    assert "X-Client-Request-ID" not in bad_id.headers  # a malformed client id is not echoed
