"""What every request goes through, whichever face answers it: a request id (always
made here; the client's own X-Request-ID is kept beside it), the caller's W3C trace
context, the API key (and with it the tenant that scopes the cache and admission),
the in-flight count, and on the way out the metrics and one log line. Also the
error boundary: every refusal, HTTP error (no such route, body too large) and
unexpected exception leaves in the shape of the face that owns the path (`Face`),
never with exception text, and with client text (a path) escaped and cut.

Spare threads: an API request that would leave fewer than SPARE_THREADS of the
worker's threads free is refused with 429 at once, whatever it would have waited for
(a model call slot, an identical call in flight, an image decode), so health probes
and scrapes are always answered.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from llava_common import request_ids

from . import auth, parts
from .logs import printable
from .settings import SPARE_THREADS
from .statuses import INTERNAL_ERROR, OVERLOADED, UNAUTHORIZED, VALIDATION_ERROR, Refusal
from .upstream import Trace

log = logging.getLogger(__name__)
# Open without an API key and not counted as API requests.
OPEN_PATHS = ("/health", "/metrics", "/openapi.json")
# So are the pages (pages.py): static files; the playground asks for the key itself.
OPEN_BLUEPRINTS = ("pages",)
# W3C Trace Context: version-traceid-parentid-flags; all-zero ids and version ff are invalid.
_TRACEPARENT = re.compile(r"^(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")
_TRACESTATE = re.compile(r"^[\x20-\x7e]{1,512}$")
# Client text (a path) quoted in an answer or a log line is cut to this many characters.
QUOTED_CHARS = 200
BUSY = "busy"  # label value of llava_admission_rejected_total: no spare thread left


@dataclass(frozen=True)
class Face:
    """One public face of the gateway, as the boundary sees it."""
    name: str
    owns: Callable[[str], bool]                 # does a request path belong to this face?
    render: Callable[[Refusal], Response]       # an error in this face's shape
    too_large: Callable[[object], str]          # what "body too large" means here (from the settings)
    label: Callable[[str], str] = str           # a route as the `endpoint` label of the metrics


class Busy:
    """API requests in progress in this worker, at most `limit` (threads less the spares),
    and at most `per_tenant` of them one API key's: with several keys, one key's burst
    must leave threads for the others to reach the admission line, which shares itself
    fairly (issue 25: a burst of 300 held every thread, and another key got 429 here)."""

    def __init__(self, limit: int, metrics, per_tenant: int | None = None):
        self.limit, self._metrics = limit, metrics
        self.per_tenant = per_tenant or limit
        self._lock = threading.Lock()
        self.count = 0
        self._held: dict[str, int] = {}

    def enter(self, tenant: str = "-") -> None:
        with self._lock:
            held = self._held.get(tenant, 0)
            if self.count >= self.limit or held >= self.per_tenant:
                self._metrics.overloaded.labels(BUSY).inc()
                raise Refusal(OVERLOADED, 429, f"the service is busy: {self.count} requests are in progress here; "
                              "retry in 1 s", retry_after=1, code="rate_limit_exceeded")
            self.count += 1
            self._held[tenant] = held + 1

    def leave(self, tenant: str = "-") -> None:
        with self._lock:
            self.count -= 1
            self._held[tenant] -= 1
            if not self._held[tenant]:
                del self._held[tenant]


def install(app: Flask, faces: list[Face]) -> None:
    """`faces` in order of precedence; the last one owns every other path."""
    app.extensions["gateway_faces"] = faces
    settings = app.extensions["gateway"].settings
    limit = max(1, settings.threads - SPARE_THREADS)
    # With several keys, one key leaves a batch's worth of threads (MAX_UPSTREAM_IN_FLIGHT) to the others.
    per_tenant = max(1, limit - settings.max_in_flight) if len(settings.api_keys) > 1 else limit
    app.extensions["gateway_busy"] = Busy(limit, app.extensions["gateway"].metrics, per_tenant)
    app.before_request(start)
    app.after_request(finish)
    app.teardown_request(done)
    app.register_error_handler(Refusal, refused)
    app.register_error_handler(RequestEntityTooLarge, too_large)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected)


def start():
    # Ours, always: a client's id is its own field (llava_common/request_ids.py says why).
    g.request_id = request_ids.new()
    given = request.headers.get(request_ids.REQUEST_ID_HEADER, "")
    g.client_request_id = given if request_ids.VALID.match(given) else None
    g.tenant_tag = "-"
    g.trace = _trace()
    g.started = time.monotonic()
    g.counted = not request.path.startswith(OPEN_PATHS) and request.blueprint not in OPEN_BLUEPRINTS
    if g.counted:
        parts().metrics.in_flight.inc()
        settings = parts().settings
        g.tenant_id = auth.check(request.headers, settings.api_keys)  # admission's fair share is per tenant
        g.tenant_tag = auth.tag(g.tenant_id)
        g.tenant = auth.ANONYMOUS if settings.cache_shared else g.tenant_id  # what scopes the cache
        g.trace = dataclasses.replace(g.trace, tenant=g.tenant_tag)
        current_app.extensions["gateway_busy"].enter(g.tenant_tag)
        g.busy = True


def _trace() -> Trace:
    traceparent = request.headers.get("traceparent", "").strip().lower()
    tracestate = request.headers.get("tracestate", "").strip()
    if not _TRACEPARENT.match(traceparent):  # absent or malformed: not passed on (W3C: start afresh)
        traceparent = tracestate = None
    elif not _TRACESTATE.match(tracestate):
        tracestate = None
    return Trace(g.request_id, traceparent, tracestate, g.client_request_id)


def finish(response: Response) -> Response:
    response.headers[request_ids.REQUEST_ID_HEADER] = g.get("request_id", "")
    if g.get("client_request_id"):
        response.headers[request_ids.CLIENT_REQUEST_ID_HEADER] = g.client_request_id
    if g.get("counted"):
        endpoint = face().label(request.url_rule.rule) if request.url_rule else "unmatched"
        status = g.get("answer_status", "HTTP_%d" % response.status_code)
        elapsed = time.monotonic() - g.started
        metrics = parts().metrics
        metrics.requests.labels(endpoint, status).inc()
        metrics.response_time.labels(endpoint).observe(elapsed)
        trace = g.get("trace")
        log.info("%s %s -> %d %s in %.0f ms%s", request.method, quoted(request.path), response.status_code, status,
                 elapsed * 1000, f" traceparent={trace.traceparent}" if trace and trace.traceparent else "")
    return response


def done(_exc):
    if g.get("counted"):
        parts().metrics.in_flight.dec()
    if g.pop("busy", False):
        current_app.extensions["gateway_busy"].leave(g.tenant_tag)
        parts().intake.settle()  # the request's large objects are gone: memory back to the system


def quoted(text: str) -> str:
    """Client text for a message or a log line: control characters escaped, cut short."""
    return printable(text, QUOTED_CHARS)


# --------------------------------------------------------------------- errors

def face() -> Face:
    faces = current_app.extensions["gateway_faces"]
    return next((f for f in faces if f.owns(request.path)), faces[-1])


def answer(refusal: Refusal) -> Response:
    """A refusal in the owning face's shape, with its Retry-After / WWW-Authenticate."""
    g.answer_status = refusal.status
    response = face().render(refusal)
    if refusal.retry_after is not None:
        response.headers["Retry-After"] = str(refusal.retry_after)
    if refusal.status == UNAUTHORIZED:
        response.headers["WWW-Authenticate"] = 'Bearer realm="llava"'
    return response


def refused(error: Refusal):
    if error.status != UNAUTHORIZED:
        log.info("refused %d %s: %s", error.http, error.status, error.message)
    return answer(error)


def too_large(_error):
    return answer(Refusal(VALIDATION_ERROR, 413, face().too_large(parts().settings), code="request_too_large"))


def http_error(error: HTTPException):
    path = quoted(request.path)
    method = quoted(request.method)
    message = {404: f"no such endpoint: {method} {path}",
               405: f"{method} is not allowed on {path}"}.get(
        error.code, f"the request could not be read ({error.name})")
    response = answer(Refusal(VALIDATION_ERROR, error.code or 400, message))
    for name, value in error.get_headers():  # e.g. Allow on a 405 (RFC 9110)
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def unexpected(error: Exception):
    log.exception("unexpected error")
    return answer(Refusal(INTERNAL_ERROR, 500, f"an internal error occurred; quote request id {g.get('request_id')}"))
