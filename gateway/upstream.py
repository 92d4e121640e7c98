"""Model calls over the OpenAI chat-completions protocol.

One `Replica` per MODEL_URL entry, each with its own circuit breaker (breaker.py)
and a readiness flag from `GET /health`, re-checked at most every
UPSTREAM_HEALTH_INTERVAL_SECONDS. A call goes to a ready replica whose breaker is
not open, the one with the fewest calls in flight. Connections are pooled
(one requests.Session per worker). Failures are typed:

- `UpstreamDown(kind)`: the model could not answer (connection refused, timeout,
  5xx, garbage, breaker open, no replica ready). It counts against the breaker
  and leads to FALLBACK / SERVICE_UNAVAILABLE.
- `UpstreamRefused`: the model is up and refused this request (400 context too
  long or a schema that failed while decoding, 413, 415, 429 queue full). It does
  not count against the breaker; neither does an `UpstreamDown` that the model said
  was the request's own (`own`: out of memory for this request). Only what says the
  replica is unhealthy opens it: connection errors, timeouts, other 5xx, garbage.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass

import requests
import urllib3
from requests.adapters import HTTPAdapter

from llava_common import failures, request_ids

from .breaker import Breaker
from .discovery import Discovery

log = logging.getLogger(__name__)

# Failure kinds: the label values of llava_upstream_errors_total.
CONNECTION, TIMEOUT, SERVER_ERROR, BAD_RESPONSE, BREAKER_OPEN, NOT_READY = (
    "connection", "timeout", "server_error", "bad_response", "breaker_open", "not_ready")
# Health probes are bounded separately: a hung /health must not hold a request long.
HEALTH_TIMEOUT_S = 1.0
# A replica found not ready quickly (it answered "loading", or refused the connection
# while it starts) is asked again after this, not after UPSTREAM_HEALTH_INTERVAL_SECONDS:
# asking costs milliseconds, and a worker that trusted an old "not ready" answered
# FALLBACK after the model was ready (`make demo`, 4 workers: the first requests after
# its banner). One that timed out (hung, unreachable) keeps the longer interval:
# asking it again costs the timeout.
NOT_READY_RECHECK_S = 0.25
# How long the upstream's model list (GET /v1/models) is trusted.
MODELS_TTL_S = 60.0
# Connection pools kept, one per replica address (DNS discovery may find many).
HOST_POOLS = 32


def _never_connected(exc: requests.ConnectionError) -> bool:
    """A refused or unreachable connection (safe to try another replica), as opposed
    to one that broke after the request went out. requests wraps urllib3's
    NewConnectionError in MaxRetryError (retries are 0 here)."""
    cause = exc.args[0] if exc.args else None
    return isinstance(getattr(cause, "reason", cause), urllib3.exceptions.NewConnectionError)


class UpstreamDown(Exception):
    """`own`: the model answered that this request alone failed (llava_common/failures.py)."""

    def __init__(self, kind: str, detail: str, retry_after: int | None = None, own: bool = False):
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail, self.retry_after, self.own = kind, detail, retry_after, own


class UpstreamRefused(Exception):
    def __init__(self, http: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.http, self.code, self.message, self.retry_after = http, code, message, retry_after


@dataclass(frozen=True)
class Trace:
    """What identifies a request in the model process's logs: our request id, the
    client's own id, the caller's tenant tag and W3C trace context (all validated at
    the boundary), sent as headers (llava_common/request_ids.py)."""
    request_id: str
    traceparent: str | None = None
    tracestate: str | None = None
    client_request_id: str | None = None
    tenant: str | None = None

    def headers(self) -> dict:
        sent = {request_ids.REQUEST_ID_HEADER: self.request_id, "traceparent": self.traceparent,
                "tracestate": self.tracestate, request_ids.CLIENT_REQUEST_ID_HEADER: self.client_request_id,
                request_ids.TENANT_HEADER: self.tenant}
        return {name: value for name, value in sent.items() if value}


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


class Replica:
    def __init__(self, url: str, settings, metrics):
        self.url = url
        self.breaker = Breaker(url, settings.breaker_fail_max, settings.breaker_reset_s, metrics.breaker_state,
                               exclude=[UpstreamRefused, _request_own])
        self.in_flight = 0
        self.ready: bool | None = None  # None: not checked yet
        self.checked_at = float("-inf")
        self.trusted_s = 0.0            # how long `ready` holds before it is checked again
        self.quick = False              # `ready` was found quickly: checking again is cheap
        self.probing = threading.Lock()


class Upstream:
    def __init__(self, settings, metrics, clock=time.monotonic, resolver=None):
        self.settings, self.metrics, self.clock = settings, metrics, clock
        self.discovery = Discovery(settings.model_urls, settings.discovery_interval_s,
                                   lambda url: Replica(url, settings, metrics), resolver, clock)
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=max(HOST_POOLS, len(settings.model_urls)),
                              pool_maxsize=max(10, settings.threads),
                              max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._lock = threading.Lock()
        self._models: tuple[str, ...] = ()
        self._models_at = float("-inf")

    @property
    def replicas(self) -> tuple[Replica, ...]:
        """MODEL_URL's replicas, names re-resolved when due (gateway/discovery.py)."""
        return self.discovery.replicas()

    # ------------------------------------------------------------------ readiness

    def is_ready(self, replica: Replica) -> bool:
        stale = self.clock() - replica.checked_at >= replica.trusted_s
        # One probe at a time; the others use the last answer, or wait for the probe when
        # there is no answer yet or the last one was a quick "not ready" (the probe is
        # quick too, and the model may be ready now: a burst must not fall back meanwhile).
        wait = replica.ready is None or (replica.ready is False and replica.quick)
        if stale and replica.probing.acquire(blocking=wait):
            try:
                if self.clock() - replica.checked_at >= replica.trusted_s:
                    self._probe(replica)
            finally:
                replica.probing.release()
        return bool(replica.ready)

    def _probe(self, replica: Replica) -> None:
        try:
            response = self.session.get(replica.url + "/health",
                                        timeout=(self.settings.connect_timeout_s, HEALTH_TIMEOUT_S))
            ready, quick = response.status_code == 200, True
        except requests.Timeout:
            ready, quick = False, False
        except requests.RequestException:  # refused: nothing listens there (yet)
            ready, quick = False, True
        if ready != replica.ready:
            log.info("upstream %s is %s", replica.url, "ready" if ready else "not ready")
        self._mark(replica, ready, quick)

    def _mark(self, replica: Replica, ready: bool, quick: bool = False) -> None:
        """`quick`: the verdict came fast (an answer, a refused connection), so asking
        again is cheap."""
        replica.ready, replica.checked_at, replica.quick = ready, self.clock(), quick
        replica.trusted_s = (min(NOT_READY_RECHECK_S, self.settings.health_interval_s) if quick and not ready
                             else self.settings.health_interval_s)

    def any_ready(self) -> bool:
        return any(self.is_ready(r) for r in self.replicas if not r.breaker.refuses())

    # ------------------------------------------------------------------ models

    def model_ids(self) -> tuple[str, ...]:
        """The model names the upstream serves (OpenAI's `GET /v1/models`), asked of
        the first replica that answers and kept for MODELS_TTL_S; () when none does."""
        if self._models and self.clock() - self._models_at < MODELS_TTL_S:
            return self._models
        for replica in self.replicas:
            try:
                response = self.session.get(replica.url + "/v1/models",
                                            timeout=(self.settings.connect_timeout_s, HEALTH_TIMEOUT_S))
                ids = tuple(str(m["id"]) for m in response.json()["data"]) if response.status_code == 200 else ()
            except (requests.RequestException, ValueError, KeyError, TypeError):
                continue
            if ids:
                self._models, self._models_at = ids, self.clock()
                return ids
        return ()

    # ------------------------------------------------------------------ calls

    def complete(self, payload: dict, trace: Trace) -> Completion:
        return self._call(lambda replica: self._post(replica, payload, trace))

    def stream(self, payload: dict, trace: Trace) -> "UpstreamStream":
        """Open a streamed completion (`"stream": true`): returns once the model has
        accepted the request (status 200, headers read), so refusals and outages
        surface here as for `complete`. The breaker counts the opening; a stream
        that breaks later ends with an in-band error."""
        return self._call(lambda replica: self._open(replica, payload, trace))

    def _call(self, send):
        open_replicas = [r for r in self.replicas if r.breaker.refuses()]
        candidates = [r for r in self.replicas if r not in open_replicas and self.is_ready(r)]
        if not candidates:
            if open_replicas and len(open_replicas) == len(self.replicas):
                raise UpstreamDown(BREAKER_OPEN, "every upstream's circuit breaker is open",
                                   retry_after=min(r.breaker.seconds_until_trial() for r in open_replicas))
            raise UpstreamDown(NOT_READY, "no upstream is ready")
        candidates.sort(key=lambda r: r.in_flight)
        failure = None
        for replica in candidates:
            admitted = replica.breaker.admit()
            if admitted is None:  # opened by a concurrent call since we looked
                failure = UpstreamDown(BREAKER_OPEN, f"circuit breaker for {replica.url} is open",
                                       retry_after=replica.breaker.seconds_until_trial())
                continue
            outcome = None
            try:
                return send(replica)
            except (UpstreamDown, UpstreamRefused) as exc:
                outcome = exc
                if isinstance(exc, UpstreamRefused) or exc.kind != CONNECTION:
                    raise  # the call reached the model: do not send it twice
                failure = exc  # nothing was answered; another replica may do it
            finally:
                replica.breaker.record(admitted, outcome)
        raise failure

    def _post(self, replica: Replica, payload: dict, trace: Trace) -> Completion:
        started = self.clock()
        self._count(replica, +1)
        try:
            response = self._send(replica, payload, trace, stream=False)
        finally:
            self._count(replica, -1)
            self.metrics.upstream_time.observe(self.clock() - started)
        return self._read(replica, response)

    def _open(self, replica: Replica, payload: dict, trace: Trace) -> "UpstreamStream":
        started = self.clock()
        self._count(replica, +1)
        response = None
        try:
            response = self._send(replica, payload, trace, stream=True)
            if response.status_code != 200:
                self._refuse(replica, response)  # raises
        except BaseException:
            if response is not None:
                response.close()
            self._count(replica, -1)
            self.metrics.upstream_time.observe(self.clock() - started)
            raise

        def closed():
            self._count(replica, -1)
            self.metrics.upstream_time.observe(self.clock() - started)
        return UpstreamStream(replica.url, response, closed)

    def _count(self, replica: Replica, step: int) -> None:
        with self._lock:
            replica.in_flight += step
        self.metrics.upstream_in_flight.labels(replica.url).inc(step)

    def _send(self, replica: Replica, payload: dict, trace: Trace, stream: bool) -> requests.Response:
        try:
            return self.session.post(replica.url + "/v1/chat/completions", json=payload, stream=stream,
                                     headers=trace.headers(),
                                     timeout=(self.settings.connect_timeout_s, self.settings.read_timeout_s))
        except requests.Timeout as exc:
            connect = isinstance(exc, requests.ConnectTimeout)
            if connect:
                self._mark(replica, False)
            raise UpstreamDown(CONNECTION if connect else TIMEOUT,
                               f"{replica.url} did not {'accept the connection' if connect else 'answer'} in time") \
                from None
        except requests.ConnectionError as exc:
            self._mark(replica, False, quick=_never_connected(exc))
            if _never_connected(exc):
                raise UpstreamDown(CONNECTION, f"cannot connect to {replica.url}") from None
            # Connected, then dropped (the model died mid-call): the request may have
            # reached it, so it is not sent to another replica.
            raise UpstreamDown(BAD_RESPONSE, f"{replica.url} dropped the connection mid-call") from None
        except requests.RequestException:
            # The answer broke off after its headers (ChunkedEncodingError: the model
            # process died or stopped mid-response). It reached the model: not resent.
            raise UpstreamDown(BAD_RESPONSE, f"{replica.url} broke its answer off") from None

    def _read(self, replica: Replica, response: requests.Response) -> Completion:
        if response.status_code == 200:
            try:
                body = response.json()
                choice = body["choices"][0]
                usage = body.get("usage") or {}
                return Completion(text=str(choice["message"]["content"] or ""), model=str(body.get("model") or ""),
                                  finish_reason=str(choice.get("finish_reason") or ""),
                                  prompt_tokens=int(usage.get("prompt_tokens") or 0),
                                  completion_tokens=int(usage.get("completion_tokens") or 0))
            except (ValueError, KeyError, IndexError, TypeError):
                raise UpstreamDown(BAD_RESPONSE, f"{replica.url} answered 200 without a chat completion") from None
        self._refuse(replica, response)

    def _refuse(self, replica: Replica, response: requests.Response):
        """A non-200 answer as the typed failure it stands for (always raises)."""
        retry_after = _retry_after(response)
        code, message = _error_of(response)
        if response.status_code in (400, 413, 415, 422, 429):
            raise UpstreamRefused(response.status_code, code, message, retry_after)
        own = code in failures.REQUEST_OWN_CODES
        if response.status_code == 503 and not own:
            self._mark(replica, False, quick=True)
        raise UpstreamDown(SERVER_ERROR, f"{replica.url} answered {response.status_code} {code}",
                           retry_after=retry_after, own=own)


