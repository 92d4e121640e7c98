"""The OpenAI face: POST /v1/chat/completions, GET /v1/models and
GET /v1/models/{model}, so that Spring AI, LangChain4j and the OpenAI SDKs work by
changing a base URL. The same routes are served without /v1 as well: Spring AI 1.x
appends /v1/chat/completions to its base URL, Spring AI 2.x and the OpenAI SDKs
append /chat/completions, so either base-URL convention works.

A request is validated by openai_schema.ChatCompletionRequest, planned into a
model call by chat.py and answered by the shared core (answering.py) with no
fallback text: OpenAI clients expect an outage as a 503 error. Streams are
relayed by sse.py. Every error leaves in OpenAI's shape,
`{"error": {"message", "type", "param", "code"}}`, through the boundary.
"""
from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, g, jsonify, request

from . import parts
from .answering import Answer
from .bodies import read_json
from .boundary import Face
from .chat import QUOTED_MODEL_CHARS, plan
from .intake import LARGE_BODY_BYTES
from .logs import printable
from .openai_schema import TAGS, ChatCompletion, ChatCompletionRequest, ErrorResponse, Model, ModelList
from .sse import Relay, finish_reason, replay, usage
from .statuses import SUCCESS, VALIDATION_ERROR, Refusal
from .validation import validated

bp = Blueprint("openai", __name__)
PREFIX = "/v1"
ROOT_PATHS = ("/chat/completions", "/models")   # served at the root too
OWNER = "llava-service"
# Room for the JSON around the base64 images.
BODY_OVERHEAD_BYTES = 1024 * 1024

# HTTP status -> (OpenAI error type, default code). One place for the error shape.
ERRORS = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", "internal_error"),
    503: ("service_unavailable", "model_unavailable"),
}
# Image refusals are 400 here whatever the native API answers (413/415): OpenAI answers bad image content so.
IMAGE_CODES = ("invalid_image", "unsupported_image_format", "image_too_large")


def register(app: Flask) -> None:
    app.register_blueprint(bp, url_prefix=PREFIX)
    app.register_blueprint(bp, url_prefix="", name="openai_root")


def owns(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/") or path.startswith(ROOT_PATHS)


def body_limit(settings) -> int:
    """Largest chat request body: every image at the upload limit, base64-encoded."""
    return settings.max_images * (settings.max_upload_bytes * 4 // 3 + 4) + BODY_OVERHEAD_BYTES


# --------------------------------------------------------------------- routes

def served_models() -> tuple[str, ...]:
    settings = parts().settings
    return (settings.upstream_model,) if settings.upstream_model else parts().upstream.model_ids()


def _names() -> list[str]:
    return list(dict.fromkeys(served_models() + tuple(a for a in parts().settings.model_aliases if a != "*")))


def _model(name: str) -> dict:
    return Model(id=name, object="model", created=0, owned_by=OWNER).model_dump()


@bp.get("/models")
def models():
    return ModelList(object="list", data=[_model(name) for name in _names()]).model_dump()


@bp.get("/models/<path:model>")
def model(model: str):
    if model in _names() or "*" in parts().settings.model_aliases:
        return _model(model)
    raise Refusal(VALIDATION_ERROR, 404, f"the model `{printable(model, QUOTED_MODEL_CHARS)}` does not exist here; "
                  "this service serves "
                  f"{', '.join(f'`{m}`' for m in _names()) or 'no model right now'}", code="model_not_found",
                  param="model")


@bp.post("/chat/completions")
def chat_completions():
    settings = parts().settings
    request.max_content_length = body_limit(settings)
    large = request.content_length is None or request.content_length > LARGE_BODY_BYTES
    # A large body is read in an intake slot; a small one takes a slot before its first image.
    with parts().intake.slot(now=large) as held:
        call = plan(validated(ChatCompletionRequest, read_json(request, settings), TAGS), settings, served_models(),
                    g.tenant, held)
        return _answer(call, held.releasing(call.payload))


def _answer(call, payload) -> Response:
    completion_id, created = "chatcmpl-" + g.request_id, int(time.time())
    core = parts().core
    if not call.stream:
        answer = core.answer(call.key, payload, g.trace, fallback=False, reuse=call.reuse)
        g.answer_status = answer.status
        return _with_status(jsonify(_completion(answer, completion_id, created)), answer.status)
    opened = core.open_stream(call.key, payload, g.trace, reuse=call.reuse)
    g.answer_status = opened.status if isinstance(opened, Answer) else SUCCESS
    if isinstance(opened, Answer):
        events = replay(opened, completion_id, created, call.include_usage)
    else:
        events = Relay(opened, completion_id, call.include_usage)
    response = Response(events, mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return _with_status(response, g.answer_status)


def _with_status(response: Response, status: str) -> Response:
    response.headers["X-Gateway-Status"] = status  # SUCCESS or CACHED, as the native API's `status`
    return response


def _completion(answer: Answer, completion_id: str, created: int) -> dict:
    return ChatCompletion(
        id=completion_id, object="chat.completion", created=created, model=answer.model or "",
        choices=[{"index": 0, "message": {"role": "assistant", "content": answer.result}, "logprobs": None,
                  "finish_reason": finish_reason(answer.finish_reason)}],
        usage=usage(answer.prompt_tokens, answer.completion_tokens)).model_dump()


# --------------------------------------------------------------------- errors

def render(refusal: Refusal) -> Response:
    http = 400 if refusal.code in IMAGE_CODES else refusal.http
    kind, default_code = ERRORS.get(http, ERRORS[400 if http < 500 else 500])
    body = ErrorResponse(error={"message": refusal.message, "type": kind, "param": refusal.param,
                                "code": refusal.code or default_code})
    response = jsonify(body.model_dump())
    response.status_code = http
    return response


def _too_large(settings) -> str:
    return (f"the request body is over {body_limit(settings)} bytes (at most {settings.max_images} images of "
            f"{settings.max_upload_bytes} bytes each)")


def _label(rule: str) -> str:
    """Metrics count both prefixes under the /v1 path."""
    return rule if rule.startswith(PREFIX + "/") else PREFIX + rule


FACE = Face("openai", owns=owns, render=render, too_large=_too_large, label=_label)
