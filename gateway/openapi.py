"""`GET /openapi.json`: both faces and the operations endpoints as one OpenAPI 3.1
document. Its schemas are the JSON Schemas of the pydantic models that validate
the requests and shape the answers (native_schema.py, openai_schema.py,
operations.py), so the document cannot drift from the code: what it says is
refused is refused. Only the paths around them are written here.

(flask-openapi3 and spectree would also build the document from pydantic models,
but they take over request parsing and error answers, and both faces answer
errors in their own contract's shape; the hundred lines here keep those ours.)
Tests run schemathesis against the document: every answer must match it, and
every request it calls invalid must be refused.
"""
from __future__ import annotations

from functools import cache

from flask import Blueprint
from pydantic.json_schema import models_json_schema

from . import native_schema as native
from . import openai_schema as oai
from .model_state import ModelHealth
from .operations import Health

bp = Blueprint("openapi", __name__)
VERSION = "1.1.0"
REF = "#/components/schemas/{model}"
REQUESTS = (native.AnalyzeForm, native.AnalyzeParams, oai.ChatCompletionRequest)
ANSWERS = (native.AnalysisResult, native.Problem, native.PresetList, oai.ChatCompletion, oai.ChatCompletionChunk,
           oai.ModelList, oai.Model, oai.ErrorResponse, Health, ModelHealth)

NATIVE_ERRORS = {400: "VALIDATION_ERROR: a part missing or out of range, a corrupt image, over the model's context, "
                      "an unknown preset or a schema that cannot be enforced",
                 401: "UNAUTHORIZED: API_KEYS set and no key or a wrong one given",
                 413: "VALIDATION_ERROR: image over MAX_UPLOAD_BYTES or MAX_IMAGE_PIXELS",
                 415: "VALIDATION_ERROR: not a JPEG, PNG, WebP or GIF image",
                 429: "OVERLOADED: the admission line is full or waited too long, or the model's queue is full",
                 503: "SERVICE_UNAVAILABLE: model unavailable and FALLBACK_ENABLED=false",
                 500: "INTERNAL_ERROR: a bug in the gateway (never expected)"}
OPENAI_ERRORS = {400: "invalid request; `code` says what (invalid_request, invalid_image, unsupported_image_format, "
                      "image_too_large, context_length_exceeded, remote_image_refused, unsupported_parameter, "
                      "unsupported_value)",
                 401: "no API key or a wrong one",
                 404: "model_not_found: a `model` this service does not serve",
                 413: "request_too_large: the body is over the limit",
                 429: "the service is at its limit; see Retry-After",
                 503: "the model is unavailable (down, starting, timed out, breaker open); see Retry-After",
                 500: "a bug in the gateway (never expected)"}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying",
                               "schema": {"type": "integer", "minimum": 1}}}
# Before OpenAPI 3.2 (`itemSchema`), a text/event-stream schema describes one event.
STREAM = {"schema": {
    "type": "object", "required": ["data"],
    "description": "One Server-Sent Event: `data: <ChatCompletionChunk JSON>` per token, `data: {\"error\": "
                   "...}` if the model fails mid-stream, then `data: [DONE]`",
    "properties": {"data": {"type": "string"}, "event": {"type": "string"}, "id": {"type": "string"},
                   "retry": {"type": "integer"}}}}


# Groups for readers of the document (Swagger UI at /docs shows one section per tag), by path.
SECTIONS = (("native", "The native API (the seed's contract): multipart uploads, AnalysisResult answers",
         ("/api/",)),
        ("openai", "OpenAI-compatible chat completions, under /v1 and at the root", ("/v1/", "/chat/", "/models")),
        ("operations", "Health (Spring Boot Actuator's shape) and Prometheus metrics", ("/health", "/metrics")))


def _tagged(paths: dict) -> dict:
    for path, operations in paths.items():
        tag = next(name for name, _, prefixes in SECTIONS if path.startswith(prefixes))
        for operation in operations.values():
            operation["tags"] = [tag]
    return paths


def _ref(model) -> dict:
    return {"$ref": REF.format(model=model.__name__)}


def _answer(description: str, content: dict, headers: dict | None = None) -> dict:
    answer = {"description": description, "content": content}
    if headers:
        answer["headers"] = headers
    return answer


def _errors(codes: dict[int, str], content) -> dict:
    return {str(code): _answer(text, content(), RETRY_AFTER if code in (429, 503) else None)
            for code, text in codes.items()}


def _native_error():
    return {"application/json": {"schema": _ref(native.AnalysisResult)},
            "application/problem+json": {"schema": _ref(native.Problem)}}


