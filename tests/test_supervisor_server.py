"""The supervisor's /status and /metrics app, and its documentation, without processes."""
import math
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llava_common.settings import describe
from llava_supervisor.server import create_app
from llava_supervisor.settings import SupervisorSettings
from llava_supervisor.states import State

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference"


def snapshot(**changes):
    return {"state": "BACKOFF", "pid": None, "restarts": 3, "lastExitCode": -9, "lastExitReason": "killed by SIGKILL",
            "uptimeSeconds": 0.0, "stateSeconds": 1.5, "consecutiveFailures": 2, "fatalReason": None, **changes}


def samples(client):
    text = client.get("/metrics").get_data(as_text=True)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_status_is_the_snapshot():
    client = create_app(lambda: snapshot()).test_client()
    response = client.get("/status")
    assert response.status_code == 200 and response.get_json() == snapshot()


def test_metrics_follow_the_snapshot():
    state = {"snap": snapshot()}
    client = create_app(lambda: state["snap"]).test_client()
    got = samples(client)
    assert got[("llava_supervisor_state", (("state", "BACKOFF"),))] == 1.0
    assert sum(got[("llava_supervisor_state", (("state", s.value),))] for s in State) == 1.0
    assert got[("llava_supervisor_restarts_total", ())] == 3.0
    assert got[("llava_supervisor_last_exit_code", ())] == -9.0
    assert got[("llava_supervisor_consecutive_failures", ())] == 2.0
    state["snap"] = snapshot(state="READY", pid=7, uptimeSeconds=12.5, lastExitCode=None)
    got = samples(client)
    assert got[("llava_supervisor_state", (("state", "READY"),))] == 1.0
    assert got[("llava_supervisor_child_uptime_seconds", ())] == 12.5
    assert math.isnan(got[("llava_supervisor_last_exit_code", ())])


def test_apps_have_their_own_registries():
    a, b = create_app(lambda: snapshot(restarts=1)), create_app(lambda: snapshot(restarts=2))
    assert samples(a.test_client())[("llava_supervisor_restarts_total", ())] == 1.0
    assert samples(b.test_client())[("llava_supervisor_restarts_total", ())] == 2.0


@pytest.mark.parametrize("env, default", [row[:2] for row in describe(SupervisorSettings)])
def test_docs_list_every_setting_with_its_default(env, default):
    assert f"| `{env}` | `{default}` |" in (REFERENCE / "settings.md").read_text()


@pytest.mark.parametrize("state", list(State))
def test_docs_describe_every_state(state):
    assert f"| `{state.value}` |" in (REFERENCE / "codes.md").read_text()
