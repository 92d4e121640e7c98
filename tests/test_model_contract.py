"""The model process's contract (tests/model_contract.py), checked against the real
llava_server.py started as the README shows (MODEL_PATH=demo; MODEL_PORT=0) and
against every fake the other tests put in its place, so that a fake cannot drift
from what it stands for: /health while loading and once ready, /health/live,
/v1/models, an answer, and the refusals the gateway acts on with their statuses
and Retry-After values."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import requests

from tests import images
from tests import model_contract as contract
from tests.fixtures.supervised import FAKE_MODEL
from tests.gateway_support import FakeUpstream
from tests.openai_support import ChatUpstream
from tests.procs import Proc, free_port, poll, python

pytestmark = pytest.mark.slow


def chat(n_images: int = 1, size: int = 64, max_tokens: int = 4) -> dict:
    parts = [{"type": "image_url", "image_url": {"url": images.data_url(images.jpeg(size, size, seed=i))}}
             for i in range(n_images)]
    return {"messages": [{"role": "user", "content": [*parts, {"type": "text", "text": "What is it?"}]}],
            "max_tokens": max_tokens, "temperature": 0}


class InProcessFake:
    """FakeUpstream (native-face tests) or ChatUpstream (OpenAI-face tests): states by mode."""
    refusals = ("queue_full", "context_length_exceeded")

    def __init__(self, make):
        self.fake = make()
        self.url = self.fake.url

    @contextmanager
    def state(self, mode: str):
        self.fake.mode = mode
        try:
            yield chat()
        finally:
            self.fake.mode = "ok"

    def loading(self):
        return self.state("loading")

    def wait_ready(self):
        pass

    def refusing(self, code: str):
        return self.state({"queue_full": "queue_full", "context_length_exceeded": "context"}[code])

    def close(self):
        self.fake.close()


class FakeModelProcess:
    """tests/fixtures/fake_model.py (supervisor and discovery tests): loads in steps."""
    refusals = ()

    def __init__(self):
        port = free_port()
        self.proc = Proc(python(str(FAKE_MODEL), "healthy"), env={"MODEL_PORT": str(port), "FAKE_LOAD_STEPS": "40",
                                                                  "FAKE_STEP_SECONDS": "0.1"})
        self.url = f"http://127.0.0.1:{port}"

    @contextmanager
    def loading(self):
        self.proc.wait_for(self.url + "/health/live")
        yield chat()

    def wait_ready(self):
        self.proc.wait_for(self.url + "/health", 200, timeout=30)

    def close(self):
        self.proc.stop()


class RealModelProcess:
    """llava_server.py on the demo model, as the README starts it (MODEL_PATH=demo,
    MODEL_PORT=0; the rest at defaults), with fault injection and a small queue to
    fill. It answers /health/live seconds before the model is loaded."""
    refusals = ("queue_full", "context_length_exceeded")
    QUEUE = 2

    def __init__(self, demo_model_dir):
        self.proc = Proc(python("llava_server.py"), env={
            "MODEL_PATH": "demo", "MODEL_PORT": "0", "DEMO_MODEL_DIR": str(demo_model_dir), "LLAVA_FAULTS": "1",
            "MAX_QUEUE": str(self.QUEUE)})
        self.url = f"http://127.0.0.1:{self.proc.listening_port()}"

    @contextmanager
    def loading(self):
        self.proc.wait_for(self.url + "/health/live")
        yield chat()

    def wait_ready(self):
        self.proc.wait_for(self.url + "/health", 200, timeout=120)

    @contextmanager
    def refusing(self, code: str):
        if code == "context_length_exceeded":  # two square images: 2 x 2,928 tokens of a 4,096 context
            yield chat(n_images=2, size=600)
            return
        requests.post(self.url + "/_faults", json={"mode": "slow", "seconds": 3, "count": 1}, timeout=5)
        with ThreadPoolExecutor(1 + self.QUEUE) as pool:
            held = [pool.submit(requests.post, self.url + "/v1/chat/completions", json=chat(), timeout=60)]
            poll(lambda: requests.get(self.url + "/health", timeout=5).json()["running"] >= 1, 10, "one running")
            held += [pool.submit(requests.post, self.url + "/v1/chat/completions", json=chat(), timeout=60)
                     for _ in range(self.QUEUE)]
            poll(lambda: requests.get(self.url + "/health", timeout=5).json()["waiting"] >= self.QUEUE, 10,
                 "the queue full")
            yield chat()
            assert [f.result().status_code for f in held] == [200] * (1 + self.QUEUE)

    def close(self):
        self.proc.stop()


@pytest.fixture(params=["llava_server.py", "FakeUpstream", "ChatUpstream", "fake_model.py"])
def backend(request):
    if request.param == "llava_server.py":
        made = RealModelProcess(request.getfixturevalue("demo_model_dir"))
    elif request.param == "fake_model.py":
        made = FakeModelProcess()
    else:
        made = InProcessFake(FakeUpstream if request.param == "FakeUpstream" else ChatUpstream)
    yield made
    made.close()


def test_the_model_process_contract(backend):
    url = backend.url
    with backend.loading() as body:
        contract.check_loading(requests.get(url + "/health", timeout=5))
        assert requests.get(url + "/health/live", timeout=5).status_code == 200
        contract.check_refusal(requests.post(url + "/v1/chat/completions", json=body, timeout=30), "model_loading")
    backend.wait_ready()
    contract.check_healthy(requests.get(url + "/health", timeout=5))
    assert requests.get(url + "/health/live", timeout=5).status_code == 200
    assert contract.check_models(requests.get(url + "/v1/models", timeout=5))
    contract.check_answer(requests.post(url + "/v1/chat/completions", json=chat(), timeout=60))
    for code in backend.refusals:
        with backend.refusing(code) as body:
            contract.check_refusal(requests.post(url + "/v1/chat/completions", json=body, timeout=60), code)


def test_the_fake_model_reports_progress_like_the_real_one():
    """The supervisor's stall deadline resets when `progress` changes: the fake's
    `progress.step` must move while it loads, as the real one's does
    (test_model_server.test_health_reports_loading_progress_then_healthy)."""
    fake = FakeModelProcess()
    try:
        with fake.loading():
            first = contract.check_loading(requests.get(fake.url + "/health", timeout=5))["progress"]["step"]
            poll(lambda: (r := requests.get(fake.url + "/health", timeout=5)).status_code == 200 or
                 r.json()["progress"]["step"] > first, 10, "the fake's progress moving")
    finally:
        fake.close()
