"""The supervisor's own HTTP API on SUPERVISOR_PORT: GET /status and GET /metrics.

Both read one status snapshot (`status()`), so the JSON and the metrics never
disagree. Metrics live in a per-instance registry, so tests can build many apps.
"""
from __future__ import annotations

from typing import Callable

from flask import Flask, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .states import State

StatusFn = Callable[[], dict]


class StatusCollector:
    """Prometheus metrics computed from the status snapshot at scrape time."""

    def __init__(self, status: StatusFn):
        self.status = status

    def collect(self):
        snap = self.status()
        state = GaugeMetricFamily("llava_supervisor_state", "1 for the child's current state, 0 for the others",
                                  labels=["state"])
        for name in State:
            state.add_metric([name.value], 1.0 if snap["state"] == name.value else 0.0)
        yield state
        yield CounterMetricFamily("llava_supervisor_restarts",
                                  "Times the child was started again after the first start", value=snap["restarts"])
        code = snap["lastExitCode"]
        yield GaugeMetricFamily("llava_supervisor_last_exit_code",
                                "Exit code of the last child exit (negative: killed by that signal; NaN: none yet)",
                                value=float("nan") if code is None else float(code))
        yield GaugeMetricFamily("llava_supervisor_child_uptime_seconds", "Seconds since the current child was spawned",
                                value=snap["uptimeSeconds"])
        yield GaugeMetricFamily("llava_supervisor_consecutive_failures",
                                "Child failures in a row since a child was last stable",
                                value=snap["consecutiveFailures"])


def create_app(status: StatusFn, registry: CollectorRegistry | None = None) -> Flask:
    registry = registry or CollectorRegistry()
    registry.register(StatusCollector(status))
    app = Flask("llava_supervisor")

    @app.get("/status")
    def status_json():
        return status()

    @app.get("/metrics")
    def metrics_text():
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    return app
