"""The load and fault suite against the demo stack.

    python -m chaos.run            # full: ~25 s of load per fault, writes chaos/RESULTS.md
    python -m chaos.run --short    # a few seconds per fault (what tests/test_chaos.py runs)

Starts supervisor + model process (demo model, LLAVA_FAULTS=1) + gunicorn gateway
on free loopback ports, runs one phase per fault under a closed-loop load, prints
the outcomes per phase and exits 1 if any request was not answered as designed,
the stack did not come back, or the gateway's memory grew run over run.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from harness.stack import CHAOS_SETTINGS as SETTINGS
from harness.stack import Stack

from .load import Load
from .phases import PHASES, Timing, run_phase
from .report import Summary, summarise, table

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
WORKERS = 16
TIMINGS = {"full": Timing(duration_s=25, lead_s=6, hold_s=8), "short": Timing(duration_s=3, lead_s=1, hold_s=1.5)}
RECOVERY_BOUND_S = 45.0       # fault (or its end) -> first SUCCESS
MEMORY_GROWTH_BOUND = 0.20    # gateway workers' RSS, "baseline again" over "baseline"
CLIENT_TIMEOUT_S = 20.0       # longer than any designed wait (read timeout 5 s, grace 10 s): past it = HUNG
START_TIMEOUT_S = 180.0


@dataclass
class Report:
    mode: str
    summaries: list[Summary] = field(default_factory=list)
    rss_before: int | None = None
    rss_after: int | None = None
    problems: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def growth(self) -> float | None:
        if not self.rss_before or self.rss_after is None:
            return None
        return self.rss_after / self.rss_before - 1

    @property
    def ok(self) -> bool:
        return not self.problems and all(not s.problems for s in self.summaries)


def run(mode: str = "full", workdir: Path | None = None, demo_model_dir: Path | None = None,
        progress=print) -> Report:
    timing, report, started = TIMINGS[mode], Report(mode), time.monotonic()
    workdir = Path(workdir or tempfile.mkdtemp(prefix="llava-chaos-"))
    stack = Stack(workdir, demo_model_dir)
    progress(f"chaos: {mode} run, {WORKERS} workers, {timing.duration_s:g} s per fault; logs in {workdir}")
    try:
        stack.start_supervisor()
        stack.start_gateway()
        progress(f"chaos: stack up in {stack.wait_ready(START_TIMEOUT_S):.1f} s on {stack.gateway_url}")
        load = Load(stack.gateway_url, WORKERS, CLIENT_TIMEOUT_S)
        for i, phase in enumerate(PHASES.values(), 1):
            progress(f"chaos: [{i}/{len(PHASES)}] {phase.name}: {phase.what}")
            result = run_phase(stack, load, phase, timing)
            summary = summarise(result, RECOVERY_BOUND_S, stack.graceful_timeout_s)
            report.summaries.append(summary)
            progress("chaos:      " + line(summary))
            if phase.name == "baseline":
                report.rss_before = stack.gateway_rss()
            elif phase.name == "baseline again":
                report.rss_after = stack.gateway_rss()
    except Exception as exc:
        report.problems.append(f"the run stopped: {exc!r}")
    finally:
        stack.close()
        report.elapsed_s = time.monotonic() - started
    growth = report.growth
    if growth is None:
        report.problems.append("gateway memory was not measured")
    elif growth > MEMORY_GROWTH_BOUND:
        report.problems.append(f"gateway memory grew {growth:.0%} run over run (bound {MEMORY_GROWTH_BOUND:.0%})")
    return report


def line(s: Summary) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in sorted(s.counts.items()))
    recovery = "" if s.recovery_s is None else f"; recovery {s.recovery_s:.1f} s"
    latency = "" if s.p50_s is None else f"; p50 {s.p50_s:.2f} s, p99 {s.p99_s:.2f} s"
    verdict = "ok" if not s.problems else "FAILED: " + "; ".join(s.problems)
    return f"{counts}{latency}{recovery} -> {verdict}"


def memory_line(report: Report) -> str:
    if report.growth is None:
        return "gateway memory: not measured"
    mib = 1024 * 1024
    return (f"gateway workers' RSS: {report.rss_before / mib:.1f} MiB after the warm-up baseline, "
            f"{report.rss_after / mib:.1f} MiB after the last fault run ({report.growth:+.1%}; "
            f"bound +{MEMORY_GROWTH_BOUND:.0%})")


def markdown(report: Report, command: str) -> str:
    timing = TIMINGS[report.mode]
    settings = ", ".join(f"`{k}={v}`" for k, v in SETTINGS.items()
                         if k.startswith(("SUPERVISOR_", "UPSTREAM_", "BREAKER_", "GATEWAY_", "SHUTDOWN_",
                                          "MAX_UPSTREAM_", "ADMISSION_")))
    verdict = "every check passed" if report.ok else "**checks failed**: " + "; ".join(
        report.problems + [f"{s.name}: {p}" for s in report.summaries for p in s.problems])
    return f"""## Reliability

