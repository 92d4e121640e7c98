"""The core both faces share: the request path after validation, cache ->
single-flight -> admission -> upstream (breaker, timeouts) -> fallback. It returns
an `Answer` or raises `Refusal`; HTTP and request shapes live in the faces
(native_api.py, openai_api.py), which hand it a cache key and a function that
builds the upstream chat-completions request on a miss.

`answer()` gives one answer; `open_stream()` an answer relayed as it is generated
(Server-Sent Events). The OpenAI face asks for no fallback (its clients expect an
outage as a 503 error, not as text) and, for answers sampled without a seed, no
reuse: no cache and no single-flight, so each call gets its own sample."""
from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from typing import Callable

from . import upstream as up
from .admission import ANYONE
from .cache import SingleFlight
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
class Answer:
    status: str
    result: str
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None

    @property
    def usage(self) -> dict | None:
        if self.prompt_tokens is None:
            return None
        return {"promptTokens": self.prompt_tokens, "completionTokens": self.completion_tokens}


class Answering:
    def __init__(self, settings, cache, upstream, admission, metrics):
        self.settings, self.cache, self.upstream, self.admission, self.metrics = (
            settings, cache, upstream, admission, metrics)
        self.flights = SingleFlight()
        # A follower waits at most as long as the leader may wait for a slot and then call.
        self._follower_wait_s = settings.admission_wait_s + settings.connect_timeout_s + settings.read_timeout_s + 5

    def answer(self, key: str, payload: Callable[[], dict], trace: up.Trace, fallback: bool = True,
               reuse: bool = True) -> Answer:
        """One answer for `key`; `payload()` builds the upstream request on a miss.
        `reuse=False`: neither cached nor shared with an identical request in flight."""
        if reuse:
            hit = self.cache.get(key)
            if hit is not None:
                return Answer(CACHED, **hit)
        body = payload()  # may refuse (a bad image): before the single flight and any admission slot
        if not reuse:
            return self._ask_model(body, None, trace, fallback)
        try:
            answer, shared = self.flights.do(key, lambda: self._ask_model(body, key, trace, fallback),
                                             self._follower_wait_s)
        except TimeoutError:
            return self._fallback(up.UpstreamDown(up.TIMEOUT, "waited too long for an identical request"),
                                  trace, fallback)
        if shared:
            self.metrics.coalesced.inc()
        return answer

    def _ask_model(self, body: dict, key: str | None, trace: up.Trace, fallback: bool) -> Answer:
        try:
            with self.admission.slot(trace.tenant or ANYONE):
                completion = self.upstream.complete(body, trace)
        except up.UpstreamDown as exc:
            return self._fallback(exc, trace, fallback)
        except up.UpstreamRefused as exc:
            raise self._refusal(exc, trace) from None
        answer = Answer(SUCCESS, completion.text, completion.model, completion.prompt_tokens,
                        completion.completion_tokens, completion.finish_reason)
        if key is not None:
            self.remember(key, answer)
        return answer

    def remember(self, key: str, answer: Answer) -> None:
        self.cache.put(key, {k: v for k, v in asdict(answer).items() if k != "status"})

    def open_stream(self, key: str, payload: Callable[[], dict], trace: up.Trace,
                    reuse: bool = True) -> "Answer | Streaming":
        """A cached answer, or an open upstream stream holding an admission slot
        until it is closed. Streams are not coalesced (each client gets its own
        tokens as they come); one that completes is cached like a plain answer
        (unless `reuse=False`). Never falls back: an outage is a `Refusal` (503)."""
        if reuse:
            hit = self.cache.get(key)
            if hit is not None:
                return Answer(CACHED, **hit)
        body = payload()  # may refuse (a bad image): before any admission slot
        held = ExitStack()
        try:
            held.enter_context(self.admission.slot(trace.tenant or ANYONE))
            stream = self.upstream.stream(body, trace)
        except up.UpstreamDown as exc:
            held.close()
            self._fallback(exc, trace, fallback=False)  # raises: no fallback here
        except up.UpstreamRefused as exc:
            held.close()
            raise self._refusal(exc, trace) from None
        except BaseException:
            held.close()
            raise
        held.callback(stream.close)
        return Streaming(self, key if reuse else None, stream, held, trace.request_id)

    def _fallback(self, failure: up.UpstreamDown, trace: up.Trace, fallback: bool = True) -> Answer:
        self.metrics.upstream_errors.labels(failure.kind).inc()
        log.warning("model unavailable (%s: %s) [%s]", failure.kind, failure.detail, trace.request_id)
        if fallback and self.settings.fallback_enabled:
            message = (self.settings.fallback_timeout_message if failure.kind == up.TIMEOUT
                       else self.settings.fallback_message)
            return Answer(FALLBACK, message)
        retry_after = failure.retry_after or self.settings.retry_after_s
        raise Refusal(SERVICE_UNAVAILABLE, 503, f"{_UNAVAILABLE[failure.kind]}; retry in {retry_after} s",
                      retry_after=retry_after)

    def _refusal(self, refused: up.UpstreamRefused, trace: up.Trace) -> Refusal:
        log.info("model refused the request: %d %s [%s]", refused.http, refused.code, trace.request_id)
        if refused.http == 429:
            self.metrics.upstream_errors.labels("queue_full").inc()
            retry_after = refused.retry_after or 1
            return Refusal(OVERLOADED, 429, f"the model's queue is full; retry in {retry_after} s", retry_after,
                           code="queue_full")
        # The model's own message says what is wrong (it is written for clients, e.g.
        # context_length_exceeded: prompt + image + max-tokens over the context).
        message = refused.message or f"the model refused the request ({refused.code})"
        return invalid(message, refused.http if refused.http in (400, 413, 415) else 400, code=refused.code)


class Streaming:
    """An upstream stream in progress: `events()` relays the model's chunks as they
    come and caches the answer once it is complete; `close()` (idempotent) drops
    the upstream connection and frees the admission slot."""

    def __init__(self, core: Answering, key: str | None, stream: up.UpstreamStream, held: ExitStack,
                 request_id: str):
        self._core, self._key, self._stream, self._held, self._request_id = (
            core, key, stream, held, request_id)

    def events(self):
        text, model, finish, usage = [], None, None, None
        try:
            for event in self._stream.events():
                if "error" in event:  # the model failed after the stream began: passed on, not cached
                    yield event
                    return
                model = event.get("model") or model
                for choice in event.get("choices") or ():
                    text.append((choice.get("delta") or {}).get("content") or "")
                    finish = choice.get("finish_reason") or finish
                usage = event.get("usage") or usage
                yield event
        except up.UpstreamDown as exc:
            self._core.metrics.upstream_errors.labels(exc.kind).inc()
            log.warning("stream broke off (%s: %s) [%s]", exc.kind, exc.detail, self._request_id)
            raise
        if finish and usage and self._key is not None:
            self._core.remember(self._key, Answer(SUCCESS, "".join(text), model, usage.get("prompt_tokens"),
                                                      usage.get("completion_tokens"), finish))

    def close(self) -> None:
        self._held.close()