class UpstreamStream:
    """An open Server-Sent Events answer: `events()` yields each `data:` payload as
    parsed JSON, as the model sends it (no buffering past one event), and ends at
    `data: [DONE]`. A stream that breaks raises `UpstreamDown`. `close()` (always
    called, also when the client went away) drops the connection, which makes the
    model process cancel the generation and free its batch slot."""

    def __init__(self, url: str, response: requests.Response, on_close):
        self.url, self._response, self._on_close = url, response, on_close
        self._closed = False

    def events(self):
        buffer = b""
        try:
            for chunk in self._response.iter_content(chunk_size=None):
                buffer += chunk.replace(b"\r\n", b"\n")
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    data = b"\n".join(line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:"))
                    if not data:
                        continue  # a comment or keep-alive
                    if data == b"[DONE]":
                        return
                    yield json.loads(data)
        except requests.Timeout:
            raise UpstreamDown(TIMEOUT, f"{self.url} stopped sending in the middle of a stream") from None
        except requests.RequestException:
            raise UpstreamDown(CONNECTION, f"{self.url} broke the stream off") from None
        except ValueError:
            raise UpstreamDown(BAD_RESPONSE, f"{self.url} sent an unreadable stream event") from None
        raise UpstreamDown(BAD_RESPONSE, f"{self.url} ended the stream without data: [DONE]")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._response.close()
            self._on_close()


def _request_own(exc: BaseException) -> bool:
    """Excluded from the breaker's count (pybreaker takes a predicate too)."""
    return isinstance(exc, UpstreamDown) and exc.own


def _error_of(response: requests.Response) -> tuple[str, str]:
    """OpenAI's error shape {"error": {"message", "code", ...}}; anything else reads as unknown."""
    try:
        error = response.json()["error"]
        return str(error.get("code") or "unknown"), str(error.get("message") or "")
    except (ValueError, KeyError, TypeError, AttributeError):
        return "unknown", ""


def _retry_after(response: requests.Response) -> int | None:
    try:
        return max(1, int(float(response.headers.get("Retry-After", ""))))
    except ValueError:
        return None
