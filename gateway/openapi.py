"""`GET /openapi.json`: both public APIs (the native analyze API and the OpenAI
face) and the operations endpoints as one OpenAPI 3 document. Hand-written next to
the code it describes; tests run schemathesis against it (every response the
gateway gives must match it) and the OpenAI SDK against the gateway."""
from __future__ import annotations

from flask import Blueprint

from .validation import MAX_TOKENS_DEFAULT, MAX_TOKENS_RANGE, PROMPT_MAX_CHARS, TEMPERATURE_DEFAULT, TEMPERATURE_RANGE

bp = Blueprint("openapi", __name__)
VERSION = "1.0.0"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str, retry_after: bool = False) -> dict:
    answer = {"description": description, "content": {"application/json": {"schema": _ref(name)}}}
    if retry_after:
        answer["headers"] = {"Retry-After": {"description": "Seconds to wait before retrying",
                                             "schema": {"type": "integer", "minimum": 1}}}
    return answer


def _errors(name: str, codes: dict[int, str]) -> dict:
    return {str(code): _json(name, text, retry_after=code in (429, 503)) for code, text in codes.items()}


NATIVE_ERRORS = {400: "VALIDATION_ERROR: a part missing or out of range, a corrupt image, or over the model's context",
                 401: "UNAUTHORIZED: API_KEYS set and no key or a wrong one given",
                 413: "VALIDATION_ERROR: image over MAX_UPLOAD_BYTES or MAX_IMAGE_PIXELS",
                 415: "VALIDATION_ERROR: not a JPEG, PNG, WebP or GIF image",
                 429: "OVERLOADED: admission limit reached or the model's queue is full",
                 503: "SERVICE_UNAVAILABLE: model unavailable and FALLBACK_ENABLED=false",
                 500: "INTERNAL_ERROR: a bug in the gateway (never expected)"}
OPENAI_ERRORS = {400: "invalid request (code says what: invalid_request, invalid_image, context_length_exceeded, "
                      "remote_image_refused, ...)",
                 401: "no API key or a wrong one",
                 404: "model_not_found: a `model` this service does not serve",
                 413: "request or image too large",
                 415: "unsupported_image_format",
                 429: "the service is at its limit; see Retry-After",
                 503: "the model is unavailable (down, starting, timed out, breaker open); see Retry-After",
                 500: "a bug in the gateway (never expected)"}

SCHEMAS = {
    "AnalyzeResponse": {
        "type": "object", "required": ["status", "result", "requestId", "model", "usage", "latencyMs"],
        "properties": {
            "status": {"type": "string", "enum": ["SUCCESS", "CACHED", "FALLBACK", "VALIDATION_ERROR", "OVERLOADED",
                                                  "SERVICE_UNAVAILABLE", "UNAUTHORIZED", "INTERNAL_ERROR"]},
            "result": {"type": "string", "description": "The answer, the fallback message, or what is wrong"},
            "requestId": {"type": "string"},
            "model": {"type": "string", "nullable": True},
            "usage": {"type": "object", "nullable": True, "required": ["promptTokens", "completionTokens"],
                      "properties": {"promptTokens": {"type": "integer"},
                                     "completionTokens": {"type": "integer"}}},
            "latencyMs": {"type": "integer", "minimum": 0},
        },
    },
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["message", "type", "param", "code"], "properties": {
            "message": {"type": "string"}, "type": {"type": "string"},
            "param": {"type": "string", "nullable": True}, "code": {"type": "string"}}}},
    },
    "TextPart": {"type": "object", "required": ["type", "text"],
                 "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}}},
    "ImageUrlPart": {
        "type": "object", "required": ["type", "image_url"],
        "properties": {"type": {"type": "string", "enum": ["image_url"]},
                       "image_url": {"type": "object", "required": ["url"], "properties": {
                           "url": {"type": "string", "description": "data:image/...;base64,<data> or raw base64; "
                                   "http(s) URLs only for hosts on REMOTE_IMAGE_HOSTS"},
                           "detail": {"type": "string"}}}},
    },
    "Message": {
        "type": "object", "required": ["role", "content"],
        "properties": {"role": {"type": "string", "enum": ["system", "developer", "user", "assistant"]},
                       "content": {"oneOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {
                           "oneOf": [_ref("TextPart"), _ref("ImageUrlPart")]}}]}},
    },
    "ChatCompletionRequest": {
        "type": "object", "required": ["messages"],
        "properties": {
            "model": {"type": "string", "description": "A name from GET /v1/models or OPENAI_MODEL_ALIASES"},
            "messages": {"type": "array", "minItems": 1, "items": _ref("Message"),
                         "description": "The last one from the user; images only in user messages"},
            "max_tokens": {"type": "integer", "minimum": MAX_TOKENS_RANGE[0], "maximum": MAX_TOKENS_RANGE[1],
                           "default": MAX_TOKENS_DEFAULT},
            "max_completion_tokens": {"type": "integer", "minimum": MAX_TOKENS_RANGE[0],
                                      "maximum": MAX_TOKENS_RANGE[1]},
            "temperature": {"type": "number", "minimum": TEMPERATURE_RANGE[0], "maximum": TEMPERATURE_RANGE[1],
                            "default": 1.0},
            "top_p": {"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": 1, "default": 1.0},
            "n": {"type": "integer", "enum": [1]},
            "stream": {"type": "boolean", "default": False},
            "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        },
    },
    "Usage": {"type": "object", "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
              "properties": {"prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"},
                             "total_tokens": {"type": "integer"}}},
    "ChatCompletion": {
        "type": "object", "required": ["id", "object", "created", "model", "choices", "usage"],
        "properties": {
            "id": {"type": "string"}, "object": {"type": "string", "enum": ["chat.completion"]},
            "created": {"type": "integer"}, "model": {"type": "string"},
            "choices": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
                "type": "object", "required": ["index", "message", "finish_reason"],
                "properties": {"index": {"type": "integer"},
                               "message": {"type": "object", "required": ["role", "content"], "properties": {
                                   "role": {"type": "string", "enum": ["assistant"]},
                                   "content": {"type": "string"}}},
                               "finish_reason": {"type": "string", "enum": ["stop", "length"]}}}},
            "usage": _ref("Usage"),
        },
    },
    "ModelList": {
        "type": "object", "required": ["object", "data"],
        "properties": {"object": {"type": "string", "enum": ["list"]}, "data": {"type": "array", "items": {
            "type": "object", "required": ["id", "object", "created", "owned_by"],
            "properties": {"id": {"type": "string"}, "object": {"type": "string", "enum": ["model"]},
                           "created": {"type": "integer"}, "owned_by": {"type": "string"}}}}},
    },
    "Status": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
}

