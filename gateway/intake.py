"""Intake: the work whose memory a client decides (reading a large body, fetching a
remote image, decoding and normalising images) runs in one of DECODE_CONCURRENCY
slots per worker, so a worker's memory is bounded by its slots, not by how many
clients send large images at once. The largest allowed PNG takes ~160 MB while it
is decoded (settings.py).

A request waits at most WAIT_S for a slot (the work in one takes well under a
second), then gets 429; the spare-thread rule at the boundary bounds how many may
wait. Once no slot is held, at the end of a request that held one, malloc's free
memory goes back to the system (`settle()`, memory.py).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, TypeVar

from . import memory
from .statuses import OVERLOADED, Refusal

T = TypeVar("T")
WAIT_S = 10.0
BUSY = "decode_busy"  # label value of llava_admission_rejected_total
# A body over this is read only inside a slot; smaller ones are read at once.
LARGE_BODY_BYTES = 256 * 1024


class Intake:
    def __init__(self, slots: int, metrics, trim: Callable[[], object] = memory.trim):
        self.slots = slots
        self._metrics, self._trim = metrics, trim
        self._free = threading.Semaphore(slots)
        self._lock = threading.Lock()
        self._held = 0
        self._dirty = False  # a slot was given back since the last trim

    @contextmanager
    def slot(self, now: bool = False):
        """A `Held` slot for one request: taken now, or later with `take()`; given
        back by `releasing()`'s function, or at the end of the block."""
        held = Held(self)
        if now:
            held.take()
        try:
            yield held
        finally:
            held.give_back()

    def _take(self) -> None:
        if not self._free.acquire(timeout=WAIT_S):
            self._metrics.overloaded.labels(BUSY).inc()
            raise Refusal(OVERLOADED, 429, f"the service is busy: {self.slots} requests are decoding images here; "
                          "retry in 1 s", retry_after=1, code="rate_limit_exceeded")
        with self._lock:
            self._held += 1

    def _give_back(self) -> None:
        with self._lock:
            self._held -= 1
            self._dirty = True
        self._free.release()

    def settle(self) -> None:
        """At the end of a request (its large objects are gone): trim if no slot is held."""
        with self._lock:
            due = self._dirty and self._held == 0
            self._dirty = self._dirty and not due
        if due:
            self._trim()


class Held:
    def __init__(self, intake: Intake):
        self._intake, self._held = intake, False

    def take(self) -> None:
        if not self._held:
            self._intake._take()
            self._held = True

    def give_back(self) -> None:
        if self._held:
            self._held = False
            self._intake._give_back()

    def releasing(self, fn: Callable[[], T]) -> Callable[[], T]:
        """`fn`, giving the slot back (if held) as soon as it returns: once the upstream
        request is built, waiting for the model takes no slot."""
        def run() -> T:
            try:
                return fn()
            finally:
                self.give_back()
        return run