`make chaos` (`python -m chaos.run`) starts the demo stack on free loopback ports (supervisor +
model process with `LLAVA_FAULTS=1` + gunicorn gateway, as separate processes so each can be
stopped and started again), puts it under a closed-loop load of {WORKERS} concurrent clients
(analyze requests, `max-tokens=8`, about 30 % repeats so that `CACHED` appears) and injects one
fault per phase, {timing.lead_s:g} s into {timing.duration_s:g} s of load. A short version
(`--short`, a few seconds per fault) runs in `make test` (`tests/test_chaos.py`).

Every request must get an answer as designed: `SUCCESS`, `CACHED`, `FALLBACK`, `OVERLOADED`
(429) or `SERVICE_UNAVAILABLE` (503), each 429/503 with `Retry-After`. A connection error, a
500, any other status or a request still unanswered after {CLIENT_TIMEOUT_S:g} s fails the run,
except connections refused after the gateway was told to stop (`AFTER_SHUTDOWN`, expected). After
each phase the stack must be ready again and answer a fresh request with `SUCCESS`; the gateway
must exit 0 within its graceful timeout; its workers' memory must not grow more than
{MEMORY_GROWTH_BOUND:.0%} between the first and the last fault-free run.

Measured with `{command}` on {date.today().isoformat()} ({platform.machine()}, demo model on the CPU,
{report.elapsed_s:.0f} s in all; {verdict}):

{table(report.summaries)}

- *recovery s*: from the fault (for a held fault, from its end) to the first `SUCCESS` of a
  request sent after it. *model READY s*: from the fault to the supervisor's `READY` with a new pid.
  Latencies are over all answers (a `FALLBACK` answers in milliseconds, a timed-out call after the
  read timeout).
- {memory_line(report)}.
- What each fault does to the answers: a killed model refuses connections, so requests fall back
  at once while the supervisor restarts it; a frozen one holds its in-flight calls until the read
  timeout (then `FALLBACK`) and fails its `/health` probes, so new requests fall back at once
  until the supervisor replaces it; 500s and timeouts open the circuit breaker after
  `BREAKER_FAIL_MAX` failures, which then answers `FALLBACK` without calling the model until a
  trial call succeeds; a supervisor stop drains the model (`FALLBACK` meanwhile); a gateway
  SIGTERM finishes the requests it holds and refuses new connections until a new gateway
  listens.
- Settings of the run, chosen so that faults heal in seconds: {settings}
  (defaults: [the settings reference](../docs/reference/settings.md)).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="a few seconds per fault (the CI version)")
    parser.add_argument("--results", type=Path, default=None,
                        help="markdown to write (default: chaos/RESULTS.md for a full run, none for --short)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    mode = "short" if args.short else "full"
    report = run(mode)
    print("\n" + table(report.summaries) + "\n\n" + memory_line(report))
    for problem in report.problems:
        print("chaos: " + problem)
    target = args.results or (None if args.short else RESULTS)
    if target is not None:
        target.write_text(markdown(report, "make chaos" if mode == "full" else "python -m chaos.run --short"))
        print(f"chaos: wrote {target}")
    print("chaos: " + ("PASSED" if report.ok else "FAILED"))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
