"""Admission control: a bounded number of model calls in flight per worker. Past
it a request is refused at once with 429 OVERLOADED + Retry-After, instead of
queueing without bound while the model falls further behind."""
from __future__ import annotations

import threading
from contextlib import contextmanager

from .statuses import OVERLOADED, Refusal

RETRY_AFTER_S = 1


class Admission:
    def __init__(self, limit: int, metrics):
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)
        self._metrics = metrics

    @contextmanager
    def slot(self):
        if not self._slots.acquire(blocking=False):
            self._metrics.overloaded.inc()
            raise Refusal(OVERLOADED, 429, f"the service is at its limit of {self.limit} concurrent model calls; "
                          f"retry in {RETRY_AFTER_S} s", retry_after=RETRY_AFTER_S)
        try:
            yield
        finally:
            self._slots.release()
