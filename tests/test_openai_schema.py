"""`GET /openapi.json` describes both faces, built from the same pydantic models
that validate the requests, and schemathesis holds the gateway to it over real
HTTP (a gateway with a fake upstream): in its coverage and fuzzing phases every
answer must match the document (status, content type, headers, body), requests
the document calls invalid must be refused, valid ones accepted (tests/schemathesis.toml
says where that cannot hold), no 5xx, and every 405 names the allowed methods."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests

from gateway.openapi import document
from tests.gateway_support import gateway
from tests.openai_support import ChatUpstream

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = 30  # per operation and phase: bounded to keep the run to several seconds


@pytest.fixture(scope="module")
def served():
    upstream = ChatUpstream()
    try:
        with gateway(upstream.url, OPENAI_MODEL_ALIASES="gpt-4o-mini") as (url, app):
            yield url, upstream
    finally:
        upstream.close()


def test_the_served_document_names_both_faces_and_what_is_refused(served):
    url, _ = served
    served_document = requests.get(url + "/openapi.json", timeout=5).json()
    assert served_document == document() and served_document["openapi"] == "3.1.0"
    paths = set(served_document["paths"])
    assert {"/api/v1/multimodal/analyze", "/api/v1/multimodal/presets", "/v1/chat/completions", "/v1/models",
            "/v1/models/{model}", "/chat/completions", "/models", "/models/{model}", "/health/ready"} <= paths
    chat = served_document["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    assert "Not supported" in chat["tools"]["description"] and "seed" in chat and "stop" in chat
    response_format = served_document["components"]["schemas"]["ResponseFormat"]["properties"]
    assert response_format["type"]["enum"] == ["text", "json_object",
                                               "json_schema"] and "json_schema" in response_format
    analyze = served_document["paths"]["/api/v1/multimodal/analyze"]["post"]
    assert {p["name"] for p in analyze["parameters"]} == {"max-tokens", "temperature"}
    form = served_document["components"]["schemas"]["AnalyzeForm"]["properties"]
    assert {"image", "prompt", "max-tokens", "temperature", "preset", "schema"} <= set(form)
    assert "data" in served_document["components"]["schemas"]["AnalysisResult"]["properties"]


def test_schemathesis_holds_the_gateway_to_its_document(served, tmp_path):
    url, _ = served
    run = subprocess.run(
        [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(CONFIG), "--no-color", "run",
         url + "/openapi.json", "--phases", "coverage,fuzzing", "--max-examples", str(EXAMPLES), "--seed", "13",
         "--workers", "1", "--generation-database", "none", "--suppress-health-check", "all",
         "--request-timeout", "15"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path)  # its cache goes to tmp_path, not the repo
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    operations = sum(len(methods) for methods in document()["paths"].values())
    assert f"{operations} selected" in run.stdout or f"Tested: {operations}" in run.stdout, run.stdout[-2000:]
