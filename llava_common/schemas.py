"""Structured output requests: OpenAI's `response_format` and the JSON Schemas it
carries, judged the same way by the gateway and the model process (written once).

What is refused here, before anything is queued: a `response_format` of the wrong
shape, a schema that is not valid JSON Schema (checked against the 2020-12
meta-schema with `jsonschema`), one over MAX_SCHEMA_BYTES or nested deeper than
MAX_SCHEMA_DEPTH, and one too costly to enforce (schema_costs.py: too many
`anyOf`/`oneOf` branches, a `pattern` whose automaton would explode). Keywords the
grammar engine cannot enforce (`not`, `if`, `uniqueItems`, ...) are refused by the
model process when it compiles the schema.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from .schema_costs import CostError, check_costs

MAX_SCHEMA_BYTES = 16 * 1024     # a schema is part of every request that uses it
MAX_SCHEMA_DEPTH = 16            # nested objects/arrays in the schema document
JSON_OBJECT, JSON_SCHEMA, TEXT = "json_object", "json_schema", "text"
# `json_object` means "some JSON object" (OpenAI's JSON mode).
ANY_OBJECT = {"type": "object"}


class SchemaError(ValueError):
    """The structured-output request cannot be served; `str()` says why, for the client."""

    def __init__(self, message: str, param: str = "response_format"):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class StructuredOutput:
    """A request for JSON output: the schema as compact JSON (hashable, cache-key ready)."""
    kind: str                 # json_object | json_schema
    schema_json: str
    strict: bool = False
    name: str = ""

    @property
    def schema(self) -> dict:
        return json.loads(self.schema_json)

    @property
    def key(self) -> str:
        """A short stable hash of what constrains the output (grammar cache, answer cache)."""
        return hashlib.sha256(f"{self.kind}\0{int(self.strict)}\0{self.schema_json}".encode()).hexdigest()[:32]


def parse_response_format(value: object) -> StructuredOutput | None:
    """OpenAI's `response_format`: None or {"type": "text"} (free text) -> None."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == TEXT:
        return None
    if kind == JSON_OBJECT:
        return StructuredOutput(JSON_OBJECT, canonical(ANY_OBJECT))
    if kind == JSON_SCHEMA:
        spec = value.get("json_schema")
        if not isinstance(spec, dict):
            raise SchemaError("response_format json_schema needs a `json_schema` object with a `schema`")
        strict = spec.get("strict", False)
        if not isinstance(strict, bool) and strict is not None:
            raise SchemaError("response_format json_schema.strict must be true or false")
        name = spec.get("name", "")
        if not isinstance(name, str) or len(name) > 64:
            raise SchemaError("response_format json_schema.name must be a string of at most 64 characters")
        return StructuredOutput(JSON_SCHEMA, check_schema(spec.get("schema")), strict=bool(strict), name=name)
    raise SchemaError("response_format type must be text, json_object or json_schema")


def from_schema(schema: object, param: str = "schema") -> StructuredOutput:
    """A bare JSON Schema (the native API's `schema` field or a preset's)."""
    try:
        return StructuredOutput(JSON_SCHEMA, check_schema(schema), strict=True)
    except SchemaError as error:
        raise SchemaError(str(error), param) from None


def check_schema(schema: object) -> str:
    """The schema as compact JSON, or SchemaError saying what is wrong with it."""
    if isinstance(schema, str):  # sent as a form field or a part: JSON text
        if len(schema.encode()) > MAX_SCHEMA_BYTES:
            raise SchemaError(f"the schema is over {MAX_SCHEMA_BYTES} bytes")
        try:
            schema = json.loads(schema)
        except ValueError:
            raise SchemaError("the schema is not valid JSON") from None
    if not isinstance(schema, dict):
        raise SchemaError("the schema must be a JSON object (a JSON Schema)")
    if _depth(schema) > MAX_SCHEMA_DEPTH:
        raise SchemaError(f"the schema nests deeper than {MAX_SCHEMA_DEPTH} levels")
    text = canonical(schema)
    if len(text.encode()) > MAX_SCHEMA_BYTES:
        raise SchemaError(f"the schema is over {MAX_SCHEMA_BYTES} bytes")
    from jsonschema import Draft202012Validator, exceptions

    try:
        Draft202012Validator.check_schema(schema)
    except exceptions.SchemaError as error:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise SchemaError(f"the schema is not valid JSON Schema at {where}: {error.message[:200]}") from None
    try:
        check_costs(schema)
    except CostError as error:
        raise SchemaError(str(error)) from None
    return text


def canonical(value) -> str:
    """Compact JSON. Keys keep their order: the answer lists properties in the schema's order."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _depth(value, level: int = 1) -> int:
    """Nesting depth without recursion limits: a hostile schema may be very deep."""
    deepest, stack = level, [(value, level)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_SCHEMA_DEPTH:
            return deepest
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest
