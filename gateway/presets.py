"""Ready-made tasks for the native API: a prompt plus the JSON Schema of its answer.

`POST /api/v1/multimodal/analyze` with `preset=<name>` asks the preset's question
(the client's `prompt`, if any, follows it as extra context) and gets `data`, the
answer as JSON that follows the preset's schema by construction (the model process
enforces it token by token). `GET /api/v1/multimodal/presets` lists them.

Every string, number and array is bounded (maxLength, multipleOf, maxItems) and each preset's
`max_tokens` (the default max-tokens when the client sends none) covers its longest
complete answer (a token is at least one character): an answer cut at max-tokens is
not JSON.
Deployments add their own (or replace these) with a JSON file named by PRESETS_FILE:
{"name": {"description": "...", "prompt": "...", "schema": {...}, "max_tokens": 512}, ...}.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from llava_common import params, schemas

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


# Cents at most: without multipleOf a number may go on with decimals for ever.
MONEY = {"type": "number", "minimum": 0, "maximum": 10_000_000, "multipleOf": 0.01}


def _text(limit: int, description: str) -> dict:
    return {"type": "string", "maxLength": limit, "description": description}


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    prompt: str
    schema: dict
    max_tokens: int = params.MAX_TOKENS_DEFAULT

    @property
    def output(self) -> schemas.StructuredOutput:
        return schemas.from_schema(self.schema)

    def document(self) -> dict:
        return {"name": self.name, "description": self.description, "prompt": self.prompt, "schema": self.schema,
                "maxTokens": self.max_tokens}


BUILT_IN = (
    Preset("product-defect", "Customer service: the product, the defect shown and a reply to the customer",
           "Look at the product in this photo a customer sent with a complaint. Name the product, the kind of "
           "defect you see and how severe it is, and write a short, polite reply to the customer.",
           {"type": "object", "additionalProperties": False,
            "required": ["product", "defect_type", "severity", "customer_reply"],
            "properties": {
                "product": _text(60, "What the product is"),
                "defect_type": {"enum": ["none", "scratch", "dent", "crack", "broken part", "stain", "missing part",
                                         "wrong item", "packaging damage", "other"]},
                "severity": {"enum": ["none", "minor", "moderate", "severe"]},
                "customer_reply": _text(240, "A short, polite reply to the customer")}}),
    Preset("invoice", "Finance: vendor, number, date, currency, line items and total of an invoice or receipt",
           "Read this invoice or receipt. Give the vendor, the invoice number, the date (YYYY-MM-DD), the "
           "currency (ISO 4217 code), each line item with its quantity and amount, and the total.",
           {"type": "object", "additionalProperties": False,
            "required": ["vendor", "invoice_number", "date", "currency", "line_items", "total"],
            "properties": {
                "vendor": _text(60, "Who issued it"),
                "invoice_number": _text(30, "As printed; empty when none is printed"),
                "date": {"type": "string", "format": "date"},
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "line_items": {"type": "array", "maxItems": 8, "items": {
                    "type": "object", "additionalProperties": False,
                    "required": ["description", "quantity", "amount"],
                    "properties": {"description": _text(40, "The item"),
                                   "quantity": {"type": "integer", "minimum": 0, "maximum": 9999},
                                   "amount": MONEY}}},
                "total": MONEY}}, max_tokens=1024),
    Preset("qc-inspection", "Factory quality control: pass or fail, and each defect with its kind and location",
           "Inspect the part in this photo for manufacturing defects. Say whether it passes, and list each "
           "defect with its kind and where it is.",
           {"type": "object", "additionalProperties": False, "required": ["verdict", "defects"],
            "properties": {
                "verdict": {"enum": ["pass", "fail"]},
                "defects": {"type": "array", "maxItems": 5, "items": {
                    "type": "object", "additionalProperties": False, "required": ["kind", "location"],
                    "properties": {"kind": {"enum": ["scratch", "dent", "crack", "stain", "burr", "porosity",
                                                     "misalignment", "missing part", "other"]},
                                   "location": _text(40, "Where on the part, e.g. top left edge")}}}}}),
    Preset("describe", "A caption, the objects seen and any text that can be read",
           "Describe this image: a one-sentence caption, the main objects, and any text you can read in it.",
           {"type": "object", "additionalProperties": False, "required": ["caption", "objects", "text_seen"],
            "properties": {
                "caption": _text(120, "One sentence"),
                "objects": {"type": "array", "maxItems": 6, "items": _text(30, "An object")},
                "text_seen": _text(160, "Text readable in the image; empty when none")}}, max_tokens=640),
)


class PresetError(ValueError):
    """PRESETS_FILE cannot be used; the message names the file and what is wrong."""


def load(path: str = "") -> dict[str, Preset]:
    """The built-in presets, then those of `path` (which may replace a built-in one)."""
    presets = {p.name: p for p in BUILT_IN}
    if not path:
        return presets
    try:
        entries = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise PresetError(f"PRESETS_FILE={path!r} cannot be read as JSON: {exc}") from None
    if not isinstance(entries, dict):
        raise PresetError(f"PRESETS_FILE={path!r} must hold a JSON object of name -> preset")
    for name, entry in entries.items():
        where = f"PRESETS_FILE={path!r}, preset {name!r}"
        if not NAME.match(name):
            raise PresetError(f"{where}: a name is 1 to 64 lowercase letters, digits and dashes")
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) and entry[k].strip()
                                                  for k in ("description", "prompt")):
            raise PresetError(f"{where}: needs a non-empty `description` and `prompt` and a `schema`")
        try:
            schemas.check_schema(entry.get("schema"))
        except schemas.SchemaError as exc:
            raise PresetError(f"{where}: {exc}") from None
        max_tokens = entry.get("max_tokens", params.MAX_TOKENS_DEFAULT)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or \
                not params.MAX_TOKENS_RANGE[0] <= max_tokens <= params.MAX_TOKENS_RANGE[1]:
            raise PresetError(f"{where}: max_tokens must be a whole number from {params.MAX_TOKENS_RANGE[0]} to "
                              f"{params.MAX_TOKENS_RANGE[1]}")
        presets[name] = Preset(name, entry["description"].strip(), entry["prompt"].strip(), entry["schema"],
                               max_tokens)
    return presets
