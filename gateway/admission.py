"""Admission control: a bounded number of model calls in flight per worker, and a
bounded line of requests waiting for one, first come first served.

A request that finds every slot taken waits its turn: the model process batches
and queues too, and a Spring RestTemplate (or Spring AI, by default) does not
retry a 429, so refusing at once turns a short burst into failed calls. The line
is bounded in length (ADMISSION_QUEUE: past it, 429 at once) and in time
(ADMISSION_WAIT_SECONDS: past it, 429), so an overload is answered, never left
hanging. A freed slot goes to the longest waiter directly, never to a newcomer.
Retry-After is the recent average time a call holds its slot: about when one frees.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from contextlib import contextmanager

from .statuses import OVERLOADED, Refusal

QUEUE_FULL, WAIT_TIMEOUT = "queue_full", "wait_timeout"  # label values of llava_admission_rejected_total
# Weight of the newest call in the average hold time (Retry-After); ~the last 10 calls count.
_EWMA_WEIGHT = 0.2


class Admission:
    def __init__(self, limit: int, queue: int, wait_s: float, metrics, clock=time.monotonic):
        self.limit, self.queue, self.wait_s = limit, queue, wait_s
        self._metrics, self._clock = metrics, clock
        self._lock = threading.Lock()
        self._free = limit
        self._waiters: deque[threading.Event] = deque()
        self._hold_s = 1.0  # average time a call holds its slot

    @contextmanager
    def slot(self):
        self._acquire()
        started = self._clock()
        try:
            yield
        finally:
            self._release(self._clock() - started)

    def retry_after(self) -> int:
        return max(1, min(math.ceil(self._hold_s), math.ceil(self.wait_s) or 1))

    def _acquire(self) -> None:
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return
            if len(self._waiters) >= self.queue:
                raise self._refuse(QUEUE_FULL, f"the service is busy: {self.limit} model calls are running and "
                                               f"{len(self._waiters)} requests are waiting")
            turn = threading.Event()
            self._waiters.append(turn)
        self._metrics.admission_waiting.inc()
        started = self._clock()
        try:
            granted = turn.wait(self.wait_s)
            with self._lock:
                if not granted and not turn.is_set():
                    self._waiters.remove(turn)
                    raise self._refuse(WAIT_TIMEOUT, f"the service is busy: no model call slot freed up within "
                                                     f"{self.wait_s:g} s")
        finally:
            self._metrics.admission_waiting.dec()
            self._metrics.admission_wait.observe(self._clock() - started)

    def _release(self, held_s: float) -> None:
        with self._lock:
            self._hold_s += _EWMA_WEIGHT * (held_s - self._hold_s)
            if self._waiters:
                self._waiters.popleft().set()  # the slot passes straight to the longest waiter
            else:
                self._free += 1

    def _refuse(self, reason: str, why: str) -> Refusal:
        self._metrics.overloaded.labels(reason).inc()
        retry_after = self.retry_after()
        return Refusal(OVERLOADED, 429, f"{why}; retry in {retry_after} s", retry_after=retry_after,
                       code="rate_limit_exceeded")
