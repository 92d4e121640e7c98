"""From records to verdicts and tables: outcomes per phase, latency percentiles,
time to recovery, the checks, and the markdown of chaos/RESULTS.md (which
docs/reliability.md includes)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .load import CONNECTION_ERROR, DESIGNED
from .phases import PhaseResult

AFTER_SHUTDOWN = "AFTER_SHUTDOWN"   # refused by a gateway that was told to stop: expected
COLUMNS = (*DESIGNED, AFTER_SHUTDOWN)


@dataclass
class Summary:
    name: str
    what: str
    counts: Counter
    errors: Counter            # outcomes that are not answers as designed
    p50_s: float | None
    p99_s: float | None
    recovery_s: float | None   # fault (or its end) -> first SUCCESS
    model_ready_s: float | None  # fault -> supervisor READY with a new pid
    notes: str
    problems: list[str]
    marks: dict


def outcome(result: PhaseResult, record) -> str:
    shutdown = result.marks.get("shutdown")
    if record.outcome == CONNECTION_ERROR and shutdown is not None and record.started >= shutdown:
        return AFTER_SHUTDOWN
    return record.outcome


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summarise(result: PhaseResult, recovery_bound_s: float, grace_s: float) -> Summary:
    counts = Counter(outcome(result, r) for r in result.records)
    errors = Counter({k: v for k, v in counts.items() if k not in COLUMNS})
    latencies = [r.latency for r in result.records if r.outcome in DESIGNED]
    marks, problems = result.marks, list(result.problems)
    if errors:
        problems.append("not answered as designed: " + ", ".join(f"{k} x{v}" for k, v in errors.items()))
    if not result.records:
        problems.append("the load sent no request")
    since = marks.get("cleared") or marks.get("injected")
    recovery = None if since is None or result.back_at is None else result.back_at - since
    if since is not None and (recovery is None or recovery > recovery_bound_s):
        problems.append(f"no SUCCESS within {recovery_bound_s:g} s of the fault"
                        + ("" if recovery is None else f" (took {recovery:.1f} s)"))
    model_ready = None if result.model_ready_at is None else result.model_ready_at - marks["injected"]
    notes = []
    if "cleared" in marks:
        notes.append(f"held {marks['cleared'] - marks['injected']:.1f} s; recovery counted from its end")
    if "exit_code" in marks:
        notes.append(f"exit code {marks['exit_code']} after {marks['stopped_s']:.1f} s")
        if marks["exit_code"] != 0:
            problems.append(f"exit code {marks['exit_code']}, not 0")
        if marks.get("shutdown") is not None and marks["stopped_s"] > grace_s:
            problems.append(f"the gateway took {marks['stopped_s']:.1f} s to exit, over its {grace_s} s grace")
    return Summary(result.phase.name, result.phase.what, counts, errors, percentile(latencies, 0.5),
                   percentile(latencies, 0.99), recovery, model_ready, "; ".join(notes), problems, marks)


def _s(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(summaries: list[Summary]) -> str:
    head = ["fault", "requests", *COLUMNS, "errors", "p50 s", "p99 s", "recovery s", "model READY s", "notes"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        errors = ", ".join(f"{k} x{v}" for k, v in s.errors.items()) or "0"
        rows.append("| " + " | ".join([s.name, str(sum(s.counts.values())), *(str(s.counts.get(c, 0)) for c in COLUMNS),
                                        errors, _s(s.p50_s), _s(s.p99_s), _s(s.recovery_s, 1),
                                        _s(s.model_ready_s, 1), s.notes]) + " |")
    return "\n".join(rows)
