"""A JSON request body, read within bounds before it becomes Python objects.

`json.loads` turns every value into an object: 10 MiB of `[[],[],...]` became
5 million lists (300 MB) before any check looked at them, and nesting 100,000 deep
ended in a RecursionError (500). Every JSON value but the last is followed by a
comma or opens an array or object, so counting those three bytes (a fast scan of
the raw body; text inside strings only adds to the count) bounds the number of
objects the parse can make. The bound comes from the request caps (messages,
parts, text, a response_format schema), with room for the other fields; nesting
past Python's recursion limit is refused as well.
"""
from __future__ import annotations

import json

from llava_common import schemas

from .statuses import invalid

# Values per message and per content part, at most (a message is ~3, an image part ~5), and for the other fields.
PER_MESSAGE, PER_PART, OTHER_FIELDS = 8, 8, 1024


def values_limit(settings) -> int:
    return (settings.max_messages * PER_MESSAGE + settings.max_parts * PER_PART + settings.max_prompt_chars
            + schemas.MAX_SCHEMA_BYTES + OTHER_FIELDS)


def read_json(request, settings) -> dict:
    """The body as a JSON object, or a 400 that says why (the body is not kept on the request)."""
    raw = request.get_data(cache=False)
    limit = values_limit(settings)
    values = raw.count(b",") + raw.count(b"[") + raw.count(b"{")
    if values > limit:
        raise invalid(f"the body holds about {values} JSON values (counting commas, arrays and objects); at most "
                      f"{limit} are accepted: at most {settings.max_messages} messages, {settings.max_parts} content "
                      f"parts and {settings.max_prompt_chars} characters of text")
    try:
        body = json.loads(raw)
    except RecursionError:
        raise invalid("the JSON body is nested too deeply") from None
    except ValueError:  # not JSON, not UTF-8, or a number too long to read
        raise invalid("the body must be JSON (Content-Type: application/json)") from None
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object (Content-Type: application/json)")
    return body
