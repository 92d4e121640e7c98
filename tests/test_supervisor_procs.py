"""supervisor.py as a real process around small fixture children (tests/fixtures/
fake_model.py): real signals, real HTTP on free loopback ports."""
import os
import re
import signal
import socket
import subprocess
import sys

import pytest
import requests

from llava_common import exit_codes
from tests.fixtures.supervised import Supervised, alive, fake, wait_gone
from tests.procs import ROOT, child_env, free_port, python

pytestmark = pytest.mark.slow


def test_ready_status_metrics_output_and_sigterm_exits_0():
    with Supervised(fake("healthy")) as sup:
        snap = sup.wait_ready()
        pid = snap["pid"]
        assert alive(pid) and snap["restarts"] == 0 and snap["lastExitCode"] is None and snap["uptimeSeconds"] > 0
        assert os.getpgid(pid) == pid  # its own process group
        metrics = requests.get(sup.url + "/metrics", timeout=2).text
        assert 'llava_supervisor_state{state="READY"} 1.0' in metrics
        assert 'llava_supervisor_state{state="STARTING"} 0.0' in metrics
        for name in ("llava_supervisor_restarts_total 0.0", "llava_supervisor_last_exit_code NaN",
                     "llava_supervisor_child_uptime_seconds "):
            assert name in metrics
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == exit_codes.OK
        assert wait_gone(pid)
        out = sup.output()
        assert f"fake_model[{pid}] | fake: pid {pid} mode healthy" in out  # stdout, prefixed
        assert f"fake_model[{pid}] | fake: SIGTERM: stopping" in out        # stderr, prefixed
        assert "STOPPING -> STOPPED" in out


def test_sigint_stops_like_sigterm():
    with Supervised(fake("healthy")) as sup:
        pid = sup.wait_ready()["pid"]
        sup.signal(signal.SIGINT)
        assert sup.wait_exit() == exit_codes.OK and wait_gone(pid)


def test_child_exiting_at_once_ends_fatal_after_max_failed_starts():
    with Supervised(fake("exit-at-once"), {"SUPERVISOR_MAX_FAILED_STARTS": "3"}) as sup:
        assert sup.wait_exit() == exit_codes.FATAL
        out = sup.output()
        assert out.count("fake: pid") == 3
        assert "3 failures in a row without a stable start (last: exited with code 1 (crash))" in out
        assert "\n    fake: exiting at once" in out  # the crash report's last lines


def test_boot_error_is_fatal_without_a_restart():
    with Supervised(fake("boot-error")) as sup:
        assert sup.wait_exit() == exit_codes.FATAL
        out = sup.output()
        assert out.count("fake: pid") == 1 and "-> FATAL: giving up: the child exited with code 3 (boot error" in out
        assert "\n    fake: the checkpoint is missing" in out


def test_crash_after_ready_is_restarted_with_its_last_lines_logged():
    with Supervised(fake("crash-after-ready"), {"FAKE_AFTER_SECONDS": "0.3"}) as sup:
        first = sup.wait_ready()["pid"]
        snap = sup.wait_ready(not_pid=first)
        assert snap["restarts"] >= 1 and snap["lastExitCode"] == 7
        assert wait_gone(first)
        assert re.search(rf"child \(pid {first}\) exited with code 7 \(crash\); last output:\n"
                         r"    fake: healthy\n    fake: crashing now", sup.output())


def test_child_that_stops_answering_is_replaced():
    with Supervised(fake("hang"), {"FAKE_AFTER_SECONDS": "0.3"}) as sup:
        first = sup.wait_ready()["pid"]
        sup.wait_ready(not_pid=first)
        assert wait_gone(first)
        out = sup.output()
        assert "READY -> UNHEALTHY: /health/live failed 2 times in a row (no answer within 1s)" in out
        assert f"child (pid {first}) exited with code 0" in out  # it honoured SIGTERM


def test_sigstopped_child_is_replaced():
    with Supervised(fake("healthy")) as sup:
        first = sup.wait_ready()["pid"]
        os.kill(first, signal.SIGSTOP)
        sup.wait_ready(not_pid=first)
        assert wait_gone(first)
        # SIGCONT after SIGTERM let the stopped child run its own SIGTERM handler.
        assert f"fake_model[{first}] | fake: SIGTERM: stopping" in sup.output()


