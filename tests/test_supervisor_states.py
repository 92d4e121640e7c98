"""The supervisor's state machine, driven with a fake clock and a fake process."""
import dataclasses
import logging
import signal

import pytest

from llava_common import exit_codes
from llava_common.settings import SettingsError
from llava_supervisor.settings import SupervisorSettings
from llava_supervisor.states import PATH_HEALTH, PATH_LIVE, Machine, State, describe_exit
from tests import model_contract as contract

SETTINGS = SupervisorSettings(start_stall_s=10.0, stop_grace_s=5.0, backoff_base_s=1.0, backoff_max_s=8.0,
                              stable_s=30.0, max_failed_starts=5, failure_threshold=3, tail_lines=2)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class FakeProcess:
    def __init__(self):
        self.calls, self.next_pid, self.spawn_error = [], 100, None
        self.lines = ["Traceback (most recent call last):", "  File \"x.py\"", "RuntimeError: boom"]

    def spawn(self):
        if self.spawn_error:
            raise self.spawn_error
        self.next_pid += 1
        self.calls.append(("spawn", self.next_pid))
        return self.next_pid

    def terminate(self):
        self.calls.append("terminate")

    def kill(self):
        self.calls.append("kill")

    def tail(self):
        return list(self.lines)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def proc():
    return FakeProcess()


def machine(clock, proc, rand=0.5, **changes):
    return Machine(dataclasses.replace(SETTINGS, **changes), proc, clock=clock, rand=lambda: rand)


def ready(clock, proc, **changes):
    m = machine(clock, proc, **changes)
    m.start()
    m.on_health(m.generation, 200, {"status": "healthy"})
    assert m.state is State.READY
    return m


def loading(step):
    """llava_server.py's /health while loading (tests/model_contract.py checks the real one)."""
    return contract.loading("m", step, elapsed_s=step * 1.7)


# ---- start ----

def test_start_spawns_and_turns_ready_on_health_200(clock, proc):
    m = machine(clock, proc)
    assert m.state is State.STOPPED and m.probe_path() is None
    m.start()
    assert m.state is State.STARTING and m.pid == 101 and proc.calls == [("spawn", 101)]
    assert m.probe_path() == PATH_HEALTH
    m.on_health(m.generation, 503, loading(1))
    m.on_health(m.generation, None, None)  # not listening yet
    assert m.state is State.STARTING
    clock.advance(3)
    m.on_health(m.generation, 200, {"status": "healthy"})
    assert m.state is State.READY and m.probe_path() == PATH_LIVE
    assert m.snapshot()["uptimeSeconds"] == 3.0 and m.restarts == 0


@pytest.mark.parametrize("body", [loading(1), {"status": "loading", "step": 1, "elapsedSeconds": 5}],
                         ids=["llava_server.py's shape", "another engine's: a top-level step"])
def test_stall_deadline_resets_on_progress_only(clock, proc, body):
    m = machine(clock, proc)
    m.start()
    for _ in range(3):  # progress keeps it alive well past one stall deadline
        clock.advance(9)
        if "progress" in body:
            body = {**body, "progress": {**body["progress"], "step": body["progress"]["step"] + 1}}
        else:
            body = {**body, "step": body["step"] + 1}
        m.on_health(m.generation, 503, body)
        m.tick()
        assert m.state is State.STARTING
    for _ in range(2):  # only elapsedSeconds moves: that is not progress
        clock.advance(5)
        m.on_health(m.generation, 503, {**body, "elapsedSeconds": clock.now})
        m.tick()
    assert m.state is State.UNHEALTHY and proc.calls[-1] == "terminate"


def test_stalled_start_is_killed_after_grace_and_counts_as_a_failure(clock, proc):
    m = machine(clock, proc)
    m.start()
    clock.advance(10)
    m.tick()
    assert m.state is State.UNHEALTHY
    clock.advance(4.9)
    m.tick()
    assert "kill" not in proc.calls
    clock.advance(0.2)
    m.tick()
    assert proc.calls[-1] == "kill"
    m.on_exit(-signal.SIGKILL)
    assert m.state is State.BACKOFF and m.failures == 1
    assert m.last_exit_reason == "killed by SIGKILL (sent by the supervisor after the grace period)"


# ---- liveness ----

def test_liveness_failures_below_threshold_and_success_resets_the_count(clock, proc):
    m = ready(clock, proc)
    for _ in range(5):
        m.on_live(m.generation, False, "no answer within 5s")
        m.on_live(m.generation, False, "no answer within 5s")
        m.on_live(m.generation, True)
    assert m.state is State.READY and "terminate" not in proc.calls


