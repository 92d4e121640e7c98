"""The OpenAI-compatible face: `POST /v1/chat/completions` and `GET /v1/models`,
so that Spring AI, LangChain4j and the OpenAI SDKs work by changing a base URL.

Read top-down: parse and validate the chat request (images judged and normalised
by images.py, exactly as uploads are; remote URLs by remote_images.py; the image
token budget by budget.py), the routes, which go through the same path as the
native API (analyze.Analyzer: cache, single-flight, admission, breaker) with no
fallback text, then the Server-Sent Events relay and the error shape.

Auth, request ids and metrics come from api.py's hooks; every refusal reaches
the client as OpenAI's `{"error": {"message", "type", "param", "code"}}` through
api.py's error boundary, which hands /v1 errors to `error_response`.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable

from flask import Blueprint, Response, current_app, g, jsonify, request

from . import budget
from .analyze import Answer
from .cache import chat_cache_key
from .images import normalise
from .remote_images import image_bytes
from .statuses import SUCCESS, VALIDATION_ERROR, Refusal, invalid
from .upstream import UpstreamDown
from .validation import MAX_TOKENS_RANGE, TEMPERATURE_RANGE

log = logging.getLogger(__name__)
bp = Blueprint("openai", __name__)
PREFIX = "/v1/"
MAX_TOKENS_DEFAULT = 512                     # as the native API and the model process
TEMPERATURE_DEFAULT = TOP_P_DEFAULT = 1.0    # OpenAI's defaults
UNSUPPORTED = ("stop", "tools", "functions", "tool_choice", "logprobs", "top_logprobs")
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
# Room for the JSON around the base64 images.
BODY_OVERHEAD_BYTES = 1024 * 1024

# HTTP status -> (OpenAI error type, default code). One place for the error shape.
ERRORS = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_image_format"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", "internal_error"),
    503: ("service_unavailable", "model_unavailable"),
}
# What images.normalise's refusals are called here, by HTTP status.
IMAGE_CODES = {400: "invalid_image", 413: "image_too_large", 415: "unsupported_image_format"}


def parts():
    return current_app.extensions["gateway"]


def body_limit(settings) -> int:
    """Largest chat request body: every image at the upload limit, base64-encoded."""
    return settings.max_images * (settings.max_upload_bytes * 4 // 3 + 4) + BODY_OVERHEAD_BYTES


# --------------------------------------------------------------------- the request

@dataclass(frozen=True)
class ChatRequest:
    key: str             # the cache key (images as hashes of their original bytes)
    stream: bool
    include_usage: bool
    # What goes upstream, built on a cache miss only: it judges and normalises the
    # images (as data: URLs) and checks the image token budget. A hit needs none of
    # it: only answers to requests that passed it are cached, keyed by the originals.
    payload: Callable[[], dict]


def parse_chat(body: object, settings, served: tuple[str, ...]) -> ChatRequest:
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object (Content-Type: application/json)")
    _check_model(body.get("model"), settings, served)
    if body.get("n") not in (None, 1):
        raise invalid("only n=1 is supported", param="n")
    for name in UNSUPPORTED:
        if body.get(name) not in (None, False, [], ""):
            raise invalid(f"`{name}` is not supported by this service", param=name)
    stream = _flag(body, "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise invalid("`stream_options` must be an object", param="stream_options")
    include_usage = _flag(options or {}, "include_usage", "stream_options.include_usage")
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _integer(body.get(name), name, MAX_TOKENS_DEFAULT, *MAX_TOKENS_RANGE)
    temperature = _number(body.get("temperature"), "temperature", TEMPERATURE_DEFAULT, *TEMPERATURE_RANGE)
    top_p = _number(body.get("top_p"), "top_p", TOP_P_DEFAULT, 0.0, 1.0)
    if top_p == 0:
        raise invalid("`top_p` must be greater than 0 and at most 1", param="top_p")

    messages, keyed, images = _messages(body.get("messages"), settings)

    def payload() -> dict:
        sizes = []
        for original, param, part in images:
            image = _normalised(original, settings, param)
            sizes.append((image.width, image.height))
            part["image_url"] = {"url": f"data:{image.mime};base64," + base64.b64encode(image.data).decode("ascii")}
        budget.check(sizes, max_tokens, settings.context_tokens)
        built = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature, "top_p": top_p,
                 "stream": stream}
        if stream:
            built["stream_options"] = {"include_usage": True}  # the gateway needs usage to cache the answer
        if settings.upstream_model:
            built["model"] = settings.upstream_model
        return built

    key = chat_cache_key(keyed, max_tokens, temperature, top_p, settings.upstream_model)
    return ChatRequest(key, stream, include_usage, payload)


def _check_model(model: object, settings, served: tuple[str, ...]) -> None:
    if model is None:
        return
    if not isinstance(model, str):
        raise invalid("`model` must be a string", param="model")
    accepted = served + settings.model_aliases
    if not served or "*" in settings.model_aliases or model in accepted:
        return  # with no served name known (upstream down) the call itself will say so
    raise Refusal(VALIDATION_ERROR, 404, f"the model `{model}` does not exist here; this service serves "
                  f"{', '.join(f'`{m}`' for m in accepted)} (GET /v1/models). Set your client's model to it, "
                  "or add the name to OPENAI_MODEL_ALIASES", code="model_not_found", param="model")


def _messages(raw: object, settings) -> tuple[list, list, list]:
    """(upstream messages, the same with images as hashes for the cache key, and
    (original bytes, param, upstream part) per image: the parts are filled on a miss)."""
    if not isinstance(raw, list) or not raw:
        raise invalid("`messages` must be a non-empty array", param="messages")
    messages, keyed, images = [], [], []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise invalid(f"`{where}` must be an object whose role is system, developer, user or assistant",
                          param=where)
        role = ROLES[message["role"]]
        content, key_content = [], []
        for j, part in enumerate(_content_parts(message.get("content"), where)):
            at = f"{where}.content[{j}]"
            kind = part.get("type")
            if kind == "text":
                if not isinstance(part.get("text"), str):
                    raise invalid(f"`{at}.text` must be a string", param=at)
                content.append({"type": "text", "text": part["text"]})
                key_content.append(content[-1])
            elif kind == "image_url" and role == "user":
                if len(images) >= settings.max_images:
                    raise invalid(f"at most {settings.max_images} images per request", param=at)
                ref = part.get("image_url")
                original = image_bytes(ref.get("url") if isinstance(ref, dict) else ref, settings, f"{at}.image_url")
                content.append({"type": "image_url"})
                images.append((original, f"{at}.image_url", content[-1]))
                key_content.append({"image": hashlib.sha256(original).hexdigest()})
            else:
                raise invalid(f"`{at}.type` must be text or image_url (images only in user messages)", param=at)
        messages.append({"role": role, "content": content})
        keyed.append({"role": role, "content": key_content})
    if messages[-1]["role"] != "user":
        raise invalid("the last message must come from the user", param="messages")
    return messages, keyed, images


def _content_parts(content: object, where: str) -> list:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and content and all(isinstance(p, dict) for p in content):
        return content
    raise invalid(f"`{where}.content` must be a string or a non-empty array of parts", param=f"{where}.content")


def _normalised(data: bytes, settings, param: str):
    try:
        return normalise(data, settings.max_upload_bytes, settings.max_image_pixels, settings.max_image_side)
    except Refusal as refusal:
        refusal.code, refusal.param = refusal.code or IMAGE_CODES.get(refusal.http), param
        refusal.message = f"`{param}`: {refusal.message}"
        raise


def _flag(body: dict, name: str, param: str | None = None) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(f"`{param or name}` must be true or false", param=param or name)
    return value


def _integer(value: object, name: str, default: int, lo: int, hi: int) -> int:
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"`{name}` must be a whole number from {lo} to {hi}", param=name)
    if not lo <= value <= hi:
        raise invalid(f"`{name}` must be from {lo} to {hi}; got {value}", param=name)
    return value


def _number(value: object, name: str, default: float, lo: float, hi: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise invalid(f"`{name}` must be a number from {lo:g} to {hi:g}", param=name)
    if not lo <= value <= hi:
        raise invalid(f"`{name}` must be from {lo:g} to {hi:g}; got {value:g}", param=name)
    return float(value)


# --------------------------------------------------------------------- routes

def served_models() -> tuple[str, ...]:
    settings = parts().settings
    return (settings.upstream_model,) if settings.upstream_model else parts().upstream.model_ids()


@bp.get("/v1/models")
def models():
    names = list(dict.fromkeys(served_models() + tuple(a for a in parts().settings.model_aliases if a != "*")))
    return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "llava-service"}
                                       for name in names]}


@bp.post("/v1/chat/completions")
def chat_completions():
    settings = parts().settings
    request.max_content_length = body_limit(settings)
    body = request.get_json(force=True, silent=True)
    if body is None:
        raise invalid("the body must be JSON (Content-Type: application/json)")
    chat = parse_chat(body, settings, served_models())
    completion_id, created = "chatcmpl-" + g.request_id, int(time.time())
    analyzer = parts().analyzer
    if not chat.stream:
        answer = analyzer.answer(chat.key, chat.payload, g.request_id, fallback=False)
        g.answer_status = answer.status
        return _with_status(jsonify(_completion(answer, completion_id, created)), answer.status)
    opened = analyzer.open_stream(chat.key, chat.payload, g.request_id)
    g.answer_status = opened.status if isinstance(opened, Answer) else SUCCESS
    if isinstance(opened, Answer):
        events = _replay(opened, completion_id, created, chat.include_usage)
    else:
        events = Relay(opened, completion_id, chat.include_usage)
    response = Response(events, mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return _with_status(response, g.answer_status)


def _with_status(response: Response, status: str) -> Response:
    response.headers["X-Gateway-Status"] = status  # SUCCESS or CACHED, as the native API's `status`
    return response


def _completion(answer: Answer, completion_id: str, created: int) -> dict:
    return {"id": completion_id, "object": "chat.completion", "created": created, "model": answer.model or "",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.result},
                         "logprobs": None, "finish_reason": _finish(answer.finish_reason)}],
            "usage": _usage(answer.prompt_tokens, answer.completion_tokens)}


def _finish(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


def _usage(prompt: int | None, completion: int | None) -> dict:
    prompt, completion = prompt or 0, completion or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


# --------------------------------------------------------------------- streaming

def sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


DONE = sse("[DONE]")


def _chunk(completion_id: str, created: int, model: str, delta: dict | None, finish: str | None = None,
           usage: dict | None = None) -> dict:
    body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None,
                                                  "finish_reason": finish}]}
    if usage is not None:
        body["usage"] = usage
    return body


def _replay(answer: Answer, completion_id: str, created: int, include_usage: bool) -> list[str]:
    """A cached answer as a stream: role, the whole text in one chunk, finish, usage."""
    model = answer.model or ""
    events = [_chunk(completion_id, created, model, {"role": "assistant", "content": ""}),
              _chunk(completion_id, created, model, {"content": answer.result}),
              _chunk(completion_id, created, model, {}, _finish(answer.finish_reason))]
    if include_usage:
        events.append(_chunk(completion_id, created, model, None,
                             usage=_usage(answer.prompt_tokens, answer.completion_tokens)))
    return [sse(e) for e in events] + [DONE]


class Relay:
    """The model's chunks passed on one by one as they arrive, under this request's
    id; the usage chunk only when the client asked for it. The WSGI server calls
    `close()` when the response ends or the client goes away: that drops the
    upstream connection (the model cancels the generation) and frees the slot."""

    def __init__(self, streaming, completion_id: str, include_usage: bool):
        self.streaming, self.completion_id, self.include_usage = streaming, completion_id, include_usage

    def __iter__(self):
        try:
            for event in self.streaming.events():
                if "error" in event:
                    yield sse({"error": _stream_error(event["error"])})
                    break
                if not event.get("choices") and "usage" in event and not self.include_usage:
                    continue
                if not self.include_usage:
                    event.pop("usage", None)
                yield sse({**event, "id": self.completion_id})
        except UpstreamDown:
            yield sse({"error": {"message": "the model stopped answering in the middle of the stream; retry",
                                 "type": "service_unavailable", "param": None, "code": "model_unavailable"}})
        except Exception:  # the status line is sent: report in-band, never the exception text
            log.exception("stream relay failed")
            yield sse({"error": {"message": f"an internal error occurred; quote request id {self.completion_id}",
                                 "type": "server_error", "param": None, "code": "internal_error"}})
        yield DONE

    def close(self) -> None:
        self.streaming.close()


def _stream_error(error: object) -> dict:
    """The model's in-band error, kept to OpenAI's four fields (its messages are written for clients)."""
    error = error if isinstance(error, dict) else {}
    return {"message": str(error.get("message") or "the model failed while answering"),
            "type": str(error.get("type") or "server_error"), "param": error.get("param"),
            "code": str(error.get("code") or "internal_error")}


# --------------------------------------------------------------------- errors

def error_response(http: int, message: str, code: str | None = None, param: str | None = None) -> Response:
    kind, default_code = ERRORS.get(http, ERRORS[400 if http < 500 else 500])
    response = jsonify({"error": {"message": message, "type": kind, "param": param, "code": code or default_code}})
    response.status_code = http
    return response
