"""The model process's download branch, which every other test skips (HF_HUB_OFFLINE=1):
a hub id as MODEL_PATH with downloads allowed, as `make run` starts it
(HF_HUB_OFFLINE=0), against a hub on loopback (tests/fixtures/fake_hub.py via
HF_ENDPOINT) serving the demo model. Then the offline restart from HF_HOME, and
the boot errors of a repository that does not exist."""
from __future__ import annotations

import pytest
import requests

from llava_common import exit_codes
from tests.fixtures.fake_hub import FakeHub
from tests.procs import Proc, python

pytestmark = pytest.mark.slow
REPO = "test-org/llava-demo-hub"


@pytest.fixture
def hub(demo_model_dir):
    served = FakeHub(REPO, demo_model_dir)
    yield served
    served.close()


def model_process(hub: FakeHub, hf_home, model_path: str = REPO, offline: str = "0") -> Proc:
    return Proc(python("llava_server.py"), env={"MODEL_PATH": model_path, "MODEL_PORT": "0", "HF_HOME": str(hf_home),
                                                 "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": offline})


def chat() -> dict:
    return {"messages": [{"role": "user", "content": "Say something."}], "max_tokens": 4, "temperature": 0}


def test_a_hub_id_is_downloaded_once_then_served_offline_from_hf_home(hub, tmp_path):
    with model_process(hub, tmp_path / "hf") as proc:
        url = f"http://127.0.0.1:{proc.listening_port()}"
        health = proc.wait_for(url + "/health", 200, timeout=120).json()
        assert health["model"] == "llava-demo-hub"  # named after MODEL_PATH
        assert requests.post(url + "/v1/chat/completions", json=chat(), timeout=60).status_code == 200
    assert {"config.json", "tokenizer.json", "model.safetensors"} <= set(hub.downloads)
    assert list((tmp_path / "hf" / "hub").glob("models--test-org--llava-demo-hub/snapshots/*/model.safetensors"))

    seen = len(hub.requests)
    with model_process(hub, tmp_path / "hf", offline="1") as proc:
        url = f"http://127.0.0.1:{proc.listening_port()}"
        proc.wait_for(url + "/health", 200, timeout=120)
    assert len(hub.requests) == seen, "offline, the hub must not be asked anything"


def test_a_repository_the_hub_does_not_have_is_a_boot_error(hub, tmp_path):
    proc = model_process(hub, tmp_path / "hf", model_path="test-org/no-such-model")
    with proc:
        assert proc.wait(timeout=120) == exit_codes.BOOT_ERROR
    assert "MODEL_PATH='test-org/no-such-model' could not be found locally or downloaded from the Hugging Face hub" \
        in proc.output()


def test_offline_and_not_in_hf_home_is_a_boot_error_naming_hf_hub_offline(hub, tmp_path):
    proc = model_process(hub, tmp_path / "empty", offline="1")
    with proc:
        assert proc.wait(timeout=120) == exit_codes.BOOT_ERROR
    assert "is not in the Hugging Face cache (HF_HOME) and HF_HUB_OFFLINE is set" in proc.output()
    assert not hub.requests
