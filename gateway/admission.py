"""Admission control: a bounded number of model calls in flight per worker, and a
bounded line of requests waiting for one, shared fairly between API keys.

A request that finds every slot taken waits its turn: the model process batches
and queues too, and a Spring RestTemplate (or Spring AI, by default) does not
retry a 429, so refusing at once turns a short burst into failed calls. The line
is bounded in length (ADMISSION_QUEUE: past it, 429 at once) and in time
(ADMISSION_WAIT_SECONDS: past it, 429), so an overload is answered, never left
hanging. A freed slot goes to a waiter directly, never to a newcomer.
Retry-After is the recent average time a call holds its slot: about when one frees.

Fair share per tenant (issue 25: one key's burst of 300 filled the line, and every
other key got 429s). The tenant is the caller's API key (its tag, auth.py; one
tenant without API_KEYS, which is then first come first served as before):

- Slots: weighted fair queuing. A waiter's tag (its virtual finish time) is where
  its tenant's previous request in the line ended, or the current virtual time if
  later, plus 1/weight; a freed slot goes to the lowest tag. So two keys that both wait get slots in turn
  (in proportion to ADMISSION_WEIGHTS), and a key that arrives behind another's
  burst is served next, not after it.
- The line: when it is full, the newcomer takes the place of the newest waiter of
  the key that holds the most of it for its weight (that waiter gets the 429,
  `pushed_out`), unless the newcomer's key is that key. A burst only ever pushes
  itself out.

Written here rather than taken from a library: the fair-queuing libraries schedule
packets or asyncio tasks, not threads that wait with a deadline.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from contextlib import contextmanager

from .statuses import OVERLOADED, Refusal

# Label values of llava_admission_rejected_total.
QUEUE_FULL, WAIT_TIMEOUT, PUSHED_OUT = "queue_full", "wait_timeout", "pushed_out"
# Weight of the newest call in the average hold time (Retry-After); ~the last 10 calls count.
_EWMA_WEIGHT = 0.2
ANYONE = "-"  # the tenant of a caller that names none


class _Waiter:
    def __init__(self, tenant: str, tag: float, order: int):
        self.tenant, self.tag, self.order = tenant, tag, order
        self.turn = threading.Event()
        self.pushed_out = False


class Admission:
    def __init__(self, limit: int, queue: int, wait_s: float, metrics, clock=time.monotonic,
                 weights: dict[str, float] | None = None):
        self.limit, self.queue, self.wait_s = limit, queue, wait_s
        self._metrics, self._clock = metrics, clock
        self._weights = dict(weights or {})  # tenant tag -> weight (default 1)
        self._lock = threading.Lock()
        self._free = limit
        self._lines: dict[str, deque[_Waiter]] = {}  # per tenant, oldest first
        self._last_tag: dict[str, float] = {}        # where each tenant's newest waiter ends
        self._virtual = 0.0                          # the tag of the waiter granted last
        self._arrivals = 0                           # ties between equal tags go to the earlier arrival
        self._hold_s = 1.0  # average time a call holds its slot

    @property
    def waiting(self) -> int:
        return sum(len(line) for line in self._lines.values())

    @contextmanager
    def slot(self, tenant: str = ANYONE):
        self._acquire(tenant)
        started = self._clock()
        try:
            yield
        finally:
            self._release(self._clock() - started)

    def retry_after(self) -> int:
        return max(1, min(math.ceil(self._hold_s), math.ceil(self.wait_s) or 1))

    def _acquire(self, tenant: str) -> None:
        with self._lock:
            if self._free and not self.waiting:
                self._free -= 1
                return
            if self.waiting >= self.queue:
                self._make_room(tenant)  # or raises
            waiter = self._join(tenant)
        self._metrics.admission_waiting.inc()
        started = self._clock()
        try:
            granted = waiter.turn.wait(self.wait_s)
            with self._lock:
                if waiter.pushed_out:
                    raise self._refuse(PUSHED_OUT, "the service is busy: this API key has the most requests "
                                                   "waiting, and another key's request took this one's place")
                if not granted and not waiter.turn.is_set():
                    self._leave(waiter)
                    raise self._refuse(WAIT_TIMEOUT, f"the service is busy: no model call slot freed up within "
                                                     f"{self.wait_s:g} s")
        finally:
            self._metrics.admission_waiting.dec()
            self._metrics.admission_wait.observe(self._clock() - started)

    def _weight(self, tenant: str) -> float:
        return self._weights.get(tenant, 1.0)

    def _join(self, tenant: str) -> _Waiter:
        tag = max(self._virtual, self._last_tag.get(tenant, 0.0)) + 1.0 / self._weight(tenant)
        self._last_tag[tenant] = tag
        self._arrivals += 1
        waiter = _Waiter(tenant, tag, self._arrivals)
        self._lines.setdefault(tenant, deque()).append(waiter)
        return waiter

    def _leave(self, waiter: _Waiter) -> None:
        line = self._lines[waiter.tenant]
        line.remove(waiter)
        if not line:
            del self._lines[waiter.tenant]

    def _make_room(self, tenant: str) -> None:
        """The line is full: push out the newest waiter of the key holding the most of it
        for its weight, or refuse the newcomer if that key is its own."""
        def share(t: str, extra: int = 0) -> float:
            return (len(self._lines.get(t, ())) + extra) / self._weight(t)

        heaviest = max(self._lines, key=share, default=None)
        if heaviest is None or heaviest == tenant or share(heaviest) <= share(tenant, 1):
            raise self._refuse(QUEUE_FULL, f"the service is busy: {self.limit} model calls are running and "
                                           f"{self.waiting} requests are waiting")
        newest = self._lines[heaviest][-1]
        self._leave(newest)
        newest.pushed_out = True
        newest.turn.set()

    def _release(self, held_s: float) -> None:
        with self._lock:
            self._hold_s += _EWMA_WEIGHT * (held_s - self._hold_s)
            heads = [line[0] for line in self._lines.values()]
            if not heads:
                self._free += 1
                return
            nxt = min(heads, key=lambda w: (w.tag, w.order))
            self._leave(nxt)
            self._virtual = max(self._virtual, nxt.tag - 1.0 / self._weight(nxt.tenant))  # its start
            nxt.turn.set()  # the slot passes straight to it

    def _refuse(self, reason: str, why: str) -> Refusal:
        self._metrics.overloaded.labels(reason).inc()
        retry_after = self.retry_after()
        return Refusal(OVERLOADED, 429, f"{why}; retry in {retry_after} s", retry_after=retry_after,
                       code="rate_limit_exceeded")
