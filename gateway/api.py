"""HTTP routes. Read top-down: request id and auth, the analyze endpoint, the
operations endpoints, then the error boundary (every refusal and every unexpected
error leaves as DESIGN.md's JSON; exception text never reaches a client)."""
from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from . import auth, openai_api
from .statuses import INTERNAL_ERROR, UNAUTHORIZED, VALIDATION_ERROR, Refusal
from .validation import parse_analyze

log = logging.getLogger(__name__)
bp = Blueprint("gateway", __name__)
ANALYZE = "/api/v1/multimodal/analyze"
OPEN_PATHS = ("/health", "/metrics", "/openapi.json")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def parts():
    return current_app.extensions["gateway"]


@bp.before_app_request
def start():
    given = request.headers.get("X-Request-ID", "")
    g.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
    g.started = time.monotonic()
    g.counted = not request.path.startswith(OPEN_PATHS)
    if g.counted:
        parts().metrics.in_flight.inc()
        auth.check(request.headers, parts().settings.api_keys)


@bp.after_app_request
def finish(response: Response) -> Response:
    response.headers["X-Request-ID"] = g.get("request_id", "")
    if g.get("counted"):
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        status = g.get("answer_status", "HTTP_%d" % response.status_code)
        elapsed = time.monotonic() - g.started
        metrics = parts().metrics
        metrics.requests.labels(endpoint, status).inc()
        metrics.response_time.labels(endpoint).observe(elapsed)
        log.info("%s %s -> %d %s in %.0f ms", request.method, request.path, response.status_code, status,
                 elapsed * 1000)
    return response


@bp.teardown_app_request
def done(_exc):
    if g.get("counted"):
        parts().metrics.in_flight.dec()


# --------------------------------------------------------------------- the API

@bp.post(ANALYZE)
def analyze():
    settings = parts().settings
    parsed = parse_analyze(request.form, request.files, request.args, settings)
    answer = parts().analyzer.analyze(parsed, g.request_id)
    return reply(answer.status, 200, answer.result, model=answer.model, usage=answer.usage)


def reply(status: str, http: int, result: str, model: str | None = None, usage: dict | None = None,
          retry_after: int | None = None, code: str | None = None, param: str | None = None) -> Response:
    g.answer_status = status
    if request.path.startswith(openai_api.PREFIX):  # the OpenAI face answers errors in OpenAI's shape
        response = openai_api.error_response(http, result, code, param)
    else:
        latency_ms = round((time.monotonic() - g.get("started", time.monotonic())) * 1000)
        response = jsonify({"status": status, "result": result, "requestId": g.get("request_id", ""),
                            "model": model, "usage": usage, "latencyMs": latency_ms})
        response.status_code = http
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    if status == UNAUTHORIZED:
        response.headers["WWW-Authenticate"] = 'Bearer realm="llava"'
    return response


# --------------------------------------------------------------------- operations

@bp.get("/health")
def health():
    upstream = parts().upstream
    return {"status": "healthy", "upstream": "ready" if upstream.any_ready() else "unavailable",
            "breakers": {r.url: r.breaker.state for r in upstream.replicas}}


@bp.get("/health/live")
def live():
    return {"status": "alive"}


@bp.get("/health/ready")
def ready():
    if parts().upstream.any_ready():
        return {"status": "ready"}
    return {"status": "not_ready", "reason": "no upstream model replica is ready"}, 503


@bp.get("/metrics")
def metrics():
    body, content_type = parts().metrics.exposition()
    return Response(body, content_type=content_type)


# --------------------------------------------------------------------- error boundary

@bp.app_errorhandler(Refusal)
def refused(error: Refusal):
    if error.status != UNAUTHORIZED:
        log.info("refused %d %s: %s", error.http, error.status, error.message)
    return reply(error.status, error.http, error.message, retry_after=error.retry_after, code=error.code,
                 param=error.param)


@bp.app_errorhandler(RequestEntityTooLarge)
def too_large(_error):
    settings = parts().settings
    if request.path.startswith(openai_api.PREFIX):
        return reply(VALIDATION_ERROR, 413, f"the request body is over {openai_api.body_limit(settings)} bytes "
                     f"(at most {settings.max_images} images of {settings.max_upload_bytes} bytes each)")
    return reply(VALIDATION_ERROR, 413, f"the request is too large; the image limit is {settings.max_upload_bytes} bytes")


@bp.app_errorhandler(HTTPException)
def http_error(error: HTTPException):
    message = {404: f"no such endpoint: {request.method} {request.path}",
               405: f"{request.method} is not allowed on {request.path}"}.get(
        error.code, f"the request could not be read ({error.name})")
    return reply(VALIDATION_ERROR, error.code or 400, message)


@bp.app_errorhandler(Exception)
def unexpected(error: Exception):
    log.exception("unexpected error")
    return reply(INTERNAL_ERROR, 500, f"an internal error occurred; quote request id {g.get('request_id')}")

