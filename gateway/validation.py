"""Request bodies are validated by pydantic models (native_schema.py,
openai_schema.py), the same models that produce the OpenAPI document (openapi.py),
so what is documented is what is checked. This module turns pydantic's errors
into one `Refusal` that names the field (`param`, in OpenAI's dotted form such as
`messages[0].content[1].image_url`) and says what is wrong in words a client can
act on; it never passes on pydantic's internals.

Validators in the models raise `PydanticCustomError` for rules with their own
wording (an unsupported field, a refused value): its type becomes the error code
and its message is used as written.
"""
from __future__ import annotations

import functools
import typing
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core.core_schema import ErrorType

from .statuses import Refusal, invalid

M = TypeVar("M", bound=BaseModel)
# Error types that mean "a number out of range or not a number".
_NUMERIC = {"int_type", "int_parsing", "int_from_float", "float_type", "float_parsing", "finite_number",
            "greater_than", "greater_than_equal", "less_than", "less_than_equal"}
_BOOLEAN = {"bool_type", "bool_parsing"}
_MOST_REPORTED = 3
_BUILT_IN = frozenset(typing.get_args(ErrorType))


def validated(model: type[M], data: object, tags: frozenset[str] = frozenset()) -> M:
    """`data` as an instance of `model`, or a Refusal (400). `tags` are the
    discriminator values of tagged unions, which pydantic puts in an error's path."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise refusal(exc, model, tags) from None


def refusal(exc: ValidationError, model: type[BaseModel], tags: frozenset[str] = frozenset()) -> Refusal:
    errors = exc.errors(include_url=False)
    described = [_describe(error, model, tags) for error in errors[:_MOST_REPORTED]]
    message = "; ".join(text for _, text, _ in described)
    if len(errors) > _MOST_REPORTED:
        message += f" (and {len(errors) - _MOST_REPORTED} more)"
    param, _, code = described[0]
    return invalid(message, code=code, param=param)


def param_of(loc: tuple, tags: frozenset[str] = frozenset()) -> str:
    """('messages', 0, 'content', 1, 'image_url', 'image_url', 'url') ->
    'messages[0].content[1].image_url.url' (the tag after an index is dropped)."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif i and isinstance(loc[i - 1], int) and part in tags and i + 1 < len(loc):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _describe(error: dict, model: type[BaseModel], tags: frozenset[str]) -> tuple[str, str, str | None]:
    """(param, message, code) of one pydantic error."""
    kind, loc = error["type"], error["loc"]
    param = param_of(loc, tags) or "body"
    if kind not in _BUILT_IN:  # a PydanticCustomError from our own validators: its words, its code
        return param, error["msg"].replace("{param}", param), kind
    if kind == "missing":
        return param, f"`{param}` is required", None
    if kind in _BOOLEAN:
        return param, f"`{param}` must be true or false", None
    bounds = _bounds(model).get(loc[0]) if kind in _NUMERIC and len(loc) == 1 else None
    if bounds:
        return param, f"`{param}` must be {bounds}; got {_shown(error.get('input'))}", None
    ctx = error.get("ctx") or {}
    if kind == "too_short":
        least = ctx.get("min_length", 1)
        return param, f"`{param}` must not be empty" if least == 1 else f"`{param}` needs at least {least} items", None
    if kind == "too_long":
        return param, f"`{param}` may have at most {ctx.get('max_length')} items; got {ctx.get('actual_length')}", None
    if kind in ("union_tag_invalid", "union_tag_not_found"):  # the field that picks the kind of object
        field = f"{param}.{ctx.get('discriminator', 'type').strip(chr(39))}"
        if kind == "union_tag_not_found":
            return field, f"`{field}` is required", None
        return field, f"`{field}` must be one of {ctx.get('expected_tags')}", None
    if error["msg"].startswith("Input should be "):  # pydantic's wording, turned to name the field
        return param, f"`{param}` must be {error['msg'][len('Input should be '):]}", None
    return param, f"`{param}`: {error['msg']}", None


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@functools.cache
def _bounds(model: type[BaseModel]) -> dict[str, str]:
    """'a whole number from 1 to 1024' per top-level numeric field, read from the
    model's own JSON schema (one source for the check, the message and the document)."""
    described = {}
    schema = model.model_json_schema()
    for name, prop in schema.get("properties", {}).items():
        for option in prop.get("anyOf", [prop]):
            if option.get("type") in ("integer", "number"):
                described[name] = _range_text(option)
                break
    return described


def _range_text(prop: dict) -> str:
    kind = "a whole number" if prop["type"] == "integer" else "a number"
    lo, hi = prop.get("exclusiveMinimum", prop.get("minimum")), prop.get("maximum")
    if lo is None or hi is None:
        return kind
    if "exclusiveMinimum" in prop:
        return f"{kind} greater than {lo:g} and at most {hi:g}"
    return f"{kind} from {_num(lo)} to {_num(hi)}"


def _num(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"

