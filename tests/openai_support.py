"""Helpers for the OpenAI-face tests: a fake upstream that streams (token by token,
with a delay, and notices when its client goes away), a tiny image server for
remote-URL tests. The demo stack fixture is in openai_stack.py."""
from __future__ import annotations

import base64
import json
import threading
import time

from flask import Flask, Response, request

from tests import model_contract as contract
from tests.gateway_support import Served

TOKENS = ["A", " red", " square", " on", " a", " white", " table", "."]


def data_url(image: bytes, mime: str = "image/jpeg") -> str:
    return f"data:{mime};base64," + base64.b64encode(image).decode()


def user(text: str, *images: str) -> dict:
    return {"role": "user", "content": [{"type": "text", "text": text},
                                        *({"type": "image_url", "image_url": {"url": u}} for u in images)]}


class ChatUpstream:
    """The model process's chat-completions protocol, streaming included.

    mode: ok | error500 | context | queue_full | loading | stall | break | truncated
    """

    def __init__(self, model: str = "fake-llava"):
        self.mode, self.model = "ok", model
        self.tokens = list(TOKENS)
        self.token_delay_s = 0.0
        self.delay_s = 0.0                  # before a plain (non-streamed) answer: a model at work
        self.slow_prompts: dict[str, float] = {}   # a prompt's own delay (its last text part)
        self.calls = 0
        self.payloads: list[dict] = []
        self.headers: list[dict] = []       # the headers of each chat request
        self.sent = 0                       # content chunks written by the last stream
        self.stream_closed = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        app = Flask("fake-chat-upstream")

        @app.get("/health")
        def health():
            if self.mode == "loading":
                return contract.loading(self.model), 503
            return contract.healthy(self.model)

        @app.get("/health/live")
        def live():
            return {"status": "alive"}

        @app.get("/v1/models")
        def models():
            return {"object": "list", "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "x"}]}

        @app.post("/v1/chat/completions")
        def chat():
            body = request.get_json()
            with self.lock:
                self.calls += 1
            self.payloads.append(body)
            self.headers.append(dict(request.headers))
            if self.mode == "stall":
                self.release.wait(30)
            if self.mode == "error500":
                return contract.error("internal_error", "upstream says internal_error", "server_error"), 500
            code = {"context": "context_length_exceeded", "queue_full": "queue_full",
                    "loading": "model_loading"}.get(self.mode)
            if code:
                return contract.refusal(code, f"upstream says {code}")
            if body.get("stream"):
                self.stream_closed.clear()
                return Response(self._stream(body), mimetype="text/event-stream")
            time.sleep(max(self.delay_s, self.slow_prompts.get(_last_text(body), 0.0)))
            n = len(self.tokens)
            return {"id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": self.model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(self.tokens)},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 2950, "completion_tokens": n, "total_tokens": 2950 + n}}

        self.served = Served(app)
        self.url = self.served.url

    def _stream(self, body: dict):
        def event(delta=None, finish=None, usage=None):
            chunk = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": self.model,
                     "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if usage:
                chunk["usage"] = usage
            return f"data: {json.dumps(chunk)}\n\n"

        self.sent = 0
        try:
            yield event({"role": "assistant", "content": ""})
            for i, token in enumerate(self.tokens):
                time.sleep(self.token_delay_s)
                if self.mode == "break" and i == 2:
                    yield 'data: {"error": {"message": "out of memory", "type": "x", "param": null, "code": "oom"}}\n\n'
                    yield "data: [DONE]\n\n"
                    return
                if self.mode == "truncated" and i == 2:
                    return  # the connection ends without [DONE]
                yield event({"content": token})
                self.sent += 1
            yield event({}, "stop")
            if (body.get("stream_options") or {}).get("include_usage"):
                n = len(self.tokens)
                yield event(usage={"prompt_tokens": 2950, "completion_tokens": n, "total_tokens": 2950 + n})
            yield "data: [DONE]\n\n"
        finally:
            self.stream_closed.set()

    def close(self):
        self.release.set()
        self.served.close()


def _last_text(body: dict) -> str:
    content = body["messages"][-1]["content"]
    texts = [content] if isinstance(content, str) else [p.get("text", "") for p in content if p.get("type") == "text"]
    return texts[-1] if texts else ""


class ImageServer:
    """Serves `self.body` at /img (or a redirect at /redirect, a slow drip at /slow)."""

    def __init__(self, body: bytes):
        self.body, self.hits = body, 0
        app = Flask("fake-image-host")

        @app.get("/img")
        def img():
            self.hits += 1
            return Response(self.body, mimetype="image/jpeg")

        @app.get("/redirect")
        def redirect():
            self.hits += 1
            return "", 302, {"Location": self.url + "/img"}

        @app.get("/slow")
        def slow():
            self.hits += 1

            def drip():
                for _ in range(100):
                    time.sleep(0.1)
                    yield b"\xff" * 10
            return Response(drip(), mimetype="image/jpeg")

        self.served = Served(app)
        self.url = self.served.url

    def close(self):
        self.served.close()
