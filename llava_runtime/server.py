"""The model process's HTTP API (internal; docs/DESIGN.md "Model process API").

Routes read top-down: health, metrics, models, the two generation endpoints.
Every error, including Flask's own 404/405/413, leaves as OpenAI's error shape.
"""
from __future__ import annotations

import json
import logging
import time
import uuid

from flask import Flask, Response, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import HTTPException

from llava_common import request_ids

from .errors import ApiError
from .inputs import parse_analyze, parse_chat

log = logging.getLogger(__name__)
# A request whose job produces nothing for this long is abandoned (a safety net:
# the engine always answers or the process exits).
EVENT_TIMEOUT_S = 900.0
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


class InFlight:
    """WSGI middleware counting responses not yet fully sent (the server closes the
    body iterable after writing it), so a draining process exits only after its
    last answers have left, not merely after the engine produced them."""

    def __init__(self, app, counter):
        self.app, self.counter = app, counter

    def __call__(self, environ, start_response):
        self.counter.enter()
        try:
            body = self.app(environ, start_response)
        except BaseException:
            self.counter.leave()
            raise
        return _ClosingBody(body, self.counter.leave)


class _ClosingBody:
    def __init__(self, body, on_close):
        self.body, self.on_close = body, on_close

    def __iter__(self):
        return iter(self.body)

    def close(self):
        try:
            if hasattr(self.body, "close"):
                self.body.close()
        finally:
            self.on_close()


def create_app(settings, service) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.wsgi_app = InFlight(app.wsgi_app, service.responses)
    metrics = service.metrics

    @app.before_request
    def tag_request():
        # The gateway's id (it makes every one); made here for a caller that sent none.
        g.request_id = request_ids.cleaned(request.headers.get(request_ids.REQUEST_ID_HEADER)) or request_ids.new()
        g.client_request_id = request_ids.cleaned(request.headers.get(request_ids.CLIENT_REQUEST_ID_HEADER))
        g.tenant = request_ids.cleaned(request.headers.get(request_ids.TENANT_HEADER))
        g.trace = request_ids.UNSAFE.sub("", request.headers.get("traceparent", ""))[:64]  # hex and dashes
        g.started = time.monotonic()

    @app.after_request
    def record(response: Response):
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        response.headers["X-Request-ID"] = g.get("request_id", "")
        if not endpoint.startswith(("/health", "/metrics")):
            metrics.requests.labels(endpoint, str(response.status_code)).inc()
            log.info("%s %s -> %d in %.0f ms [%s%s]%s", request.method, request.path, response.status_code,
                     (time.monotonic() - g.started) * 1000, g.request_id,
                     request_ids.log_context(g.tenant, g.client_request_id),
                     f" traceparent={g.trace}" if g.trace else "")
        return response

    @app.errorhandler(ApiError)
    def api_error(error: ApiError):
        response = jsonify(error.body())
        response.status_code = error.status
        if error.retry_after is not None:
            response.headers["Retry-After"] = str(error.retry_after)
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        code = _HTTP_CODES.get(error.code, "invalid_request")
        message = {"request_too_large": f"the request body is over the limit of {settings.max_body_bytes} bytes"} \
            .get(code, f"{error.name}: {request.method} {request.path}")
        response = api_error(ApiError(code, message))
        response.status_code = error.code
        return response

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("unhandled error [%s]", g.get("request_id"))
        return api_error(ApiError("internal_error", "an internal error occurred; see the model process log "
                                  f"for request {g.get('request_id')}"))

    # ---------------------------------------------------------------- operations

    @app.get("/health/live")
    def live():
        return {"status": "alive"}

    @app.get("/health")
    def health():
        if service.ready:
            loaded, engine = service.loaded, service.engine
            return {"status": "healthy", "model": loaded.name, "device": str(loaded.device),
                    "dtype": str(loaded.dtype).replace("torch.", ""), "contextLength": service.context_length,
                    **engine.describe(), "decode": engine.decode_mode, **engine.load}
        status = "stopping" if service.stopping else "loading"
        return {"status": status, "model": settings.model_name, **service.progress.snapshot()}, 503

    @app.get("/metrics")
    def metrics_text():
        return Response(generate_latest(metrics.registry), mimetype=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": settings.model_name, "object": "model", "created": 0,
                                            "owned_by": "llava-service"}]}

    if service.faults is not None:
        @app.post("/_faults")
        def faults():
            return service.faults.arm(_json_body())

    # ---------------------------------------------------------------- generation

    def submit(parse, stream: bool = False):
        if not service.ready:
            raise ApiError("shutting_down" if service.stopping else "model_loading",
                           "the model process is shutting down" if service.stopping else
                           f"the model is still starting ({service.progress.phase}); retry shortly")
        started = time.monotonic()
        with service.preparing():
            parsed = parse(_json_body(), service.limits)
            job = service.submit(parsed, g.request_id, stream=stream, tenant=g.tenant)
            metrics.preprocess.observe(time.monotonic() - started)
        return parsed, job

    @app.post("/v1/analyze")
    def analyze():
        _, job = submit(parse_analyze)
        done = job.result(EVENT_TIMEOUT_S)
        return {"result": done.text, "model": settings.model_name, "finishReason": done.finish_reason,
                "usage": {"promptTokens": done.prompt_tokens, "completionTokens": done.completion_tokens},
                "latencyMs": round(done.latency_s * 1000), "requestId": g.request_id}

    @app.post("/v1/chat/completions")
    def chat_completions():
        parsed, job = submit(parse_chat)
        completion_id, created = "chatcmpl-" + uuid.uuid4().hex, int(time.time())
        if not parsed.stream:
            done = job.result(EVENT_TIMEOUT_S)
            return {"id": completion_id, "object": "chat.completion", "created": created, "model": settings.model_name,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": done.text},
                                 "finish_reason": _finish(done.finish_reason)}],
                    "usage": _usage(done)}
        return Response(_sse(job, completion_id, created, settings.model_name, parsed.include_usage),
                        mimetype="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app


def _sse(job, completion_id: str, created: int, model: str, include_usage: bool):
    """Server-Sent Events as OpenAI sends them. Closing the generator (client gone)
    cancels the job, which frees its row in the running batch."""
    def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
        body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if usage:
            body["usage"] = usage
        return f"data: {json.dumps(body)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        deltas = job.deltas(EVENT_TIMEOUT_S)
        while True:
            try:
                yield chunk({"content": next(deltas)})
            except StopIteration as stop:
                done = stop.value
                break
        yield chunk({}, _finish(done.finish_reason))
        if include_usage:
            yield chunk({}, usage=_usage(done))
    except ApiError as error:  # the status line is already sent: report in-band, as OpenAI does
        yield f"data: {json.dumps(error.body())}\n\n"
    finally:
        job.cancel()
    yield "data: [DONE]\n\n"


def _finish(reason: str) -> str:
    return "stop" if reason in ("stop", "cancelled") else "length"


def _usage(done) -> dict:
    return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens}


def _json_body():
    body = request.get_json(force=True, silent=True)
    if body is None:
        raise ApiError("invalid_request", "the body must be JSON (Content-Type: application/json)")
    return body
