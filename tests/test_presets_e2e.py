"""Structured answers through the whole demo stack (gateway + real model process):
every preset's `data` validates against its schema, a client's own schema too, and
a bad schema is refused before anything is queued."""
import json

import jsonschema
import pytest
import requests

from gateway.presets import BUILT_IN, PresetError, load
from tests import images

pytest_plugins = ["tests.openai_stack"]
ANALYZE = "/api/v1/multimodal/analyze"


def analyze(stack, data: dict, seed: int = 0, files: dict | None = None, **params):
    photo = images.jpeg(500, 400, seed=seed)
    return requests.post(stack.url + ANALYZE, files={"image": ("photo.jpg", photo, "image/jpeg"), **(files or {})},
                         data=data, params={"temperature": "0", **params}, timeout=180)


def test_presets_are_listed_with_their_schemas(demo_stack):
    listed = requests.get(demo_stack.url + "/api/v1/multimodal/presets", timeout=10).json()["presets"]
    assert [p["name"] for p in listed] == ["product-defect", "invoice", "qc-inspection", "describe"]
    for preset in listed:
        jsonschema.Draft202012Validator.check_schema(preset["schema"])
        assert preset["prompt"] and preset["description"] and preset["maxTokens"] >= 512


@pytest.mark.parametrize("preset", [p.name for p in BUILT_IN])
def test_every_preset_answers_data_that_follows_its_schema(demo_stack, preset):
    schema = next(p.schema for p in BUILT_IN if p.name == preset)
    for seed in range(2):
        response = analyze(demo_stack, {"preset": preset}, seed=seed)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "SUCCESS", body
        jsonschema.validate(body["data"], schema)
        assert json.loads(body["result"]) == body["data"]
    again = analyze(demo_stack, {"preset": preset}, seed=1)
    assert again.json()["data"] == body["data"]  # greedy: the same answer


def test_a_clients_own_schema_as_a_field_or_a_file_part(demo_stack):
    schema = {"type": "object", "properties": {"colour": {"enum": ["red", "green", "blue", "other"]},
                                               "count": {"type": "integer", "minimum": 0, "maximum": 20}},
              "required": ["colour", "count"], "additionalProperties": False}
    as_field = analyze(demo_stack, {"prompt": "What colour is it, and how many?", "schema": json.dumps(schema)})
    as_part = analyze(demo_stack, {"prompt": "What colour is it, and how many?"},
                      files={"schema": ("schema.json", json.dumps(schema).encode(), "application/json")})
    for response in (as_field, as_part):
        assert response.status_code == 200, response.text
        jsonschema.validate(response.json()["data"], schema)
    free = analyze(demo_stack, {"prompt": "What colour is it, and how many?"})
    assert free.json()["data"] is None and free.json()["result"] != as_field.json()["result"]


@pytest.mark.parametrize("data, param, words", [
    ({"prompt": "x", "schema": "{not json"}, "schema", "not valid JSON"),
    ({"prompt": "x", "schema": json.dumps({"type": "array", "uniqueItems": True})}, "schema", "uniqueItems"),
    ({"prompt": "x", "schema": json.dumps({"type": 5})}, "schema", "not valid JSON Schema"),
    ({"prompt": "x", "schema": json.dumps({"description": "x" * 20_000})}, "schema", "16384"),
    ({"preset": "horoscope"}, "preset", "there is no preset `horoscope`"),
    ({"preset": "invoice", "schema": "{}"}, "schema", "not both"),
])
def test_bad_schemas_and_presets_are_refused_with_the_reason(demo_stack, data, param, words):
    response = analyze(demo_stack, data)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == "VALIDATION_ERROR" and words in body["result"], body


def test_a_presets_file_adds_presets_and_a_bad_one_says_what_is_wrong(tmp_path):
    good = tmp_path / "presets.json"
    good.write_text(json.dumps({"shelf-count": {"description": "Count items on a shelf", "prompt": "Count them.",
                                                "schema": {"type": "integer", "minimum": 0, "maximum": 999},
                                                "max_tokens": 16}}))
    presets = load(str(good))
    assert set(presets) == {p.name for p in BUILT_IN} | {"shelf-count"} and presets["shelf-count"].max_tokens == 16
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"Bad Name": {"description": "x", "prompt": "y", "schema": {}}}))
    with pytest.raises(PresetError) as refused:
        load(str(bad))
    assert "lowercase letters" in str(refused.value) and "bad.json" in str(refused.value)
    bad.write_text(json.dumps({"ok": {"description": "x", "prompt": "y", "schema": {"type": 5}}}))
    with pytest.raises(PresetError, match="not valid JSON Schema"):
        load(str(bad))
