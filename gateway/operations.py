"""Operations endpoints, open without an API key: health in Spring Boot Actuator's
shape (`{"status": "UP"}` / `{"status": "DOWN", ...}`, so Spring Boot Admin and the
usual probes read it) and Prometheus metrics.

- /health: 200 while the gateway runs (the seed's health: the gateway answers,
  with FALLBACK if need be); the model replicas are a component, UP or DOWN, with
  each replica's readiness and breaker but not its URL: anyone may read /health,
  and the internal addresses are no business of theirs (the logs and the
  llava_breaker_state metric name them).
- /health/live: 200 while the gateway answers (a liveness probe).
- /health/ready: 200 when a model replica is ready, else 503 (a readiness probe).
"""
from __future__ import annotations

from typing import Literal

from flask import Blueprint, Response
from pydantic import BaseModel, Field

from . import parts

bp = Blueprint("operations", __name__)
UP, DOWN = "UP", "DOWN"


class Component(BaseModel):
    status: Literal["UP", "DOWN"]
    details: dict | None = Field(None, description="model: `replicas`, one `{ready, breaker}` per replica (breaker: "
                                                   "closed, open, half-open); or the `reason` it is DOWN")


class Health(BaseModel):
    """Spring Boot Actuator's health shape."""
    status: Literal["UP", "DOWN"]
    components: dict[str, Component] | None = None


def _health(status: str, **components: Component) -> dict:
    return Health(status=status, components=components or None).model_dump(exclude_none=True)


@bp.get("/health")
def health():
    upstream = parts().upstream
    replicas = [{"ready": not r.breaker.refuses() and upstream.is_ready(r), "breaker": r.breaker.state}
                for r in upstream.replicas]
    model = Component(status=UP if any(r["ready"] for r in replicas) else DOWN,
                      details={"replicas": replicas})
    return _health(UP, model=model)


@bp.get("/health/live")
def live():
    return _health(UP)


@bp.get("/health/ready")
def ready():
    if parts().upstream.any_ready():
        return _health(UP, model=Component(status=UP))
    return _health(DOWN, model=Component(status=DOWN, details={"reason": "no model replica is ready"})), 503


@bp.get("/metrics")
def metrics():
    body, content_type = parts().metrics.exposition()
    return Response(body, content_type=content_type)
