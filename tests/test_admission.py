"""Admission in isolation (gateway/admission.py): model call slots handed out first
come first served, a bounded line of waiters, a bounded wait, Retry-After from how
long calls hold their slots, and the metrics that say so."""
from __future__ import annotations

import threading
import time

import pytest

from gateway.admission import Admission
from gateway.metrics import Metrics
from gateway.statuses import Refusal


def sample(metrics: Metrics, name: str, labels: dict | None = None) -> float:
    return metrics.registry.get_sample_value(name, labels or {}) or 0.0


def wait_until(check, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_slots_pass_to_waiters_in_arrival_order():
    metrics = Metrics()
    admission = Admission(limit=1, queue=5, wait_s=5, metrics=metrics)
    order, release = [], threading.Event()

    def holder():
        with admission.slot():
            release.wait(5)

    def waiter(n):
        with admission.slot():
            order.append(n)

    first = threading.Thread(target=holder)
    first.start()
    wait_until(lambda: admission._free == 0)
    waiters = []
    for n in range(4):  # each joins the line before the next starts
        waiters.append(threading.Thread(target=waiter, args=(n,)))
        waiters[-1].start()
        wait_until(lambda: sample(metrics, "llava_admission_waiting_requests") == n + 1)
    release.set()
    for thread in [first, *waiters]:
        thread.join(5)
    assert order == [0, 1, 2, 3]
    assert sample(metrics, "llava_admission_wait_seconds_count") == 4
    assert admission._free == 1 and not admission._waiters


def test_a_full_line_is_refused_at_once_and_a_long_wait_in_time():
    metrics = Metrics()
    admission = Admission(limit=1, queue=1, wait_s=0.3, metrics=metrics)
    release = threading.Event()

    def holder():
        with admission.slot():
            release.wait(5)

    threading.Thread(target=holder).start()
    wait_until(lambda: admission._free == 0)
    waited = {}

    def waiter():
        started = time.monotonic()
        with pytest.raises(Refusal) as refused:
            with admission.slot():
                pass
        waited["s"], waited["refusal"] = time.monotonic() - started, refused.value

    thread = threading.Thread(target=waiter)
    thread.start()
    wait_until(lambda: len(admission._waiters) == 1)
    started = time.monotonic()
    with pytest.raises(Refusal) as full:
        with admission.slot():
            pass
    assert time.monotonic() - started < 0.1 and full.value.http == 429 and full.value.retry_after >= 1
    thread.join(5)
    release.set()
    assert 0.3 <= waited["s"] < 1.5 and waited["refusal"].status == "OVERLOADED"
    assert sample(metrics, "llava_admission_rejected_total", {"reason": "queue_full"}) == 1
    assert sample(metrics, "llava_admission_rejected_total", {"reason": "wait_timeout"}) == 1
    assert not admission._waiters  # the timed-out waiter left the line


def test_retry_after_follows_how_long_calls_hold_their_slots():
    now = [0.0]
    admission = Admission(limit=1, queue=0, wait_s=60, metrics=Metrics(), clock=lambda: now[0])
    assert admission.retry_after() == 1
    for _ in range(30):
        with admission.slot():
            now[0] += 7.0  # each call holds its slot 7 s
    assert admission.retry_after() == 7
