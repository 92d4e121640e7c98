"""Helpers for the gateway tests: a fake upstream speaking the model process's
protocol that can be told to fail, stall or answer 500 (faults live only here, at
the edge), a thread-served WSGI app on a free loopback port, and image bytes."""
from __future__ import annotations

import io
import threading
import time
from contextlib import contextmanager

import requests
from flask import Flask, request
from werkzeug.serving import make_server

from gateway import create_app
from gateway.settings import GatewaySettings
from tests import model_contract as contract

ANALYZE = "/api/v1/multimodal/analyze"


class Served:
    """A WSGI app on a free 127.0.0.1 port, served by werkzeug's threaded server in
    a thread (it has a clean shutdown(); production serving is gunicorn's job and is
    tested separately)."""

    def __init__(self, app, threads: int = 0, port: int = 0):
        self.server = make_server("127.0.0.1", port, app, threaded=True)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class FakeUpstream:
    """The model process's contract, with switchable faults.

    mode: ok | error500 | stall | loading | garbage | context | queue_full | oom
    """

    def __init__(self, port: int = 0):
        self.mode = "ok"
        self.calls = 0
        self.payloads: list[dict] = []
        self.request_ids: list[str] = []
        self.client_request_ids: list[str] = []
        self.release = threading.Event()   # ends a stall
        self.delay_s = 0.0                 # slows every ok answer (single-flight, admission)
        self.lock = threading.Lock()
        app = Flask("fake-upstream")

        @app.get("/health")
        def health():
            if self.mode == "loading":
                return contract.loading("fake-llava"), 503
            return contract.healthy("fake-llava")

        @app.get("/health/live")
        def live():
            return {"status": "alive"}

        @app.get("/v1/models")
        def models():
            return {"object": "list", "data": [{"id": "fake-llava", "object": "model", "created": 0, "owned_by": "x"}]}

        @app.post("/v1/chat/completions")
        def chat():
            with self.lock:
                self.calls += 1
                n = self.calls
            self.payloads.append(request.get_json())
            self.request_ids.append(request.headers.get("X-Request-ID", ""))
            self.client_request_ids.append(request.headers.get("X-Client-Request-ID", ""))
            mode = self.mode
            if mode == "stall":
                self.release.wait(30)
            if mode == "error500":
                return {"error": {"message": "boom", "type": "server_error", "param": None,
                                  "code": "internal_error"}}, 500
            if mode == "loading":
                return contract.refusal("model_loading", "the model is still starting")
            if mode == "garbage":
                return "<html>proxy error</html>", 200
            if mode == "context":
                return contract.refusal("context_length_exceeded", "prompt + image + max_tokens = 5000 tokens, over "
                                        "4096")
            if mode == "queue_full":
                return contract.refusal("queue_full", "queue full")
            if mode == "oom":
                return contract.refusal("out_of_memory", "the GPU ran out of memory for this request")
            if self.delay_s:
                time.sleep(self.delay_s)
            return {"id": "chatcmpl-1", "object": "chat.completion", "model": "fake-llava",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": f"answer {n}"},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 2950, "completion_tokens": 87, "total_tokens": 3037}}

        self.served = Served(app, threads=32, port=port)
        self.url = self.served.url

    def close(self):
        self.release.set()
        self.served.close()


def settings(model_url: str, **env) -> GatewaySettings:
    base = {"MODEL_URL": model_url, "UPSTREAM_HEALTH_INTERVAL_SECONDS": "0.2", "UPSTREAM_READ_TIMEOUT_SECONDS": "5"}
    return GatewaySettings.from_env({**base, **{k: str(v) for k, v in env.items()}})


@contextmanager
def gateway(model_url: str, clock=time.monotonic, **env):
    """A gateway built by create_app with these settings, served on a free port."""
    app = create_app(settings(model_url, **env), clock=clock)
    served = Served(app)
    try:
        yield served.url, app
    finally:
        served.close()


def analyze(url: str, image: bytes, prompt: str = "What is in this picture?", filename: str = "photo.jpg",
            params: dict | None = None, headers: dict | None = None, timeout: float = 30) -> requests.Response:
    return requests.post(url + ANALYZE, files={"image": (filename, image, "image/jpeg")}, data={"prompt": prompt},
                         params=params, headers=headers, timeout=timeout)


def jpeg(width: int = 64, height: int = 48, color=(200, 30, 30)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "JPEG")
    return out.getvalue()
