"""A circuit breaker per model replica: pybreaker's state machine, storage and
listeners, through its public API only, without its lock around the call.

pybreaker's `call()` holds the breaker's lock while the wrapped function runs
(danielfm/pybreaker#55, still open), so every model call through one breaker
would wait for the previous one: a worker would serve one request at a time. Here
the call runs outside; its outcome is then replayed through `call()`, which counts
it and moves the state (closed -> open -> half-open -> closed) exactly as pybreaker
would. One trial call at a time once the reset timeout has passed. The storage is
made here and handed to pybreaker, so when it opened is read from its public
`opened_at`.
"""
from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import pybreaker

log = logging.getLogger(__name__)

# Gauge values of llava_breaker_state.
STATE_VALUES = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1, pybreaker.STATE_OPEN: 2}
CALL, TRIAL = "call", "trial"


class _StateGauge(pybreaker.CircuitBreakerListener):
    def __init__(self, gauge):
        self._gauge = gauge

    def state_change(self, cb, old_state, new_state):
        self._gauge.labels(cb.name).set(STATE_VALUES[new_state.name])
        log.warning("circuit breaker for %s: %s -> %s", cb.name, old_state.name if old_state else "-", new_state.name)


class Breaker:
    def __init__(self, name: str, fail_max: int, reset_s: float, gauge, exclude=()):
        self._storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        self.cb = pybreaker.CircuitBreaker(fail_max=fail_max, reset_timeout=reset_s, name=name,
                                           exclude=list(exclude), listeners=[_StateGauge(gauge)],
                                           state_storage=self._storage, throw_new_error_on_trip=False)
        gauge.labels(name).set(0)
        self._trial = threading.Lock()

    @property
    def state(self) -> str:
        return self.cb.current_state

    def refuses(self) -> bool:
        """Open and still within its reset timeout."""
        return self.cb.current_state == pybreaker.STATE_OPEN and self._seconds_left() > 0

    def admit(self) -> str | None:
        """CALL, TRIAL (the one call after the reset timeout) or None (open)."""
        if self.cb.current_state != pybreaker.STATE_OPEN:
            return CALL
        if self.refuses() or not self._trial.acquire(blocking=False):
            return None
        return TRIAL

    def record(self, admitted: str, failure: BaseException | None) -> None:
        try:
            self.cb.call(_replay, failure)
        except pybreaker.CircuitBreakerError:
            pass  # it opened while this call ran: the outcome no longer matters
        except BaseException as exc:
            if exc is not failure:
                raise
        finally:
            if admitted == TRIAL:
                self._trial.release()

    def seconds_until_trial(self) -> int:
        return max(1, int(self._seconds_left() + 0.999))

    def _seconds_left(self) -> float:
        opened_at = self._storage.opened_at
        if opened_at is None:
            return 0.0
        return (opened_at + timedelta(seconds=self.cb.reset_timeout) - datetime.now(UTC)).total_seconds()


def _replay(failure: BaseException | None) -> None:
    if failure is not None:
        raise failure
