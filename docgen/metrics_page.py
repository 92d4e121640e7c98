"""docs/reference/metrics.md: every metric each process serves on GET /metrics, read from
the registries the processes build (name, type, labels, help)."""
from __future__ import annotations

from typing import Callable

from .markdown import code, generated_by, table

INTRO = """\
# Metrics reference

Every process serves Prometheus text on `GET /metrics`; every name starts with `llava_`
(docs/DESIGN.md pins the names). The gateway's output passes `promtool check metrics`
(tested). Alerts and the dashboard built on them: [operations](../operations.md).
"""
# Suffixes a family's samples carry, by type, as a scraper sees them.
SHOWN_SUFFIX = {"counter": "_total"}
SAMPLE_LABELS = {"le", "quantile"}  # a histogram's or a summary's own, not the metric's


def _gateway():
    from gateway.metrics import Metrics
    return Metrics().registry


def _model():
    from llava_runtime.metrics import ModelMetrics
    return ModelMetrics().registry


def _supervisor():
    from prometheus_client import CollectorRegistry

    from llava_supervisor.server import StatusCollector
    from llava_supervisor.states import State

    # Its metrics are computed from a status snapshot at scrape time: any snapshot names them.
    snapshot = {"state": State.READY.value, "restarts": 0, "lastExitCode": None, "uptimeSeconds": 0.0,
                "consecutiveFailures": 0}
    registry = CollectorRegistry()
    registry.register(StatusCollector(lambda: snapshot))
    return registry


# (title, where the metrics are defined, a function building the process's registry)
PROCESSES: tuple[tuple[str, str, Callable], ...] = (
    ("Gateway", "gateway/metrics.py", _gateway),
    ("Model process", "llava_runtime/metrics.py", _model),
    ("Supervisor", "llava_supervisor/server.py", _supervisor),
)


def declared_labels(registry) -> dict[str, tuple[str, ...]]:
    """Label names as the metrics declare them. A labelled metric with no child yet has
    no sample to read them from, and prometheus-client (pinned) offers no public getter,
    so they are read from its metric objects."""
    return {collector._name: tuple(collector._labelnames)
            for collector in registry._collector_to_names if hasattr(collector, "_labelnames")}


def rows(registry) -> list[tuple[str, str, str, str]]:
    labels = declared_labels(registry)
    found = []
    for family in registry.collect():
        names = labels.get(family.name) or tuple(dict.fromkeys(
            name for sample in family.samples for name in sample.labels if name not in SAMPLE_LABELS))
        found.append((code(family.name + SHOWN_SUFFIX.get(family.type, "")), family.type,
                      ", ".join(code(name) for name in names), family.documentation))
    return found


def render() -> str:
    parts = [generated_by("docgen/metrics_page.py", "the metric registries"), INTRO]
    for title, source, build in PROCESSES:
        parts.append(f"\n## {title}\n\nDefined in `{source}`.\n\n")
        parts.append(table(("name", "type", "labels", "help"), rows(build())))
    return "".join(parts)
