"""What a JSON Schema may cost to enforce, judged before anything is queued (the
gateway and the model process apply the same rules: llava_common/schemas.py).

A schema within the size and depth limits can still be too costly for the grammar
engine, and its cost shows only while the answer is decoded, in the engine's
thread, beside every other tenant's rows. Two shapes were found (issue 25) and are
bounded here, each refused with a message naming the keyword:

- Branches. `anyOf` / `oneOf` of many objects sharing properties: after the
  opening `{` llguidance keeps an Earley item per branch and property, and 120
  branches of 7 properties passed its 2,000 items per row ("Current row has 2280
  items") after the first token. Measured on the demo tokenizer with random
  allowed tokens: 32 such branches cost at most 0.42 ms per mask (0.016 ms on
  average), 64 cost 0.90 ms, 120 fail. So at most MAX_BRANCHES per keyword. (Many
  small `anyOf`s side by side, such as the nullable fields of a Pydantic model, do not
  add up: each is parsed in its own place; nested ones that might are tried on the
  compiled grammar, llava_runtime/grammar.py.)
- Patterns whose lexer automaton explodes. In `.*a.{n}` (or `a.{n}`: JSON Schema
  patterns are unanchored, an implicit `.*` in front) the automaton must remember
  where each `a` of the last n characters was: up to 2^n states. llguidance stops at
  250,000 states ("too many states") while decoding; before it does, masks cost
  ~1 ms each (`.{1000}`: 0.66-0.94 ms on average, 16 ms at worst, against 0.009 ms
  for `.{8}`). A bounded repetition that follows an unbounded one (or an unanchored
  start) may span at most MAX_AMBIGUOUS_REPEAT characters: 2^16 = 65,536 states
  stay well under the limit. Anchor the pattern (`^...$`) to use longer counted
  runs after a fixed start: `^\\d{4}-\\d{2}-\\d{2}$`, a UUID, an IBAN all pass.

What stays possible is then bounded again while decoding (llava_runtime/grammar.py:
the parser's limits and a time budget per mask, each failing only its own row).
"""
from __future__ import annotations

import re

# The standard library's own regular-expression parser (private modules, unchanged since
# 3.11): the pattern's structure without writing a parser here.
from re import _constants as sre_constants
from re import _parser as sre_parse

MAX_BRANCHES = 32          # branches of one anyOf / oneOf
MAX_AMBIGUOUS_REPEAT = 16  # characters a counted repetition may span after an unbounded one
MAX_PATTERN_CHARS = 1000   # one pattern's text
# Keywords whose value maps names to subschemas: their keys are names, not keywords.
_NAMED = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_UNBOUNDED = sre_constants.MAXREPEAT
_REPEATS = (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT, getattr(sre_constants, "POSSESSIVE_REPEAT", None))


class CostError(ValueError):
    """A schema too costly to enforce; `str()` names the keyword and where it is."""


def check_costs(schema: dict) -> None:
    """Raise CostError for the first keyword over a limit."""
    for where, node in _subschemas(schema):
        for keyword in ("anyOf", "oneOf"):
            branches = node.get(keyword)
            if isinstance(branches, list) and len(branches) > MAX_BRANCHES:
                raise CostError(f"`{keyword}` at {where} has {len(branches)} branches; at most "
                                f"{MAX_BRANCHES} can be enforced")
        patterns = [("pattern", node["pattern"])] if isinstance(node.get("pattern"), str) else []
        if isinstance(node.get("patternProperties"), dict):
            patterns += [("patternProperties", key) for key in node["patternProperties"]]
        for keyword, pattern in patterns:
            why = pattern_cost(pattern)
            if why:
                raise CostError(f"`{keyword}` at {where} cannot be enforced: {why}")


def pattern_cost(pattern: str) -> str | None:
    """Why a JSON Schema `pattern` is too costly to enforce, or None. One that Python
    cannot parse is left to the grammar engine (its syntax is ECMA-262's)."""
    if len(pattern) > MAX_PATTERN_CHARS:
        return f"the pattern is over {MAX_PATTERN_CHARS} characters"
    try:
        parsed = sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError, ValueError):
        return None
    anchored = bool(parsed.data) and parsed.data[0][0] == sre_constants.AT and \
        parsed.data[0][1] in (sre_constants.AT_BEGINNING, sre_constants.AT_BEGINNING_STRING)
    _, _, ambiguous = _cost(parsed.data, after_unbounded=not anchored)
    if ambiguous > MAX_AMBIGUOUS_REPEAT:
        return (f"a counted repetition spans up to {ambiguous} characters after an unbounded part (`.*`, `+`, or "
                f"the unanchored start); at most {MAX_AMBIGUOUS_REPEAT} can be enforced. Anchor the pattern with "
                "^...$ or shorten the repetition")
    return None


def _cost(items, after_unbounded: bool) -> tuple[int, bool, int]:
    """(longest match if bounded, contains an unbounded repetition, the longest bounded
    run that follows an unbounded part) of a parsed sequence."""
    width, unbounded, ambiguous = 0, False, 0
    run = 0  # bounded characters since the last unbounded part (counted only after one)
    for op, arg in items:
        w, u, a = _item(op, arg, after_unbounded)
        ambiguous = max(ambiguous, a)
        if u:
            unbounded, after_unbounded, run = True, True, 0
        elif after_unbounded:
            run += w
            ambiguous = max(ambiguous, run)
        width += w
    return width, unbounded, ambiguous


def _item(op, arg, after_unbounded: bool) -> tuple[int, bool, int]:
    if op in _REPEATS:
        low, high, inner = arg
        w, u, a = _cost(inner, after_unbounded)
        if high == _UNBOUNDED:
            return w, True, a
        return w * high, u, max(a, w * high if (u or after_unbounded) else 0)
    if op == sre_constants.SUBPATTERN:
        return _cost(arg[-1], after_unbounded)
    if op == getattr(sre_constants, "ATOMIC_GROUP", None):
        return _cost(arg, after_unbounded)
    if op == sre_constants.BRANCH:
        costs = [_cost(branch, after_unbounded) for branch in arg[1]]
        return max(c[0] for c in costs), any(c[1] for c in costs), max(c[2] for c in costs)
    if op in (sre_constants.AT, sre_constants.ASSERT, sre_constants.ASSERT_NOT):
        return 0, False, 0
    return 1, False, 0  # one character: a literal, a class, `.`


def _subschemas(schema: dict):
    """(JSON pointer, schema object) for the schema and every subschema in it."""
    stack = [("#", schema)]
    while stack:
        where, node = stack.pop()
        if not isinstance(node, dict):
            continue
        yield where, node
        for key, value in node.items():
            if key in _NAMED and isinstance(value, dict):
                stack.extend((f"{where}/{key}/{name}", child) for name, child in value.items())
            elif key in ("enum", "const", "default", "examples"):
                continue  # values, not schemas
            elif isinstance(value, dict):
                stack.append((f"{where}/{key}", value))
            elif isinstance(value, list):
                stack.extend((f"{where}/{key}/{i}", child) for i, child in enumerate(value))