def test_liveness_threshold_replaces_the_child(clock, proc, caplog):
    m = ready(clock, proc)
    for _ in range(3):
        m.on_live(m.generation, False, "no answer within 5s")
    assert m.state is State.UNHEALTHY and proc.calls[-1] == "terminate"
    assert "/health/live failed 3 times in a row (no answer within 5s)" in caplog.text
    m.on_exit(0)  # it honoured SIGTERM
    assert m.state is State.BACKOFF and "kill" not in proc.calls
    clock.advance(1.0)
    m.tick()
    assert m.state is State.STARTING and m.pid == 102 and m.restarts == 1


def test_probe_answers_for_an_older_child_are_ignored(clock, proc):
    m = ready(clock, proc)
    old = m.generation
    m.on_exit(1)
    clock.advance(1)
    m.tick()
    assert m.state is State.STARTING
    m.on_health(old, 200, {"status": "healthy"})
    assert m.state is State.STARTING
    m.on_health(m.generation, 200, {"status": "healthy"})
    for _ in range(5):
        m.on_live(old, False, "stale")
    assert m.state is State.READY


# ---- crashes and backoff ----

def test_exits_back_off_exponentially_up_to_the_max(clock, proc):
    m = machine(clock, proc, max_failed_starts=100)
    m.start()
    delays = []
    for _ in range(6):
        m.on_exit(1)
        assert m.state is State.BACKOFF
        start = clock.now
        while m.state is State.BACKOFF:
            clock.advance(0.01)
            m.tick()
        delays.append(round(clock.now - start, 1))
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


@pytest.mark.parametrize("rand, expected", [(0.0, 0.8), (1.0, 1.2)])
def test_backoff_jitter_spreads_delays(clock, proc, rand, expected):
    m = machine(clock, proc, rand=rand)
    m.start()
    m.on_exit(1)
    assert m.backoff_delay() == pytest.approx(expected)


def test_jitter_never_exceeds_the_max(clock, proc):
    m = machine(clock, proc, rand=1.0, max_failed_starts=100)
    m.failures = 10
    assert m.backoff_delay() == 8.0


def test_staying_ready_resets_failures_and_backoff(clock, proc, caplog):
    caplog.set_level(logging.INFO)
    m = machine(clock, proc)
    m.start()
    for _ in range(3):
        m.on_exit(1)
        clock.advance(m.backoff_delay() + 0.01)
        m.tick()
    m.on_health(m.generation, 200, {})
    assert m.failures == 3
    clock.advance(29)
    m.tick()
    assert m.failures == 3
    clock.advance(1)
    m.tick()
    assert m.failures == 0 and "failure count and backoff reset" in caplog.text
    m.on_exit(-signal.SIGKILL)
    assert m.state is State.BACKOFF and m.backoff_delay() == 1.0


def test_exit_is_logged_with_cause_and_last_lines(clock, proc, caplog):
    m = ready(clock, proc)
    m.on_exit(-signal.SIGKILL)
    assert "child (pid 101) killed by SIGKILL (perhaps out of memory" in caplog.text
    assert "    RuntimeError: boom" in caplog.text and "  File" in caplog.text
    assert "Traceback" not in caplog.text  # SUPERVISOR_TAIL_LINES=2
    snap = m.snapshot()
    assert snap["lastExitCode"] == -9 and snap["pid"] is None and snap["state"] == "BACKOFF"


# ---- FATAL ----

@pytest.mark.parametrize("get_ready", [False, True])
def test_boot_error_is_fatal_at_once(clock, proc, get_ready):
    m = ready(clock, proc) if get_ready else machine(clock, proc)
    if not get_ready:
        m.start()
    m.on_exit(exit_codes.BOOT_ERROR)
    assert m.state is State.FATAL and m.finished
    assert "boot error" in m.fatal_reason and [c for c in proc.calls if c[0] == "spawn"] == [("spawn", 101)]


def test_too_many_failed_starts_in_a_row_is_fatal(clock, proc):
    m = machine(clock, proc, max_failed_starts=3)
    m.start()
    for attempt in range(3):
        assert m.state is State.STARTING and not m.finished
        m.on_exit(1)
        clock.advance(100)
        m.tick()
    assert m.state is State.FATAL and m.finished and m.restarts == 2
    assert "3 failures in a row" in m.fatal_reason


def test_a_child_that_cannot_be_executed_is_fatal(clock, proc):
    proc.spawn_error = FileNotFoundError(2, "No such file or directory", "llava_serve.py")
    m = machine(clock, proc)
    m.start()
    assert m.state is State.FATAL and "cannot start the child" in m.fatal_reason


# ---- stop and restart ----

