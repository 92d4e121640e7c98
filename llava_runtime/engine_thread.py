"""What both engines share: one thread runs the loop, `submit` refuses once a stop
was asked for, and a stop drains within its grace period, then fails what is left.

An engine subclasses `EngineThread`, implements `_loop()` (return once a requested
stop has drained) and `_leftovers()` (the jobs to fail when the grace period ends).
"""
from __future__ import annotations

import logging
import threading

from .errors import ApiError

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

    def start(self):
        """Run the loop on a background thread (tests, in-process use)."""
        self._thread = threading.Thread(target=self.run, name="engine", daemon=True)
        self._thread.start()
        return self

    def run(self) -> None:
        """Run the loop on the calling thread (the server's main thread) until a requested stop has drained."""
        try:
            self._loop()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:  # a bug here would leave every caller hanging: exit so we get restarted
            log.critical("the engine thread failed; the process must restart", exc_info=True)
            if self.on_fatal:
                self.on_fatal()

    def _refuse_if_stopping(self) -> None:
        """Call holding `_cond`, in `submit`."""
        if self._stopping:
            raise ApiError("shutting_down", STOPPING)

    def request_stop(self, grace_s: float) -> None:
        """Refuse new work; queued and running jobs may finish within `grace_s`, then
        the rest fail. Returns at once (safe in a signal handler)."""
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            self._cond.notify_all()
        timer = threading.Timer(grace_s, self._expire)
        timer.daemon = True
        timer.start()

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

    def _leftovers(self) -> list:
        """Jobs still unanswered when the grace period ends (called holding `_cond`)."""
        raise NotImplementedError
