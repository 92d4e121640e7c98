"""`GET /openapi.json` describes both APIs, and schemathesis holds the gateway to it:
requests generated from the document, sent over real HTTP to a gateway with a
fake upstream, must never get a 5xx, and every response (status code, content
type, headers, body) must match the document."""
from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from gateway.openapi import document
from tests.gateway_support import gateway
from tests.openai_support import ChatUpstream

CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_headers_conformance, checks.response_schema_conformance]
EXAMPLES = 20  # per operation: bounded to keep the run to a few seconds


@pytest.fixture(scope="module")
def served():
    upstream = ChatUpstream()
    try:
        with gateway(upstream.url, OPENAI_MODEL_ALIASES="gpt-4o-mini") as (url, app):
            yield url, upstream
    finally:
        upstream.close()


# Built from the same function the gateway serves (compared below), so that each
# operation is a test of its own. Driven through hypothesis directly: schemathesis'
# pytest plugin does not run under this pytest.
SCHEMA = schemathesis.openapi.from_dict(document())
OPERATIONS = {op.label: op for op in (result.ok() for result in SCHEMA.get_all_operations())}


def test_the_served_document_names_both_apis(served):
    url, _ = served
    served_document = requests.get(url + "/openapi.json", timeout=5).json()
    assert served_document == document() and served_document["openapi"].startswith("3.")
    assert {"/api/v1/multimodal/analyze", "/v1/chat/completions", "/v1/models", "/health/ready"} <= set(
        served_document["paths"])


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_every_response_matches_the_document(served, label):
    url, _ = served
    statuses = []

    @given(case=OPERATIONS[label].as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case):
        response = case.call_and_validate(base_url=url, checks=CHECKS, timeout=15)
        statuses.append(response.status_code)

    run()
    assert statuses and all(code < 500 or code == 503 and "ready" in label for code in statuses), statuses
