"""Admission in isolation (gateway/admission.py): model call slots handed out first
come first served within a tenant and fairly between tenants, a bounded line of
waiters that one tenant's burst cannot fill for the others, a bounded wait,
Retry-After from how long calls hold their slots, and the metrics that say so."""
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
    assert admission._free == 1 and not admission.waiting


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
    wait_until(lambda: admission.waiting == 1)
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
    assert not admission.waiting  # the timed-out waiter left the line


def test_retry_after_follows_how_long_calls_hold_their_slots():
    now = [0.0]
    admission = Admission(limit=1, queue=0, wait_s=60, metrics=Metrics(), clock=lambda: now[0])
    assert admission.retry_after() == 1
    for _ in range(30):
        with admission.slot():
            now[0] += 7.0  # each call holds its slot 7 s
    assert admission.retry_after() == 7


class Line:
    """One slot held by a holder thread; waiters of given tenants join in order; then
    the slot is released and the order in which waiters got it is recorded."""

    def __init__(self, queue: int = 100, weights: dict | None = None):
        self.metrics = Metrics()
        self.admission = Admission(limit=1, queue=queue, wait_s=10, metrics=self.metrics, weights=weights)
        self.release, self.order, self.refused, self.threads = threading.Event(), [], [], []
        holder = threading.Thread(target=self._hold)
        holder.start()
        self.threads.append(holder)
        wait_until(lambda: self.admission._free == 0)

    def _hold(self):
        with self.admission.slot("holder"):
            self.release.wait(10)

    def join(self, tenant: str, name: str) -> None:
        def waiter():
            try:
                with self.admission.slot(tenant):
                    self.order.append(name)
            except Refusal as refusal:
                self.refused.append((name, refusal))
        before = sample(self.metrics, "llava_admission_waiting_requests") + len(self.refused)
        self.threads.append(threading.Thread(target=waiter))
        self.threads[-1].start()
        wait_until(lambda: sample(self.metrics, "llava_admission_waiting_requests") + len(self.refused) > before)

    def run(self) -> list[str]:
        self.release.set()
        for thread in self.threads:
            thread.join(10)
        return self.order


def test_a_key_behind_another_keys_burst_is_served_next_then_in_turn():
    """Issue 25: A's burst of 6 waits first; B's 3 arrive after it. Slots alternate
    A, B, A, B, ... (B is not served after A's whole burst), each key in its own order."""
    line = Line()
    for i in range(6):
        line.join("A", f"a{i}")
    for i in range(3):
        line.join("B", f"b{i}")
    assert line.run() == ["a0", "b0", "a1", "b1", "a2", "b2", "a3", "a4", "a5"]


def test_weights_give_a_key_its_share_of_slots():
    """ADMISSION_WEIGHTS: B at weight 2 gets two slots for each of A's while both wait."""
    line = Line(weights={"B": 2.0})
    for i in range(4):
        line.join("A", f"a{i}")
    for i in range(4):
        line.join("B", f"b{i}")
    assert line.run() == ["b0", "a0", "b1", "b2", "a1", "b3", "a2", "a3"]


def test_one_keys_burst_cannot_fill_the_line_for_another():
    """A line of 4, full of A's burst: B's newcomers take the places of A's newest
    waiters (429 `pushed_out` for those), never a 429 of their own; A's own newcomer
    is refused (queue_full) as before. Pushing stops at B's fair half of the line."""
    line = Line(queue=4)
    for i in range(4):
        line.join("A", f"a{i}")
    line.join("A", "a4")  # full, and A holds it all: refused
    for i in range(3):
        line.join("B", f"b{i}")  # b0, b1 push out a3, a2; b2 finds the line shared evenly: refused
    served = line.run()
    assert sorted(name for name, _ in line.refused) == ["a2", "a3", "a4", "b2"]
    assert all(refusal.http == 429 and refusal.retry_after for _, refusal in line.refused)
    assert served == ["a0", "b0", "a1", "b1"]
    assert sample(line.metrics, "llava_admission_rejected_total", {"reason": "pushed_out"}) == 2
    assert sample(line.metrics, "llava_admission_rejected_total", {"reason": "queue_full"}) == 2


def test_one_key_cannot_hold_every_thread_of_a_worker():
    """Issue 25: with several keys, one key holds at most `per_tenant` of a worker's
    threads (GATEWAY_THREADS - 4 - MAX_UPSTREAM_IN_FLIGHT), so another key's requests
    still reach the admission line, which is fair; the worker's limit still holds."""
    from gateway.boundary import Busy

    metrics = Metrics()
    busy = Busy(limit=6, metrics=metrics, per_tenant=4)
    for _ in range(4):
        busy.enter("A")
    with pytest.raises(Refusal):
        busy.enter("A")
    busy.enter("B")
    busy.enter("B")
    with pytest.raises(Refusal):
        busy.enter("C")  # the worker's own limit
    busy.leave("A")
    busy.enter("C")
    assert busy.count == 6 and sample(metrics, "llava_admission_rejected_total", {"reason": "busy"}) == 2