def _openai_error():
    return {"application/json": {"schema": _ref(oai.ErrorResponse)}}


def _query_parameters() -> list[dict]:
    properties = native.AnalyzeParams.model_json_schema()["properties"]
    return [{"name": name, "in": "query", "required": False, "schema": schema,
             "description": schema.get("description", "") + " (or the same form field; not both with "
                                                             "different values)"}
            for name, schema in properties.items()]


def _openai_paths(prefix: str, suffix: str) -> dict:
    chat = {
        "summary": "OpenAI chat completions: text and image_url parts, several turns, streaming",
        "operationId": "createChatCompletion" + suffix,
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(oai.ChatCompletionRequest)}}},
        "responses": {"200": _answer("The completion; with `stream: true` Server-Sent Events",
                                     {"application/json": {"schema": _ref(oai.ChatCompletion)},
                                      "text/event-stream": STREAM},
                                     {"X-Gateway-Status": {"description": "SUCCESS or CACHED",
                                                           "schema": {"type": "string"}}}),
                      **_errors(OPENAI_ERRORS, _openai_error)},
    }
    models = {"summary": "The served model (and accepted aliases)", "operationId": "listModels" + suffix,
              "responses": {"200": _answer("Model names `model` may take",
                                           {"application/json": {"schema": _ref(oai.ModelList)}}),
                            **_errors({401: OPENAI_ERRORS[401]}, _openai_error)}}
    one = {"summary": "One model by name", "operationId": "retrieveModel" + suffix,
           "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
           "responses": {"200": _answer("The model", {"application/json": {"schema": _ref(oai.Model)}}),
                         **_errors({401: OPENAI_ERRORS[401], 404: OPENAI_ERRORS[404]}, _openai_error)}}
    return {f"{prefix}/chat/completions": {"post": chat}, f"{prefix}/models": {"get": models},
            f"{prefix}/models/{{model}}": {"get": one}}


def _health(summary: str, operation: str, ready_only: bool = False) -> dict:
    health = {"application/json": {"schema": _ref(Health)}}
    responses = {"200": _answer("UP", health)}
    if ready_only:
        responses["503"] = _answer("DOWN: no model replica is ready", health)
    return {"get": {"summary": summary, "operationId": operation, "security": [], "responses": responses}}


@cache
def document() -> dict:
    _, schemas = models_json_schema([(m, "validation") for m in REQUESTS] + [(m, "serialization") for m in ANSWERS],
                                    ref_template=REF)
    analyze = {
        "summary": "Ask about one image (the seed's contract)", "operationId": "analyze",
        "parameters": _query_parameters(),
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": _ref(native.AnalyzeForm)}}},
        "responses": {"200": _answer("SUCCESS, CACHED or FALLBACK",
                                     {"application/json": {"schema": _ref(native.AnalysisResult)}}),
                      **_errors(NATIVE_ERRORS, _native_error)},
    }
    plain = {"200": {"description": "Prometheus text format",
                     "content": {"text/plain": {"schema": {"type": "string"}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "LLaVA-1.6 multimodal inference service", "version": VERSION,
                 "description": "The gateway's public API: the native analyze API and an OpenAI-compatible face "
                                "(served under /v1 and at the root, for either base-URL convention)."},
        "tags": [{"name": name, "description": text} for name, text, _ in SECTIONS],
        "paths": _tagged({
            "/api/v1/multimodal/analyze": {"post": analyze},
            "/api/v1/multimodal/presets": {"get": {
                "summary": "Ready-made tasks for `preset`: each a question and the JSON Schema of `data`",
                "operationId": "listPresets",
                "responses": {"200": _answer("The presets", {"application/json": {"schema": _ref(native.PresetList)}}),
                              **_errors({401: NATIVE_ERRORS[401]}, _native_error)}}},
            **_openai_paths("/v1", ""),
            **_openai_paths("", "WithoutV1"),
            "/health": _health("Health: UP while the gateway runs; the model replicas as a component", "health"),
            "/health/live": _health("Liveness", "live"),
            "/health/ready": _health("Readiness: a model replica is ready", "ready", ready_only=True),
            "/health/model": {"get": {
                "summary": "The model's state (ready, loading, starting, restarting) and load progress",
                "operationId": "modelHealth", "security": [],
                "responses": {"200": _answer("The model component, always 200 while the gateway runs",
                                             {"application/json": {"schema": _ref(ModelHealth)}})}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics", "security": [],
                                 "responses": plain}},
        }),
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
        "security": [{}, {"bearer": []}, {"apiKey": []}],
    }


@bp.get("/openapi.json")
def openapi():
    return document()
