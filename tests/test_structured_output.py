"""Structured output on the real demo model: whatever the (random) weights prefer,
an answer with a schema parses and validates against it, on both engines, alone
and beside unconstrained rows, which stay token for token what they were."""
import dataclasses
import json

import jsonschema
import pytest

from llava_common import schemas
from llava_runtime.errors import ApiError
from llava_runtime.grammar import Grammars, MaskBudget
from tests.hostile_support import hostile_any_of
from tests.test_engine import SIZES, build, prepared_for

WORD = {"type": "string", "maxLength": 24}
# Written for these tests: every JSON Schema feature the presets and clients use. Strings,
# arrays and numbers are bounded so that a random model's answer ends within max_tokens.
SCHEMAS = {
    "flat": {"type": "object", "properties": {"product": WORD, "severity": {"enum": ["low", "medium", "high"]},
                                              "count": {"type": "integer", "minimum": 0, "maximum": 99}},
             "required": ["product", "severity", "count"], "additionalProperties": False},
    "nested": {"type": "object", "properties": {"vendor": {"type": "object", "properties": {"name": WORD, "country": {
        "type": "string", "pattern": "^[A-Z]{2}$"}}, "required": ["name", "country"], "additionalProperties": False}},
        "required": ["vendor"], "additionalProperties": False},
    "array of objects": {"type": "object", "properties": {"lines": {"type": "array", "maxItems": 3, "items": {
        "type": "object", "properties": {"item": WORD, "qty": {"type": "integer", "minimum": 1, "maximum": 9}},
        "required": ["item", "qty"], "additionalProperties": False}}},
        "required": ["lines"], "additionalProperties": False},
    "anyOf": {"type": "object", "properties": {"id": {"anyOf": [WORD, {"type": "integer", "minimum": 0,
                                                                        "maximum": 999}]}},
              "required": ["id"], "additionalProperties": False},
    "nullable": {"type": "object", "properties": {"note": {"type": ["string", "null"], "maxLength": 12}},
                 "required": ["note"], "additionalProperties": False},
    "const and boolean": {"type": "object", "properties": {"version": {"const": 2}, "ok": {"type": "boolean"}},
                          "required": ["version", "ok"], "additionalProperties": False},
    "pattern": {"type": "object", "properties": {"sku": {"type": "string", "pattern": "^[a-z]{3}-[0-9]{4}$"}},
                "required": ["sku"], "additionalProperties": False},
    "date": {"type": "object", "properties": {"date": {"type": "string", "format": "date"}}, "required": ["date"],
             "additionalProperties": False},
    "optional fields": {"type": "object", "properties": {"a": WORD,
                                                         "b": {"type": "integer", "minimum": 0, "maximum": 5}},
                        "required": ["a"], "additionalProperties": False},
    "refs": {"type": "object", "$defs": {"point": {"type": "object", "properties": {
        "x": {"type": "integer", "minimum": 0, "maximum": 1000},
        "y": {"type": "integer", "minimum": 0, "maximum": 1000}},
        "required": ["x", "y"], "additionalProperties": False}},
        "properties": {"top_left": {"$ref": "#/$defs/point"}, "bottom_right": {"$ref": "#/$defs/point"}},
        "required": ["top_left", "bottom_right"], "additionalProperties": False},
    "tuple": {"type": "array", "prefixItems": [WORD, {"type": "integer", "minimum": 0, "maximum": 9}],
              "items": False, "minItems": 2},
    "enum list": {"type": "object", "properties": {"kinds": {"type": "array", "minItems": 1, "maxItems": 2, "items": {
        "enum": ["scratch", "dent", "crack"]}}}, "required": ["kinds"], "additionalProperties": False},
}


def with_schema(item, schema, **changes):
    prepared, params = item
    output = schemas.parse_response_format({"type": "json_schema", "json_schema": {"name": "t", "schema": schema}})
    return prepared, dataclasses.replace(params, response_format=output, **changes)


@pytest.fixture(scope="module")
def grammars(loaded_demo):
    return Grammars(loaded_demo.tokenizer)


@pytest.fixture()
def engines(loaded_demo, model_settings):
    made = []

    def make(kind, **overrides):
        engine = build(kind, loaded_demo, model_settings, **overrides)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.stop(grace_s=5)


def submit(engine, grammars, items, stream=False):
    jobs = []
    with engine.preparing():
        for i, (prepared, params) in enumerate(items):
            constraint = grammars.constraint(params.response_format) if params.response_format else None
            jobs.append(engine.submit(prepared, params, f"s{i}", stream=stream and i % 2 == 0, constraint=constraint))
    return [job.result(timeout=120) for job in jobs]


