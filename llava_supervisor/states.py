"""The life of the supervised child as a state machine (supervisord style).

`Machine` does no I/O of its own: the runner feeds it events (a probe answered, the
child exited, a signal arrived, time passed) and it acts through a small process
port (spawn / terminate / kill / tail). Time comes from an injected clock, so unit
tests drive every transition with a fake clock and a fake process.

    STOPPED --start--> STARTING --/health 200--> READY
    STARTING --no loading progress for START_STALL--> UNHEALTHY
    READY --FAILURE_THRESHOLD failed /health/live in a row--> UNHEALTHY
    UNHEALTHY: SIGTERM to the group, STOP_GRACE, SIGKILL; on exit -> BACKOFF
    STARTING / READY --child exited--> BACKOFF --delay--> STARTING
    any exit with BOOT_ERROR, or MAX_FAILED_STARTS failures in a row --> FATAL
    stop (SIGTERM/SIGINT): --> STOPPING --exit--> STOPPED
    restart (SIGHUP): --> STOPPING --exit--> STARTING
"""
from __future__ import annotations

import enum
import logging
import random
import signal
import time
from typing import Callable, Protocol

from llava_common import exit_codes

log = logging.getLogger("llava_supervisor")

# Each backoff delay is spread by +-20% so replicas that failed together do not
# restart in lockstep.
BACKOFF_JITTER = 0.2
PATH_HEALTH = "/health"
PATH_LIVE = "/health/live"

_SIGNAL_HINTS = {
    signal.SIGKILL: "perhaps out of memory: look for the kernel's OOM killer in `dmesg`",
    signal.SIGSEGV: "a crash in native code (CUDA, driver or a C extension)",
    signal.SIGBUS: "a crash in native code (CUDA, driver or a C extension)",
    signal.SIGABRT: "aborted by native code (a failed assertion or a fatal CUDA error)",
}


class State(str, enum.Enum):
    STARTING = "STARTING"
    READY = "READY"
    UNHEALTHY = "UNHEALTHY"
    BACKOFF = "BACKOFF"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    FATAL = "FATAL"


# state -> (meaning, next): the table of docs/reference/codes.md (`make docs`).
MEANINGS = {
    State.STARTING: ("Child spawned; `/health` is polled until it answers 200. The start deadline is a *stall* "
                     "deadline: it restarts whenever `/health` reports new loading progress (a changed `progress` "
                     "object, or any changed field other than `elapsedSeconds`), so a 7B model may take minutes to "
                     "load.",
                     "`READY`; `UNHEALTHY` after `SUPERVISOR_START_STALL_SECONDS` without progress; `BACKOFF` / "
                     "`FATAL` if it exits"),
    State.READY: ("`/health` answered 200; `/health/live` is polled. After `SUPERVISOR_STABLE_SECONDS` in `READY` the "
                  "start counts as good: the failure count and the backoff reset.",
                  "`UNHEALTHY` after `SUPERVISOR_FAILURE_THRESHOLD` failed probes in a row; `BACKOFF` / `FATAL` if "
                  "it exits"),
    State.UNHEALTHY: ("The child stalled while starting or stopped answering (hung, deadlocked, SIGSTOPped): SIGTERM "
                      "(then SIGCONT) to its group, `SUPERVISOR_STOP_GRACE_SECONDS`, then SIGKILL.",
                      "`BACKOFF` / `FATAL` when it has exited"),
    State.BACKOFF: ("The child exited unexpectedly; waiting `min(BACKOFF_MAX, BACKOFF_BASE x 2^(failures-1))` "
                    "±20% jitter.", "`STARTING`"),
    State.STOPPING: ("Stop (SIGTERM/SIGINT) or restart (SIGHUP) requested: SIGTERM (then SIGCONT) to the group, the "
                     "grace period, then SIGKILL.", "`STOPPED`, or `STARTING` on a restart"),
    State.STOPPED: ("No child. After a stop request the supervisor exits 0.", "—"),
    State.FATAL: ("Given up: the child exited with the boot-error code 3, failed `SUPERVISOR_MAX_FAILED_STARTS` "
                  "times in a row, or could not be executed. The supervisor exits with code 4 "
                  "(exit_codes.FATAL).", "—"),
}


class ProcessPort(Protocol):
    def spawn(self) -> int: ...          # the new child's pid; OSError if it cannot be started
    def terminate(self) -> None: ...     # SIGTERM to the child's process group
    def kill(self) -> None: ...          # SIGKILL to the child's process group
    def tail(self) -> list[str]: ...     # the last output lines of the latest child


