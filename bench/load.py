"""A bounded closed-loop load generator against a loopback server."""
from __future__ import annotations

import concurrent.futures
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import requests

# send(session, item) -> (ok, completion tokens, label): label is what the answer
# was (e.g. a gateway status), counted in `labels`.
Send = Callable[[requests.Session, object], tuple[bool, int, str]]


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]
    tokens: int
    labels: dict = field(default_factory=dict)
    ordered_latencies: list = field(default_factory=list)   # per item, in the items' order (nan for a failure)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) if self.latencies else float("nan")


def run(send: Send, items: list, concurrency: int, label: str) -> LoadResult:
    """Send every item once, `concurrency` at a time; show progress on one line."""
    lock, counts = threading.Lock(), {"done": 0, "errors": 0, "tokens": 0}
    latencies, labels = [], {}
    ordered = [float("nan")] * len(items)
    local = threading.local()

    def one(indexed) -> None:
        index, item = indexed
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        started = time.perf_counter()
        try:
            ok, tokens, answer = send(session, item)
        except requests.RequestException as exc:
            ok, tokens, answer = False, 0, type(exc).__name__
        elapsed = time.perf_counter() - started
        with lock:
            counts["done"] += 1
            labels[answer] = labels.get(answer, 0) + 1
            if ok:
                latencies.append(elapsed)
                ordered[index] = elapsed
                counts["tokens"] += tokens
            else:
                counts["errors"] += 1
            sys.stderr.write(f"\r  {label}: {counts['done']}/{len(items)} requests")
            sys.stderr.flush()

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, enumerate(items)))
    seconds = time.perf_counter() - started
    sys.stderr.write("\n")
    return LoadResult(len(items), counts["errors"], seconds, latencies, counts["tokens"], labels, ordered)


def post_json(url: str) -> Send:
    """JSON bodies to the model process; usage in either of its response shapes."""
    def send(session, body):
        response = session.post(url, json=body, timeout=600)
        if response.status_code != 200:
            return False, 0, str(response.status_code)
        usage = response.json()["usage"]
        return True, usage.get("completionTokens", usage.get("completion_tokens", 0)), "200"
    return send


def post_upload(url: str) -> Send:
    """The native multipart analyze call (gateway, or the bare floor endpoint)."""
    def send(session, item):
        image, prompt = item
        response = session.post(url, files={"image": ("photo.jpg", image, "image/jpeg")}, data={"prompt": prompt},
                                params={"max-tokens": "8"}, timeout=600)
        status = response.json().get("status", str(response.status_code))
        return response.status_code == 200, 0, status
    return send