@pytest.mark.parametrize("kind", ["continuous", "generate"])
def test_every_answer_with_a_schema_validates_beside_free_rows(kind, engines, grammars, loaded_demo, model_settings):
    base = [prepared_for(loaded_demo, model_settings, SIZES[i % len(SIZES)], seed=i, max_tokens=160)
            for i in range(len(SCHEMAS))]
    constrained = [with_schema(item, schema, temperature=0.0 if i % 2 else 0.8)
                   for i, (item, schema) in enumerate(zip(base, SCHEMAS.values()))]
    free = [prepared_for(loaded_demo, model_settings, (640, 480), seed=90 + i, max_tokens=24) for i in range(3)]
    alone = submit(engines(kind, max_batch_size=1), grammars, free)

    mixed = constrained[:6] + free + constrained[6:]
    answers = submit(engines(kind, max_batch_size=16, max_batch_wait_ms=500), grammars, mixed, stream=True)
    got_free = answers[6:9]
    for (name, schema), answer in zip(SCHEMAS.items(), answers[:6] + answers[9:]):
        assert answer.finish_reason == "stop", (name, answer.text)
        jsonschema.validate(json.loads(answer.text), schema)
    assert [a.text for a in got_free] == [a.text for a in alone]  # free greedy rows unchanged by their neighbours
    assert max(a.batch_size for a in answers) >= 4


def test_constrained_greedy_answers_match_across_engines_and_alone(engines, grammars, loaded_demo, model_settings):
    items = [with_schema(prepared_for(loaded_demo, model_settings, SIZES[i], seed=i, max_tokens=160), schema)
             for i, schema in enumerate(list(SCHEMAS.values())[:4])]
    continuous = submit(engines("continuous", max_batch_size=8), grammars, items)
    alone = [submit(engines("continuous", max_batch_size=1), grammars, [item])[0] for item in items[:2]]
    generate = submit(engines("generate", max_batch_size=1), grammars, items)
    assert [a.text for a in continuous] == [a.text for a in generate]
    assert [a.text for a in continuous[:2]] == [a.text for a in alone]


def test_a_seeded_sampled_answer_with_a_schema_repeats(engines, grammars, loaded_demo, model_settings):
    item = with_schema(prepared_for(loaded_demo, model_settings, (500, 500), max_tokens=160), SCHEMAS["flat"],
                       temperature=1.0, seed=11)
    engine = engines("continuous", max_batch_size=4)
    first, second = submit(engine, grammars, [item, item])
    assert first.text == second.text and json.loads(first.text)


def test_compiled_grammars_are_cached_by_schema(loaded_demo):
    fresh = Grammars(loaded_demo.tokenizer)
    output = with_schema((None, prepared_for_params()), SCHEMAS["flat"])[1].response_format
    first, second = fresh.constraint(output), fresh.constraint(output)
    assert fresh.compiled == 1 and first is not second and first.matcher is not second.matcher  # one compile, own state
    reordered = dict(reversed(list(SCHEMAS["flat"].items())))
    fresh.constraint(schemas.from_schema(reordered))
    assert fresh.compiled == 2  # key order matters: the answer lists properties in the schema's order


def prepared_for_params():
    from llava_runtime.inputs import SamplingParams

    return SamplingParams(max_tokens=8, temperature=0)


@pytest.mark.parametrize("response_format,words", [
    ({"type": "json_schema", "json_schema": {"schema": {"type": "array", "uniqueItems": True}}},
     "cannot be enforced: Unimplemented keys"),
    ({"type": "json_schema", "json_schema": {"schema": {"not": {"type": "string"}}}}, "cannot be enforced"),
    ({"type": "json_schema", "json_schema": {"schema": {"type": 5}}}, "not valid JSON Schema"),
    ({"type": "json_schema", "json_schema": {"schema": "{broken"}}, "not valid JSON"),
    ({"type": "json_schema", "json_schema": {"schema": {"description": "x" * 20_000}}}, "over 16384 bytes"),
    ({"type": "json_schema", "json_schema": {"schema": json.loads("{\"items\":" * 40 + "{}" + "}" * 40)}},
     "nests deeper than 16"),
    ({"type": "json_schema"}, "needs a `json_schema` object"),
    ({"type": "yaml"}, "must be text, json_object or json_schema"),
])
def test_bad_structured_output_requests_are_refused_with_400(grammars, response_format, words):
    from llava_runtime.inputs import Limits, parse_chat
    from llava_runtime.settings import ModelSettings

    body = {"messages": [{"role": "user", "content": "hi"}], "response_format": response_format}
    with pytest.raises(ApiError) as refused:
        request = parse_chat(body, Limits(ModelSettings()))
        grammars.constraint(request.params.response_format)
    assert refused.value.status == 400 and refused.value.param == "response_format"
    assert words in refused.value.message


def test_min_tokens_cannot_fight_a_schema():
    from llava_runtime.inputs import Limits, parse_chat
    from llava_runtime.settings import ModelSettings

    body = {"messages": [{"role": "user", "content": "hi"}], "min_tokens": 5,
            "response_format": {"type": "json_object"}}
    with pytest.raises(ApiError) as refused:
        parse_chat(body, Limits(ModelSettings()))
    assert refused.value.param == "min_tokens"