# Before OpenAPI 3.2 (`itemSchema`), a text/event-stream schema describes one event.
STREAM = {"schema": {
    "type": "object", "required": ["data"],
    "description": "One Server-Sent Event: `data: <chat.completion.chunk JSON>` per token, "
                   "`data: {\"error\": ...}` if the model fails mid-stream, then `data: [DONE]`",
    "properties": {"data": {"type": "string"}, "event": {"type": "string"}, "id": {"type": "string"},
                   "retry": {"type": "integer"}}}}


def document() -> dict:
    analyze = {
        "summary": "Ask about one image (the seed's contract)", "operationId": "analyze",
        "parameters": [
            {"name": "max-tokens", "in": "query", "schema": {"type": "integer", "minimum": MAX_TOKENS_RANGE[0],
                                                             "maximum": MAX_TOKENS_RANGE[1],
                                                             "default": MAX_TOKENS_DEFAULT}},
            {"name": "temperature", "in": "query", "schema": {"type": "number", "minimum": TEMPERATURE_RANGE[0],
                                                              "maximum": TEMPERATURE_RANGE[1],
                                                              "default": TEMPERATURE_DEFAULT}}],
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["image", "prompt"],
            "properties": {"image": {"type": "string", "format": "binary",
                                     "description": "JPEG, PNG, WebP or GIF, judged by its bytes"},
                           "prompt": {"type": "string", "minLength": 1, "maxLength": PROMPT_MAX_CHARS}}}}}},
        "responses": {"200": _json("AnalyzeResponse", "SUCCESS, CACHED or FALLBACK"),
                      **_errors("AnalyzeResponse", NATIVE_ERRORS)},
    }
    chat = {
        "summary": "OpenAI chat completions: text and image_url parts, several turns, streaming",
        "operationId": "createChatCompletion",
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("ChatCompletionRequest")}}},
        "responses": {"200": {"description": "The completion; with `stream: true` Server-Sent Events",
                              "headers": {"X-Gateway-Status": {"description": "SUCCESS or CACHED",
                                                               "schema": {"type": "string"}}},
                              "content": {"application/json": {"schema": _ref("ChatCompletion")},
                                          "text/event-stream": STREAM}},
                      **_errors("Error", OPENAI_ERRORS)},
    }
    plain = {"200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "LLaVA-1.6 multimodal inference service", "version": VERSION,
                 "description": "The gateway's public API: the native analyze API and an OpenAI-compatible face."},
        "paths": {
            "/api/v1/multimodal/analyze": {"post": analyze},
            "/v1/chat/completions": {"post": chat},
            "/v1/models": {"get": {"summary": "The served model (and accepted aliases)", "operationId": "listModels",
                                   "responses": {"200": _json("ModelList", "Model names `model` may take"),
                                                 **_errors("Error", {401: OPENAI_ERRORS[401]})}}},
            "/health": {"get": {"summary": "Seed-compatible health", "operationId": "health", "security": [],
                                "responses": {"200": _json("Status", "The gateway runs")}}},
            "/health/live": {"get": {"summary": "Liveness", "operationId": "live", "security": [],
                                     "responses": {"200": _json("Status", "The gateway answers")}}},
            "/health/ready": {"get": {"summary": "Readiness: a model replica is ready", "operationId": "ready",
                                      "security": [], "responses": {"200": _json("Status", "ready"),
                                                                    "503": _json("Status", "not ready")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics", "security": [],
                                 "responses": plain}},
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
        "security": [{}, {"bearer": []}, {"apiKey": []}],
    }


@bp.get("/openapi.json")
def openapi():
    return document()