def test_stop_terminates_then_stopped(clock, proc):
    m = ready(clock, proc)
    m.stop()
    assert m.state is State.STOPPING and proc.calls[-1] == "terminate" and not m.finished
    m.on_exit(0)
    assert m.state is State.STOPPED and m.finished and m.failures == 0


def test_stop_kills_after_grace(clock, proc):
    m = ready(clock, proc)
    m.stop()
    clock.advance(5)
    m.tick()
    assert proc.calls[-1] == "kill"
    m.tick()
    assert proc.calls.count("kill") == 1
    m.on_exit(-signal.SIGKILL)
    assert m.state is State.STOPPED and m.finished


def test_second_stop_kills_at_once(clock, proc):
    m = ready(clock, proc)
    m.stop()
    m.stop()
    assert proc.calls[-2:] == ["terminate", "kill"]


def test_stop_while_unhealthy_keeps_the_grace_deadline(clock, proc):
    m = ready(clock, proc)
    for _ in range(3):
        m.on_live(m.generation, False, "x")
    clock.advance(4)
    m.stop()
    assert m.state is State.STOPPING and proc.calls.count("terminate") == 1
    clock.advance(1)
    m.tick()
    assert proc.calls[-1] == "kill"
    m.on_exit(-signal.SIGKILL)
    assert m.state is State.STOPPED and m.finished


def test_stop_during_backoff_and_before_start(clock, proc):
    m = ready(clock, proc)
    m.on_exit(1)
    m.stop()
    assert m.state is State.STOPPED and m.finished
    clock.advance(100)
    m.tick()
    assert m.state is State.STOPPED
    idle = machine(clock, FakeProcess())
    idle.stop()
    idle.start()
    assert idle.finished and idle.pid is None


def test_restart_replaces_the_child_with_a_fresh_failure_budget(clock, proc):
    m = ready(clock, proc)
    m.failures = 4
    m.restart()
    assert m.state is State.STOPPING and proc.calls[-1] == "terminate"
    m.on_exit(0)
    assert m.state is State.STARTING and m.pid == 102 and m.failures == 0 and m.restarts == 1


def test_restart_during_backoff_starts_now(clock, proc):
    m = ready(clock, proc)
    m.on_exit(1)
    m.restart()
    assert m.state is State.STARTING and m.pid == 102


def test_stop_wins_over_a_pending_restart(clock, proc):
    m = ready(clock, proc)
    m.restart()
    m.stop()
    m.restart()
    m.on_exit(0)
    assert m.state is State.STOPPED and m.finished and m.pid is None


# ---- exit causes and settings ----

@pytest.mark.parametrize("code, expected", [
    (-9, "killed by SIGKILL (perhaps out of memory"),
    (-15, "killed by SIGTERM"),
    (-11, "killed by SIGSEGV (a crash in native code"),
    (3, "exited with code 3 (boot error"),
    (137, "exited with code 137 (128+SIGKILL: perhaps out of memory"),
    (1, "exited with code 1 (crash)"),
    (0, "exited with code 0 (ok)"),
])
def test_describe_exit(code, expected):
    assert describe_exit(code).startswith(expected)


@pytest.mark.parametrize("env, message", [
    ({"SUPERVISOR_PORT": "http"}, "SUPERVISOR_PORT='http': expected a whole number"),
    ({"MODEL_PORT": "0"}, "MODEL_PORT='0': must be >= 1"),
    ({"SUPERVISOR_POLL_TIMEOUT_SECONDS": "nan"}, "expected a finite number"),
    ({"SUPERVISOR_FAILURE_THRESHOLD": "0"}, "SUPERVISOR_FAILURE_THRESHOLD='0': must be >= 1"),
    ({"SUPERVISOR_BACKOFF_BASE_SECONDS": "10", "SUPERVISOR_BACKOFF_MAX_SECONDS": "5"},
     "SUPERVISOR_BACKOFF_MAX_SECONDS=5 must be >= SUPERVISOR_BACKOFF_BASE_SECONDS=10"),
])
def test_bad_settings_are_named(env, message):
    with pytest.raises(SettingsError, match="invalid settings") as err:
        SupervisorSettings.from_env(env)
    assert message in str(err.value)


@pytest.mark.parametrize("host, url", [("0.0.0.0", "http://127.0.0.1:9"), ("::", "http://[::1]:9"),
                                       ("10.1.2.3", "http://10.1.2.3:9")])
def test_probes_reach_a_wildcard_listener_on_loopback(host, url):
    assert SupervisorSettings.from_env({"MODEL_HOST": host, "MODEL_PORT": "9"}).probe_base_url == url