def test_child_ignoring_sigterm_is_killed_after_the_grace_period():
    with Supervised(fake("ignore-sigterm"), {"SUPERVISOR_STOP_GRACE_SECONDS": "0.5"}) as sup:
        pid = sup.wait_ready()["pid"]
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit(10) == exit_codes.OK
        assert wait_gone(pid)
        out = sup.output()
        assert f"child (pid {pid}) did not exit within 0.5s of SIGTERM: SIGKILL to its group" in out
        assert "killed by SIGKILL (sent by the supervisor after the grace period)" in out


def test_flooding_child_is_forwarded_line_by_line_and_stays_ready():
    lines = 50_000
    with Supervised(fake("flood"), {"FAKE_FLOOD_LINES": str(lines)}) as sup:
        pid = sup.wait_ready()["pid"]
        snap = sup.wait_status(lambda s: "fake: flood done" in sup.output(), timeout=30, what="the flood's end")
        assert snap["state"] == "READY" and snap["pid"] == pid and snap["restarts"] == 0
        forwarded = re.findall(rf"^fake_model\[{pid}\] \| flood (\d{{6}}) x{{80}}$", sup.output(), re.M)
        assert len(forwarded) == lines and forwarded[-1] == f"{lines - 1:06d}"


def test_sigkill_to_the_supervisor_takes_the_child_with_it():
    with Supervised(fake("healthy")) as sup:
        pid = sup.wait_ready()["pid"]
        sup.signal(signal.SIGKILL)
        assert sup.wait_exit() == -signal.SIGKILL
        assert wait_gone(pid, 5), "the child outlived a SIGKILLed supervisor"


def test_sighup_restarts_the_child_without_exiting():
    with Supervised(fake("healthy")) as sup:
        first = sup.wait_ready()["pid"]
        sup.signal(signal.SIGHUP)
        snap = sup.wait_ready(not_pid=first)
        assert snap["restarts"] == 1 and snap["consecutiveFailures"] == 0 and snap["lastExitCode"] == 0
        assert wait_gone(first) and sup.proc.popen.poll() is None


def test_start_without_progress_is_replaced_then_fatal():
    env = {"SUPERVISOR_START_STALL_SECONDS": "0.5", "SUPERVISOR_MAX_FAILED_STARTS": "2"}
    with Supervised(fake("stall"), env) as sup:
        assert sup.wait_exit() == exit_codes.FATAL
        out = sup.output()
        assert out.count("STARTING -> UNHEALTHY: no start-up progress on /health for 0.5s") == 2
        assert "2 failures in a row" in out


def test_slow_start_with_progress_outlives_the_stall_deadline():
    env = {"SUPERVISOR_START_STALL_SECONDS": "0.6", "FAKE_LOAD_STEPS": "10", "FAKE_STEP_SECONDS": "0.2"}
    with Supervised(fake("healthy"), env) as sup:
        snap = sup.wait_ready()
        assert snap["restarts"] == 0 and snap["uptimeSeconds"] >= 2.0


def test_missing_command_is_fatal():
    with Supervised(["/nonexistent/llava-server"]) as sup:
        assert sup.wait_exit() == exit_codes.FATAL
        assert "cannot start the child: [Errno 2] No such file or directory" in sup.output()


def run_supervisor(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(python("supervisor.py", "--", sys.executable, "-c", "pass"), cwd=ROOT, capture_output=True,
                          text=True, timeout=30, env=child_env({"MODEL_PORT": str(free_port()), **env}))


def test_bad_setting_exits_with_boot_error_and_one_line():
    result = run_supervisor({"SUPERVISOR_FAILURE_THRESHOLD": "many", "SUPERVISOR_PORT": str(free_port())})
    assert result.returncode == exit_codes.BOOT_ERROR
    assert result.stderr == ("supervisor: invalid settings: SUPERVISOR_FAILURE_THRESHOLD='many': "
                             "expected a whole number\n")


def test_status_port_in_use_exits_with_boot_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = run_supervisor({"SUPERVISOR_PORT": str(busy.getsockname()[1])})
    assert result.returncode == exit_codes.BOOT_ERROR
    assert "cannot listen on 127.0.0.1:" in result.stderr
