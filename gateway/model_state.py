"""`GET /health/model`: what the model is doing now, for people (the playground's
strip) as much as for tools. Spring Boot Actuator serves one component at
`/health/{component}`; this is the `model` component of `/health`, with the load
progress the model process reports on its own `/health` while it starts (phase,
detail, tqdm bars) instead of the replicas' internal URLs, which stay private.

One of four states (`STATES`), judged over the replicas:
- ready: a replica answers its /health with 200 and its breaker lets calls through;
- loading: a replica answers 503 "loading": the weights load or the engine warms up;
- starting: no replica answers and none has been seen ready by this worker;
- restarting: none answers, is stopping, or its breaker is open, after one was
  seen ready (the supervisor brings a stopped model back; meanwhile the native API
  answers FALLBACK and the OpenAI face 503).

Always 200 (the gateway answers; `status` says UP or DOWN, as the component does in
`/health`), open without an API key like the other health endpoints. Each worker
asks the replicas at most once per `TTL_S`; concurrent callers share the answer.
"""
from __future__ import annotations

import re
import threading
import time
from typing import Literal

import requests
from flask import Blueprint, Flask, current_app
from pydantic import BaseModel, Field

from . import parts
from .upstream import HEALTH_TIMEOUT_S

bp = Blueprint("model_state", __name__)
PATH = "/health/model"
READY, LOADING, STARTING, RESTARTING = "ready", "loading", "starting", "restarting"
STATES = (READY, LOADING, STARTING, RESTARTING)
# Fresh enough for a strip that polls every half second while the model starts; bounds the probes
# that many open pages cause (one round per worker per TTL_S).
TTL_S = 0.5
# An absolute path in a progress detail (the model directory, a cache file): only its last part is shown.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/(?:[^\s/]+/)*([^\s/]+)/?")


class Bar(BaseModel):
    desc: str = Field(description="What is counted (e.g. loading weights, a download)")
    n: int
    total: int = Field(description="0 when unknown")


class Replicas(BaseModel):
    ready: int
    total: int


class ModelDetails(BaseModel):
    state: Literal["ready", "loading", "starting", "restarting"]
    reason: str | None = Field(None, description="Why the model cannot answer now (starting and restarting)")
    model: str | None = Field(None, description="The served model's name, once a replica answered")
    phase: str | None = Field(None, description="loading: the start-up phase the model process reports")
    detail: str | None = Field(None, description="loading: what the phase is doing (absolute paths shortened)")
    bars: list[Bar] = Field(default_factory=list, description="loading: live progress bars")
    elapsedSeconds: float | None = Field(None, description="loading: seconds since the model process started")
    replicas: Replicas


class ModelHealth(BaseModel):
    """The `model` component of /health, with the model's state and load progress."""
    status: Literal["UP", "DOWN"]
    details: ModelDetails


def install(app: Flask) -> None:
    app.extensions["model_state"] = Watch()
    app.register_blueprint(bp)


@bp.get(PATH)
def model_health():
    return current_app.extensions["model_state"].health(parts().upstream).model_dump()


class Watch:
    """The last judgement, refreshed at most every TTL_S; and which replicas this
    worker has seen ready (so that one not answering reads as restarting, not starting)."""

    def __init__(self, clock=time.monotonic):
        self._clock, self._lock = clock, threading.Lock()
        self._seen_ready: set[str] = set()
        self._last: ModelHealth | None = None
        self._at = float("-inf")

    def health(self, upstream) -> ModelHealth:
        if self._last is None or self._clock() - self._at >= TTL_S:
            # One probe round at a time; the others take the last answer (or wait for the first).
            if self._lock.acquire(blocking=self._last is None):
                try:
                    if self._last is None or self._clock() - self._at >= TTL_S:
                        self._last, self._at = self._judge(upstream), self._clock()
                finally:
                    self._lock.release()
        return self._last

    def _judge(self, upstream) -> ModelHealth:
        seen = [self._probe(upstream, replica) for replica in upstream.replicas]
        total, ready = len(seen), [s for s in seen if s.state == READY]
        pick = (ready or [s for s in seen if s.state == LOADING] or [s for s in seen if s.state == RESTARTING]
                or seen or [ModelDetails(state=STARTING, reason="no model replica is configured",
                                         replicas=Replicas(ready=0, total=0))])[0]
        details = pick.model_copy(update={"replicas": Replicas(ready=len(ready), total=total)})
        return ModelHealth(status="UP" if ready else "DOWN", details=details)

    def _probe(self, upstream, replica) -> ModelDetails:
        none = Replicas(ready=0, total=0)  # filled in by _judge
        try:
            response = upstream.session.get(replica.url + "/health",
                                            timeout=(upstream.settings.connect_timeout_s, HEALTH_TIMEOUT_S))
            body = response.json() if response.headers.get("Content-Type", "").startswith("application/json") \
                else {}
        except (requests.RequestException, ValueError):
            response, body = None, {}
        body = body if isinstance(body, dict) else {}
        model = _text(body.get("model"))
        if response is not None and response.status_code == 200:
            self._seen_ready.add(replica.url)
            if replica.breaker.refuses():
                return ModelDetails(state=RESTARTING, model=model, replicas=none,
                                    reason=f"failing; calls are paused for {replica.breaker.seconds_until_trial()} s")
            return ModelDetails(state=READY, model=model, replicas=none)
        if response is not None and body.get("status") == "loading":
            progress = body.get("progress") if isinstance(body.get("progress"), dict) else {}
            return ModelDetails(state=LOADING, model=model, replicas=none, phase=_text(body.get("phase")),
                                detail=_public(_text(progress.get("detail"))), bars=_bars(progress.get("bars")),
                                elapsedSeconds=_number(body.get("elapsedSeconds")))
        reason = "stopping" if body.get("status") == "stopping" else "not answering"
        state = RESTARTING if replica.url in self._seen_ready or reason == "stopping" else STARTING
        return ModelDetails(state=state, model=model, replicas=none, reason=reason)


def _text(value) -> str | None:
    return str(value)[:200] if isinstance(value, (str, int, float)) and str(value) else None


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _public(detail: str | None) -> str | None:
    return _ABSOLUTE_PATH.sub(r"\1", detail) if detail else detail


def _bars(value) -> list[Bar]:
    bars = []
    for bar in value if isinstance(value, list) else ():
        try:
            bars.append(Bar(desc=str(bar.get("desc") or "")[:80], n=int(bar.get("n") or 0),
                            total=int(bar.get("total") or 0)))
        except (AttributeError, TypeError, ValueError):
            continue  # another engine's health: progress is best effort
    return bars[:8]
