"""What both engines share: one thread runs the loop, `submit` refuses once a stop
was asked for, and a stop drains within its grace period, then fails what is left.

An engine subclasses `EngineThread`, sets `tokenizer`, `eos_ids`, `settings` and
`metrics`, and implements `_loop()` (return once a requested stop has drained),
`_queued()` / `_enqueue(job)` (its waiting line) and `_leftovers()` (the jobs to fail
when the grace period ends).
"""
from __future__ import annotations

import logging
import threading

from . import errors
from .errors import ApiError
from .jobs import Job

log = logging.getLogger(__name__)
STOPPING = "the model process is shutting down; retry on another replica"
STOPPED = "the model process stopped before this request finished; retry"


class EngineThread:
    def __init__(self, on_fatal=None):
        self.on_fatal = on_fatal
        # Re-entrant: a signal handler on the engine's own thread may ask for a stop
        # while that thread holds the lock.
        self._cond = threading.Condition(threading.RLock())
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._grace: threading.Timer | None = None

    def start(self):
        """Run the loop on a background thread (tests, in-process use)."""
        self._thread = threading.Thread(target=self.run, name="engine", daemon=True)
        self._thread.start()
        return self

    def run(self) -> None:
        """Run the loop on the calling thread (the server's main thread) until a requested stop has drained."""
        try:
            self._loop()
            if self._grace is not None:  # drained within the grace period: nothing left to fail
                self._grace.cancel()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:  # a bug here would leave every caller hanging: exit so we get restarted
            log.critical("the engine thread failed; the process must restart", exc_info=True)
            if self.on_fatal:
                self.on_fatal()

    def submit(self, prepared, params, request_id: str, stream: bool = False, constraint=None) -> Job:
        """Queue a request; never blocks: a full line is a 429, a stopping engine a 503."""
        job = Job(prepared, params, request_id, stream, self.tokenizer, self.eos_ids, constraint)
        with self._cond:
            if self._stopping:
                raise ApiError("shutting_down", STOPPING)
            if self._queued() >= self.settings.max_queue:
                raise errors.queue_full(self.settings.max_queue)
            self._enqueue(job)
            self.metrics.waiting.inc()
            self._cond.notify()
        return job

    def request_stop(self, grace_s: float) -> None:
        """Refuse new work; queued and running jobs may finish within `grace_s`, then
        the rest fail. Returns at once (safe in a signal handler)."""
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            self._cond.notify_all()
        self._grace = threading.Timer(grace_s, self._expire)
        self._grace.daemon = True
        self._grace.start()

    def stop(self, grace_s: float) -> None:
        """request_stop, then wait for the background thread to drain."""
        self.request_stop(grace_s)
        if self._thread is not None:
            self._thread.join(timeout=grace_s + 5)

    def _expire(self) -> None:
        with self._cond:
            leftovers = self._leftovers()
            self._cond.notify_all()
        for job in leftovers:  # the loop sees them failed and frees their rows
            job.fail(ApiError("shutting_down", STOPPED))
            job.cancel()

    def _loop(self) -> None:
        raise NotImplementedError

    def _queued(self) -> int:
        """Requests waiting for the engine (called holding `_cond`)."""
        raise NotImplementedError

    def _enqueue(self, job: Job) -> None:
        """Add `job` to the waiting line (called holding `_cond`)."""
        raise NotImplementedError

    def _leftovers(self) -> list:
        """Jobs still unanswered when the grace period ends (called holding `_cond`)."""
        raise NotImplementedError