def describe_exit(returncode: int, killed_by_supervisor: bool = False) -> str:
    """The probable cause of an exit, for logs (`returncode` as subprocess reports it)."""
    if returncode < 0:
        sig = _signal_name(-returncode)
        if -returncode == signal.SIGKILL and killed_by_supervisor:
            return f"killed by {sig} (sent by the supervisor after the grace period)"
        hint = _SIGNAL_HINTS.get(-returncode)
        return f"killed by {sig}" + (f" ({hint})" if hint else "")
    if returncode > 128 and returncode - 128 < signal.NSIG:  # a shell reporting its own child's signal
        sig = _signal_name(returncode - 128)
        hint = _SIGNAL_HINTS.get(returncode - 128)
        return f"exited with code {returncode} (128+{sig}" + (f": {hint})" if hint else ")")
    if returncode == exit_codes.BOOT_ERROR:
        return f"exited with code {returncode} (boot error: it cannot start with this configuration)"
    return f"exited with code {returncode} ({exit_codes.NAMES.get(returncode, 'crash')})"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class Machine:
    def __init__(self, settings, process: ProcessPort, clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random):
        self.settings, self.process, self.clock, self.rand = settings, process, clock, rand
        self.state = State.STOPPED
        self.state_since = clock()
        self.pid: int | None = None
        self.generation = 0          # which child probe results belong to
        self.restarts = 0            # spawns after the first one
        self.failures = 0            # unplanned exits / replacements since a child was last stable
        self.last_exit_code: int | None = None
        self.last_exit_reason = ""
        self.fatal_reason = ""
        self.started_at: float | None = None
        self.stop_requested = False
        self._deadline: float | None = None   # the current state's one deadline: stall, grace or backoff
        self._stable_at: float | None = None
        self._live_failures = 0
        self._progress: object = _NO_PROGRESS
        self._killed = False
        self._restart_after_stop = False

    # ---- commands ----

    def start(self) -> None:
        if self.state is State.STOPPED and not self.stop_requested:
            self._spawn()

    def stop(self) -> None:
        """SIGTERM / SIGINT: stop the child; a second request while stopping kills it now."""
        already = self.stop_requested
        self.stop_requested, self._restart_after_stop = True, False
        if self.state in (State.STARTING, State.READY):
            self._terminate(State.STOPPING, "stop requested")
        elif self.state is State.UNHEALTHY:
            self._enter(State.STOPPING, "stop requested")  # already terminating: keep its grace deadline
        elif self.state is State.STOPPING and already and not self._killed:
            log.warning("second stop request: killing the child (pid %s) now", self.pid)
            self._kill()
        elif self.state is State.BACKOFF:
            self._enter(State.STOPPED, "stop requested")

    def restart(self) -> None:
        """SIGHUP: replace the child (new weights, new settings) with a fresh failure budget."""
        if self.stop_requested or self.state is State.FATAL:
            return
        self._restart_after_stop = True
        if self.state in (State.STARTING, State.READY):
            self._terminate(State.STOPPING, "restart requested")
        elif self.state is State.UNHEALTHY:
            self._enter(State.STOPPING, "restart requested")
        elif self.state in (State.BACKOFF, State.STOPPED):
            self.failures = 0
            self._spawn()

    # ---- observations ----

    def probe_path(self) -> str | None:
        """Which endpoint the runner should poll now, if any."""
        return {State.STARTING: PATH_HEALTH, State.READY: PATH_LIVE}.get(self.state)

    def on_health(self, generation: int, status: int | None, body: object) -> None:
        if generation != self.generation or self.state is not State.STARTING:
            return  # a late answer from a previous child or state
        if status == 200:
            self._stable_at = self.clock() + self.settings.stable_s
            self._live_failures = 0
            self._enter(State.READY, f"/health answered 200 after {self.clock() - self.started_at:.1f}s")
            return
        progress = _progress_of(body)
        if progress is not None and progress != self._progress:
            self._progress = progress
            self._deadline = self.clock() + self.settings.start_stall_s
            log.debug("start-up progress: %s", progress)

    def on_live(self, generation: int, ok: bool, detail: str = "") -> None:
        if generation != self.generation or self.state is not State.READY:
            return
        if ok:
            self._live_failures = 0
            return
        self._live_failures += 1
        threshold = self.settings.failure_threshold
        log.warning("liveness probe failed (%d/%d): %s", self._live_failures, threshold, detail)
        if self._live_failures >= threshold:
            self._terminate(State.UNHEALTHY, f"{PATH_LIVE} failed {threshold} times in a row ({detail})")

    def on_exit(self, returncode: int) -> None:
        if self.pid is None:
            return
        planned = self.state is State.STOPPING
        pid, reason = self.pid, describe_exit(returncode, self._killed)
        self.pid, self.started_at, self._deadline = None, None, None
        self.last_exit_code, self.last_exit_reason = returncode, reason
        if planned:
            log.info("child (pid %d) %s", pid, reason)
            if self._restart_after_stop:
                self._restart_after_stop, self.failures = False, 0
                self._spawn()
            else:
                self._enter(State.STOPPED, "child stopped")
            return
        keep = self.settings.tail_lines
        tail = self.process.tail()[-keep:] if keep else []
        log.error("child (pid %d) %s%s", pid, reason,
                  "; last output:\n" + "\n".join("    " + line for line in tail) if tail else "")
        self.failures += 1
        if returncode == exit_codes.BOOT_ERROR:
            self._fatal(f"the child {reason}; restarting it would not help")
        elif self.failures >= self.settings.max_failed_starts:
            self._fatal(f"{self.failures} failures in a row without a stable start (last: {reason})")
        else:
            delay = self.backoff_delay()
            self._deadline = self.clock() + delay
            self._enter(State.BACKOFF, f"restart {self.failures} in {delay:.1f}s")

    def tick(self) -> None:
        """Act on whichever deadline of the current state has passed."""
        now = self.clock()
        if self.state is State.READY and self._stable_at is not None and now >= self._stable_at:
            self._stable_at = None
            if self.failures:
                log.info("child stable for %.0fs: failure count and backoff reset", self.settings.stable_s)
            self.failures = 0
        if self._deadline is None or now < self._deadline:
            return
        if self.state is State.STARTING:
            self._terminate(State.UNHEALTHY,
                            f"no start-up progress on {PATH_HEALTH} for {self.settings.start_stall_s:g}s")
        elif self.state in (State.UNHEALTHY, State.STOPPING) and not self._killed:
            log.warning("child (pid %s) did not exit within %.1fs of SIGTERM: SIGKILL to its group",
                        self.pid, self.settings.stop_grace_s)
            self._kill()
        elif self.state is State.BACKOFF:
            self._spawn()

    # ---- queries ----

    @property
    def finished(self) -> bool:
        """The supervisor's work is over: it should exit."""
        return self.state is State.FATAL or (self.state is State.STOPPED and self.stop_requested)

    def backoff_delay(self) -> float:
        s = self.settings
        delay = min(s.backoff_max_s, s.backoff_base_s * 2 ** max(0, self.failures - 1))
        return min(s.backoff_max_s, delay * (1 + BACKOFF_JITTER * (2 * self.rand() - 1)))

    def snapshot(self) -> dict:
        now = self.clock()
        return {"state": self.state.value, "pid": self.pid, "restarts": self.restarts,
                "lastExitCode": self.last_exit_code, "lastExitReason": self.last_exit_reason or None,
                "uptimeSeconds": round(now - self.started_at, 3) if self.started_at is not None else 0.0,
                "stateSeconds": round(now - self.state_since, 3), "consecutiveFailures": self.failures,
                "fatalReason": self.fatal_reason or None}

    # ---- transitions ----

    def _enter(self, state: State, why: str) -> None:
        log.log(_LOG_LEVELS.get(state, logging.INFO), "%s -> %s: %s", self.state.value, state.value, why)
        self.state, self.state_since = state, self.clock()

    def _spawn(self) -> None:
        try:
            pid = self.process.spawn()
        except OSError as exc:
            self._fatal(f"cannot start the child: {exc}")
            return
        if self.generation:
            self.restarts += 1
        self.generation += 1
        self.pid, self.started_at = pid, self.clock()
        self._deadline = self.started_at + self.settings.start_stall_s
        self._progress, self._killed, self._stable_at = _NO_PROGRESS, False, None
        self._enter(State.STARTING, f"spawned pid {pid}")

    def _terminate(self, state: State, why: str) -> None:
        self.process.terminate()
        self._deadline = self.clock() + self.settings.stop_grace_s
        self._enter(state, f"{why}: SIGTERM to pid {self.pid}'s group")

    def _kill(self) -> None:
        self.process.kill()
        self._killed = True

    def _fatal(self, why: str) -> None:
        self.fatal_reason = why
        self._deadline = None
        self._enter(State.FATAL, f"giving up: {why}")


_NO_PROGRESS = object()
_LOG_LEVELS = {State.UNHEALTHY: logging.WARNING, State.BACKOFF: logging.WARNING, State.FATAL: logging.ERROR}


def _progress_of(body: object) -> object | None:
    """What counts as loading progress in a 503 /health body: its `progress` object
    when it has one, else the whole body less `elapsedSeconds` (which always moves)."""
    if not isinstance(body, dict):
        return None
    if "progress" in body:
        return body["progress"]
    return {k: v for k, v in body.items() if k != "elapsedSeconds"}
