"""The native face: the seed's POST /api/v1/multimodal/analyze (one image, one
prompt, multipart/form-data) and its answer, the seed's AnalysisResult, for every
outcome. An error answers as RFC 9457 problem details instead when the client's
Accept header prefers application/problem+json.

The request becomes a chat completion for the model (one user turn: the image,
normalised by images.py, then the prompt) and goes through the shared core
(answering.py) with fallback on: an outage answers 200 FALLBACK with a friendly
message, as the seed did.

Structured answers: `preset=<name>` (presets.py; GET /api/v1/multimodal/presets)
or `schema=<JSON Schema>` asks the model for JSON that follows the schema (it is
enforced token by token in the model process); the answer carries it parsed in
`data` beside the text in `result`. The schema is part of the cache key.
"""
from __future__ import annotations

import base64
import functools
import json
import time
from http import HTTPStatus

from flask import Blueprint, Response, g, jsonify, request

from llava_common import schemas

from . import parts
from .boundary import Face
from .cache import cache_key
from .images import normalise
from .native_schema import AnalysisResult, AnalyzeForm, PresetList, Problem
from .statuses import Refusal, invalid
from .validation import validated

bp = Blueprint("native", __name__)
ANALYZE = "/api/v1/multimodal/analyze"
PRESETS = "/api/v1/multimodal/presets"
PARAMS = ("max-tokens", "temperature")
PROBLEM_JSON = "application/problem+json"


@bp.post(ANALYZE)
def analyze():
    settings = parts().settings
    # The upload is read, judged and decoded in an intake slot, given back once the model call is built.
    with parts().intake.slot(now=True) as held:
        image = _upload(settings.max_upload_bytes)
        fields = {name: request.form[name] for name in ("prompt", "preset", "schema") if name in request.form}
        if "schema" in request.files:
            fields["schema"] = request.files["schema"].stream.read(schemas.MAX_SCHEMA_BYTES + 1).decode(
                "utf-8", "replace")
        if "prompt" not in fields and "preset" not in fields:
            raise invalid("the `prompt` part is missing (multipart/form-data text field `prompt`)", param="prompt")
        params = _params(request.args, request.form)
        form = validated(AnalyzeForm, {**params, **fields, "image": image})
        del image  # the form holds it until it is normalised
        prompt, output, max_tokens = _task(form, "max-tokens" in params)
        key = cache_key(form.image, prompt, max_tokens, form.temperature, settings.upstream_model,
                        output.key if output else "", g.tenant)
        answer = parts().core.answer(
            key, held.releasing(functools.partial(_payload, form, prompt, max_tokens, output, settings)), g.trace)
    data = _parsed(answer.result) if output is not None and answer.usage is not None else None
    return result(answer.status, 200, answer.result, model=answer.model, usage=answer.usage, data=data)


@bp.get(PRESETS)
def presets():
    return PresetList(presets=[p.document() for p in parts().presets.values()]).model_dump(by_alias=True)


def _task(form: AnalyzeForm, max_tokens_sent: bool) -> tuple[str, schemas.StructuredOutput | None, int]:
    """The prompt, the schema (if any) and max-tokens the request asks for."""
    if form.preset is not None and form.json_schema is not None:
        raise invalid("send either `preset` or `schema`, not both", param="schema")
    if form.preset is not None:
        preset = parts().presets.get(form.preset)
        if preset is None:
            raise invalid(f"there is no preset `{form.preset[:64]}`; GET {PRESETS} lists them "
                          f"({', '.join(parts().presets)})", param="preset")
        prompt = preset.prompt + (f"\n\n{form.prompt}" if form.prompt else "")
        return prompt, preset.output, form.max_tokens if max_tokens_sent else preset.max_tokens
    output = None
    if form.json_schema is not None:
        try:
            output = schemas.from_schema(form.json_schema)
        except schemas.SchemaError as error:
            raise invalid(str(error), param="schema") from None
    return form.prompt, output, form.max_tokens


def _parsed(text: str):
    """The answer's JSON, or None when it is not complete JSON (cut at max-tokens)."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def _params(args, form) -> dict:
    """`max-tokens` and `temperature` from the query string or a form field; both
    may be sent, but not with different values."""
    values = {}
    for name in PARAMS:
        query, field = args.get(name), form.get(name)
        if query is not None and field is not None and query.strip() != field.strip():
            raise invalid(f"`{name}` was sent twice with different values (query {query[:40]!r}, form field "
                          f"{field[:40]!r}); send it once", param=name)
        if (query if query is not None else field) is not None:
            values[name] = query if query is not None else field
    return values


def _upload(max_bytes: int) -> bytes:
    upload = request.files.get("image")
    if upload is None:
        if "image" in request.form:
            raise invalid("the `image` part must be a file upload (curl -F image=@photo.jpg), not a text field",
                          param="image")
        raise invalid("the `image` part is missing (multipart/form-data file field `image`)", param="image")
    # One byte past the limit: enough to know it is too large without holding more.
    return upload.stream.read(max_bytes + 1)


def _payload(form: AnalyzeForm, prompt: str, max_tokens: int, output, settings) -> dict:
    """The upstream request, built on a cache miss only: the image is judged and
    normalised here (a hit needs none of it: only answers to images that passed
    are cached, keyed by the uploaded bytes). The upload is dropped once normalised:
    a request waiting for the model holds only the small JPEG."""
    upload, form.image = form.image, b""
    image = normalise(upload, settings.max_upload_bytes, settings.max_image_pixels, settings.max_image_side)
    del upload
    payload = {
        "messages": [{"role": "user", "content": [
            {"type": "image_url",
             "image_url": {"url": f"data:{image.mime};base64," + base64.b64encode(image.data).decode("ascii")}},
            {"type": "text", "text": prompt},
        ]}],
        "max_tokens": max_tokens,
        "temperature": form.temperature,
        "stream": False,
    }
    if output is not None:
        payload["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": output.schema}}
    if settings.upstream_model:
        payload["model"] = settings.upstream_model
    return payload


def result(status: str, http: int, text: str, model: str | None = None, usage: dict | None = None,
           data=None) -> Response:
    g.answer_status = status
    latency_ms = round((time.monotonic() - g.get("started", time.monotonic())) * 1000)
    body = AnalysisResult(status=status, result=text, requestId=g.get("request_id", ""), model=model, usage=usage,
                          latencyMs=latency_ms, data=data)
    response = jsonify(body.model_dump())
    response.status_code = http
    return response


# --------------------------------------------------------------------- errors

def render(refusal: Refusal) -> Response:
    if request.accept_mimetypes.best_match(["application/json", PROBLEM_JSON]) != PROBLEM_JSON:
        return result(refusal.status, refusal.http, refusal.message)
    problem = Problem(title=HTTPStatus(refusal.http).phrase, status=refusal.http, detail=refusal.message,
                      instance=request.path, code=refusal.status, requestId=g.get("request_id", ""),
                      param=refusal.param)
    response = jsonify(problem.model_dump())
    response.status_code = refusal.http
    response.mimetype = PROBLEM_JSON
    return response


def _too_large(settings) -> str:
    return f"the request is too large; the image limit is {settings.max_upload_bytes} bytes"


FACE = Face("native", owns=lambda path: True, render=render, too_large=_too_large)
