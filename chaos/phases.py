"""The faults, one function each, and the loop that runs a phase: start the load,
inject the fault `lead` seconds in, let the load run out, check that the stack
is ready again and answers SUCCESS.

A fault function returns its marks: `injected` (monotonic time), `cleared` for a
fault held for a while (500s, slowness), `shutdown` for the gateway's SIGTERM
(connections refused after it are expected, not errors), and notes for the
table (exit codes, stop times).
"""
from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import requests

from harness.stack import Stack

from .load import ANALYZE, MAX_TOKENS, Load, Record, jpeg

READY_TIMEOUT_S = 90         # from the end of a phase until the stack answers SUCCESS again


@dataclass
class Timing:
    duration_s: float          # load per phase
    lead_s: float              # load before the fault
    hold_s: float              # how long a held fault (500s, slowness) lasts


@dataclass
class Phase:
    name: str
    what: str                  # one line for the table
    inject: Callable[[Stack, Timing], dict]


@dataclass
class PhaseResult:
    phase: Phase
    records: list[Record]
    marks: dict
    statuses: list[tuple[float, dict | None]] = field(default_factory=list)  # supervisor /status timeline
    back_at: float | None = None          # first SUCCESS at or after the fault (load or probe)
    model_ready_at: float | None = None   # supervisor READY with a new pid
    problems: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------- faults

def no_fault(stack: Stack, timing: Timing) -> dict:
    return {}


def kill_model(stack: Stack, timing: Timing) -> dict:
    pid = stack.model_pid()
    os.kill(pid, signal.SIGKILL)
    return {"injected": time.monotonic(), "old_pid": pid}


def freeze_model(stack: Stack, timing: Timing) -> dict:
    pid = stack.model_pid()
    os.kill(pid, signal.SIGSTOP)   # the supervisor finds it hung, SIGTERMs + SIGCONTs it, starts another
    return {"injected": time.monotonic(), "old_pid": pid}


def model_errors(stack: Stack, timing: Timing) -> dict:
    return _held(stack, timing, "error")


def model_slow(stack: Stack, timing: Timing) -> dict:
    return _held(stack, timing, "slow", seconds=stack.read_timeout_s + 2)


def _held(stack: Stack, timing: Timing, mode: str, **spec) -> dict:
    stack.fault(mode, count=-1, **spec)
    injected = time.monotonic()
    time.sleep(timing.hold_s)
    stack.fault("none")
    return {"injected": injected, "cleared": time.monotonic()}


def restart_supervisor(stack: Stack, timing: Timing) -> dict:
    old = stack.supervisor
    old_pid = stack.model_pid()
    injected = time.monotonic()
    old.popen.send_signal(signal.SIGTERM)      # it stops the model gracefully, then exits 0
    code = old.popen.wait(timeout=float(stack.env["SUPERVISOR_STOP_GRACE_SECONDS"]) + 20)
    stopped = time.monotonic()
    stack.start_supervisor()                   # a new one on the same ports
    return {"injected": injected, "old_pid": old_pid, "exit_code": code, "stopped_s": stopped - injected}


def stop_gateway(stack: Stack, timing: Timing) -> dict:
    """SIGTERM gunicorn's master while requests are in flight (the model made slow
    enough to hold them, not past the read timeout); it must finish them and exit 0
    within its graceful timeout. A new gateway is then started on the same port."""
    stack.fault("slow", count=-1, seconds=stack.read_timeout_s / 2)
    time.sleep(stack.read_timeout_s / 2)
    master = stack.gateway
    injected = time.monotonic()
    master.popen.send_signal(signal.SIGTERM)
    try:
        code = master.popen.wait(timeout=stack.graceful_timeout_s + 10)
    finally:
        stopped = time.monotonic()
        stack.fault("none")
    stack.start_gateway()
    return {"injected": injected, "shutdown": injected, "exit_code": code, "stopped_s": stopped - injected}


PHASES = {
    "baseline": Phase("baseline", "no fault (warm-up; gateway memory measured after it)", no_fault),
    "kill -9 model": Phase("kill -9 model", "SIGKILL the model process", kill_model),
    "SIGSTOP model": Phase("SIGSTOP model", "freeze the model process (SIGSTOP)", freeze_model),
    "model 500s": Phase("model 500s", "every generate fails: the model answers 500", model_errors),
    "model slow": Phase("model slow", "generate sleeps past the gateway's read timeout", model_slow),
    "restart supervisor": Phase("restart supervisor", "SIGTERM the supervisor (the model stops with it), "
                                "start a new one on the same ports", restart_supervisor),
    "baseline again": Phase("baseline again", "no fault (gateway memory measured after it)", no_fault),
    "SIGTERM gateway": Phase("SIGTERM gateway", "SIGTERM gunicorn's master with requests in flight, "
                             "then start a new gateway", stop_gateway),
}


# ---------------------------------------------------------------------- a phase

def run_phase(stack: Stack, load: Load, phase: Phase, timing: Timing) -> PhaseResult:
    statuses: list[tuple[float, dict | None]] = []
    polling = threading.Event()
    poller = threading.Thread(target=_poll_status, args=(stack, statuses, polling), daemon=True)
    poller.start()
    load.start(timing.duration_s)
    marks, failure = {}, None
    try:
        time.sleep(timing.lead_s)
        marks = phase.inject(stack, timing)
    except Exception as exc:       # the fault itself failed: report it, still collect the load
        failure = f"injecting the fault failed: {exc!r}"
    records = load.join()
    result = PhaseResult(phase, records, marks)
    if failure:
        result.problems.append(failure)
    try:
        stack.wait_ready(READY_TIMEOUT_S, old_pid=marks.get("old_pid"))
        statuses.append((time.monotonic(), stack.status()))   # the poller may not have sampled it yet
        probe_at = _first_success(stack)
    except Exception as exc:
        result.problems.append(f"not ready again after the phase: {exc}")
        probe_at = None
    polling.set()
    poller.join(timeout=5)
    result.statuses = statuses
    _recovery(result, probe_at)
    return result


def _poll_status(stack: Stack, statuses: list, done: threading.Event) -> None:
    while not done.is_set():
        statuses.append((time.monotonic(), stack.status()))
        done.wait(0.2)


def _first_success(stack: Stack) -> float:
    """A fresh request (not cached) until the model answers it; when it did."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    n = int(time.time() * 1000) % 100_000
    while time.monotonic() < deadline:
        n += 1
        response = requests.post(stack.gateway_url + ANALYZE, files={"image": ("p.jpg", jpeg(n), "image/jpeg")},
                                 data={"prompt": "Ready again?"}, params={"max-tokens": MAX_TOKENS}, timeout=30)
        if response.status_code == 200 and response.json().get("status") == "SUCCESS":
            return time.monotonic()
        time.sleep(0.25)
    raise RuntimeError(f"no SUCCESS within {READY_TIMEOUT_S} s")


def _recovery(result: PhaseResult, probe_at: float | None) -> None:
    marks = result.marks
    since = marks.get("cleared") or marks.get("injected")
    if since is None:
        return
    answered = [r.ended for r in result.records if r.outcome == "SUCCESS" and r.started >= since]
    result.back_at = min(answered + ([probe_at] if probe_at else []), default=None)
    old_pid = marks.get("old_pid")
    if old_pid is not None:
        result.model_ready_at = next((t for t, s in sorted(result.statuses, key=lambda ts: ts[0])
                                      if t >= marks["injected"] and s and s["state"] == "READY"
                                      and s["pid"] != old_pid), None)