def test_compiling_a_large_schema_is_bounded(loaded_demo):
    """A schema at the size limit, many alternatives deep: compiled (or refused) in the
    request's thread within a bound, never on the engine's."""
    import time

    fresh = Grammars(loaded_demo.tokenizer)
    wide = {"type": "object", "properties": {f"field_{i}": {"anyOf": [{"type": "string", "maxLength": 8},
                                                                       {"type": "integer"}, {"type": "null"}]}
                                              for i in range(120)}}
    output = schemas.from_schema(wide)
    assert len(output.schema_json) < schemas.MAX_SCHEMA_BYTES
    started = time.monotonic()
    try:
        fresh.constraint(output)
    except ApiError as refused:
        assert refused.status == 400
    assert time.monotonic() - started < 5.0


# --------------------------------------------------------------------- issue 25: a grammar fails its own row

LONG_TEXT = {"type": "object", "properties": {"note": {"type": "string", "maxLength": 400}}, "required": ["note"]}


@pytest.mark.parametrize("kind", ["continuous", "generate"])
def test_a_row_whose_grammar_fails_while_decoding_fails_alone_with_400(kind, engines, loaded_demo, model_settings):
    """A grammar over its mask budget after its first 32 tokens (an average budget no
    mask can meet) fails its own row with 400 invalid_request, never a 500; the free
    rows beside it finish, token for token what they are alone."""
    strict = Grammars(loaded_demo.tokenizer, MaskBudget(single_s=10.0, average_s=1e-9))
    free = [prepared_for(loaded_demo, model_settings, (640, 480), seed=70 + i, max_tokens=48) for i in range(2)]
    alone = submit(engines(kind, max_batch_size=1), strict, free)
    hostile = with_schema(prepared_for(loaded_demo, model_settings, (500, 500), seed=5, max_tokens=300), LONG_TEXT)
    engine = engines(kind, max_batch_size=8, max_batch_wait_ms=500)
    with engine.preparing():
        jobs = [engine.submit(prepared, params, f"r{i}", constraint=strict.constraint(params.response_format)
                              if params.response_format else None)
                for i, (prepared, params) in enumerate([free[0], hostile, free[1]])]
    with pytest.raises(ApiError) as failed:
        jobs[1].result(timeout=120)
    assert failed.value.status == 400 and failed.value.code == "invalid_request"
    assert "too costly to enforce" in failed.value.message and failed.value.param == "response_format"
    assert [jobs[0].result(timeout=120).text, jobs[2].result(timeout=120).text] == [a.text for a in alone]


def test_a_grammar_that_fails_on_its_forced_prefix_is_refused_before_it_is_queued(loaded_demo):
    """Issue 25's schema with the branch limit out of the way (the model process is
    also called without the gateway): 120 anyOf objects sharing six properties pass
    the size and depth limits, then overflow llguidance's items per row on the first
    `{`. The trial at compile time refuses them with 400 and caches nothing."""
    fresh = Grammars(loaded_demo.tokenizer)
    output = schemas.StructuredOutput(schemas.JSON_SCHEMA, schemas.canonical(hostile_any_of(120)))
    with pytest.raises(ApiError) as refused:
        fresh.constraint(output)
    assert refused.value.status == 400 and "items" in refused.value.message and fresh.compiled == 0


def test_the_grammar_cache_is_kept_per_tenant(loaded_demo):
    fresh = Grammars(loaded_demo.tokenizer)
    output = schemas.from_schema(SCHEMAS["flat"])
    fresh.constraint(output, "tenant-a")
    fresh.constraint(output, "tenant-a")
    assert fresh.compiled == 1
    fresh.constraint(output, "tenant-b")
    assert fresh.compiled == 2  # B's first use compiles anew: its timing says nothing about A


@pytest.mark.parametrize("schema,keyword", [
    (hostile_any_of(120), "`anyOf` at # has 120 branches"),
    ({"oneOf": [{"const": i} for i in range(40)]}, "`oneOf` at # has 40 branches"),
    ({"type": "string", "pattern": "^.*a.{1000}$"}, "`pattern` at # cannot be enforced"),
    ({"type": "string", "pattern": "a.{20}"}, "`pattern` at # cannot be enforced"),  # unanchored: an implicit .*
    ({"type": "object", "patternProperties": {"^x.*y{40}$": {}}}, "`patternProperties` at # cannot be enforced"),
    ({"type": "object", "properties": {"pattern": {"type": "string", "pattern": "(a|b)+c{30}"}}},
     "`pattern` at #/properties/pattern cannot be enforced"),
])
def test_schemas_too_costly_to_enforce_are_refused_naming_the_keyword(schema, keyword):
    with pytest.raises(schemas.SchemaError) as refused:
        schemas.from_schema(schema)
    assert keyword in str(refused.value)


@pytest.mark.parametrize("schema", [
    hostile_any_of(32),
    {"type": "string", "pattern": "^\\d{4}-\\d{2}-\\d{2}$"},
    {"type": "string", "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"},
    {"type": "string", "pattern": "^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$"},  # an IBAN
    {"type": "string", "pattern": "[a-z]{3}-[0-9]{4}"},  # unanchored, 8 characters
    {"type": "object", "properties": {f"f{i}": {"anyOf": [{"type": "string"}, {"type": "null"}]}
                                      for i in range(150)}},  # many nullable fields do not add up
])
def test_schemas_within_the_limits_pass(schema, loaded_demo):
    Grammars(loaded_demo.tokenizer).constraint(schemas.from_schema(schema))
