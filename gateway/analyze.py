"""The analyze request path, after validation: cache -> single-flight ->
admission -> upstream (breaker, timeouts) -> fallback. Returns an `Answer` or
raises `Refusal`; HTTP lives in api.py."""
from __future__ import annotations

import base64
import logging
from dataclasses import asdict, dataclass

from . import upstream as up
from .cache import SingleFlight, cache_key
from .images import Normalised
from .statuses import CACHED, FALLBACK, OVERLOADED, SERVICE_UNAVAILABLE, SUCCESS, Refusal, invalid

log = logging.getLogger(__name__)

# What the client is told when fallback is off, per failure kind (never exception text).
_UNAVAILABLE = {
    up.CONNECTION: "the model service cannot be reached",
    up.TIMEOUT: "the model did not answer in time",
    up.SERVER_ERROR: "the model service failed to answer",
    up.BAD_RESPONSE: "the model service sent an unreadable answer",
    up.BREAKER_OPEN: "the model service is failing; calls are paused by the circuit breaker",
    up.NOT_READY: "the model is not ready (starting, stopping or down)",
}


@dataclass(frozen=True)
class AnalyzeRequest:
    image: bytes                # as uploaded: the cache key hashes these bytes
    normalised: Normalised      # what the model gets
    prompt: str
    max_tokens: int
    temperature: float


@dataclass(frozen=True)
class Answer:
    status: str
    result: str
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @property
    def usage(self) -> dict | None:
        if self.prompt_tokens is None:
            return None
        return {"promptTokens": self.prompt_tokens, "completionTokens": self.completion_tokens}


class Analyzer:
    def __init__(self, settings, cache, upstream, admission, metrics):
        self.settings, self.cache, self.upstream, self.admission, self.metrics = (
            settings, cache, upstream, admission, metrics)
        self.flights = SingleFlight()
        # A follower waits at most as long as the leader's model call may take.
        self._follower_wait_s = settings.connect_timeout_s + settings.read_timeout_s + 5

    def analyze(self, request: AnalyzeRequest, request_id: str) -> Answer:
        key = cache_key(request.image, request.prompt, request.max_tokens, request.temperature,
                        self.settings.upstream_model)
        hit = self.cache.get(key)
        if hit is not None:
            return Answer(CACHED, **hit)
        try:
            answer, shared = self.flights.do(key, lambda: self._ask_model(request, key, request_id),
                                             self._follower_wait_s)
        except TimeoutError:
            return self._fallback(up.UpstreamDown(up.TIMEOUT, "waited too long for an identical request"),
                                  request_id)
        if shared:
            self.metrics.coalesced.inc()
        return answer

    def _ask_model(self, request: AnalyzeRequest, key: str, request_id: str) -> Answer:
        try:
            with self.admission.slot():
                completion = self.upstream.complete(self._payload(request), request_id)
        except up.UpstreamDown as exc:
            return self._fallback(exc, request_id)
        except up.UpstreamRefused as exc:
            raise self._refusal(exc, request_id) from None
        answer = Answer(SUCCESS, completion.text, completion.model, completion.prompt_tokens,
                        completion.completion_tokens)
        self.cache.put(key, {k: v for k, v in asdict(answer).items() if k != "status"})
        return answer

    def _payload(self, request: AnalyzeRequest) -> dict:
        image = request.normalised
        payload = {
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": f"data:{image.mime};base64," + _b64(image.data)}},
                {"type": "text", "text": request.prompt},
            ]}],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stream": False,
        }
        if self.settings.upstream_model:
            payload["model"] = self.settings.upstream_model
        return payload

    def _fallback(self, failure: up.UpstreamDown, request_id: str) -> Answer:
        self.metrics.upstream_errors.labels(failure.kind).inc()
        log.warning("model unavailable (%s: %s) [%s]", failure.kind, failure.detail, request_id)
        if self.settings.fallback_enabled:
            message = (self.settings.fallback_timeout_message if failure.kind == up.TIMEOUT
                       else self.settings.fallback_message)
            return Answer(FALLBACK, message)
        retry_after = failure.retry_after or self.settings.retry_after_s
        raise Refusal(SERVICE_UNAVAILABLE, 503, f"{_UNAVAILABLE[failure.kind]}; retry in {retry_after} s",
                      retry_after=retry_after)

    def _refusal(self, refused: up.UpstreamRefused, request_id: str) -> Refusal:
        log.info("model refused the request: %d %s [%s]", refused.http, refused.code, request_id)
        if refused.http == 429:
            self.metrics.upstream_errors.labels("queue_full").inc()
            retry_after = refused.retry_after or 1
            return Refusal(OVERLOADED, 429, f"the model's queue is full; retry in {retry_after} s", retry_after)
        # The model's own message says what is wrong (it is written for clients, e.g.
        # context_length_exceeded: prompt + image + max-tokens over the context).
        message = refused.message or f"the model refused the request ({refused.code})"
        return invalid(message, refused.http if refused.http in (400, 413, 415) else 400)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
