"""A closed-loop load: a fixed number of worker threads, each sending one analyze
request at a time (keep-alive, like a real client) until the deadline, and one
`Record` per request.

Requests mix repeats (a small hot set: CACHED once answered) with fresh images
(each one new: the model must answer). A worker honours what it is told: after a
429 / 503 it waits the Retry-After (at most 1 s), after a FALLBACK 0.2 s, so an
outage that answers in milliseconds does not turn the load into a busy loop.
"""
from __future__ import annotations

import io
import itertools
import random
import threading
import time
from dataclasses import dataclass

import requests

ANALYZE = "/api/v1/multimodal/analyze"
MAX_TOKENS = 8
PROMPTS = ("What is in this picture?", "Describe the colours.", "Is there a person?", "What shape is it?")
HOT_SHARE = 0.3      # share of requests drawn from the hot set (cacheable repeats)
HOT_SET = 4

# What an answer may be (docs/DESIGN.md's table): status -> HTTP code, and whether
# Retry-After is required.
DESIGNED = {"SUCCESS": (200, False), "CACHED": (200, False), "FALLBACK": (200, False),
            "OVERLOADED": (429, True), "SERVICE_UNAVAILABLE": (503, True)}
# Outcomes that are not answers.
CONNECTION_ERROR, HUNG, NO_RETRY_AFTER = "CONNECTION_ERROR", "HUNG", "NO_RETRY_AFTER"


@dataclass(frozen=True)
class Record:
    started: float        # time.monotonic()
    ended: float
    outcome: str          # a DESIGNED status, CONNECTION_ERROR, HUNG, NO_RETRY_AFTER or "HTTP <code> <status>"
    http: int | None = None

    @property
    def latency(self) -> float:
        return self.ended - self.started


def jpeg(n: int) -> bytes:
    """A small JPEG that differs for every n (so its answer is never cached)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), (n * 37 % 256, n * 101 % 256, n * 53 % 256)).save(out, "JPEG", quality=90)
    return out.getvalue()


def classify(response: requests.Response) -> str:
    try:
        status = response.json().get("status")
    except ValueError:
        status = None
    expected = DESIGNED.get(status)
    if expected is None or expected[0] != response.status_code:
        return f"HTTP {response.status_code} {status}"
    if expected[1] and not response.headers.get("Retry-After"):
        return NO_RETRY_AFTER
    return status


class Load:
    def __init__(self, url: str, workers: int, timeout_s: float, seed: int = 7):
        self.url, self.workers, self.timeout_s = url + ANALYZE, workers, timeout_s
        self.records: list[Record] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._fresh = itertools.count(1000)
        self._hot = [(jpeg(i), PROMPTS[0]) for i in range(HOT_SET)]
        self._threads: list[threading.Thread] = []

    def start(self, duration_s: float) -> None:
        deadline = time.monotonic() + duration_s
        self._threads = [threading.Thread(target=self._worker, args=(deadline,), daemon=True)
                         for _ in range(self.workers)]
        for thread in self._threads:
            thread.start()

    def join(self) -> list[Record]:
        """Wait for every worker (each ends within the deadline + one request's
        timeout) and hand over the records of this run."""
        for thread in self._threads:
            thread.join(timeout=self.timeout_s + 30)
            if thread.is_alive():
                raise RuntimeError("a load worker outlived its request timeout")
        with self._lock:
            records, self.records = self.records, []
        return records

    def _request(self) -> tuple[bytes, str]:
        with self._lock:
            if self._random.random() < HOT_SHARE:
                return self._random.choice(self._hot)
            n, prompt = next(self._fresh), self._random.choice(PROMPTS)
        return jpeg(n), prompt

    def _worker(self, deadline: float) -> None:
        session = requests.Session()
        while time.monotonic() < deadline:
            image, prompt = self._request()
            started = time.monotonic()
            pause, http = 0.0, None
            try:
                response = session.post(self.url, files={"image": ("photo.jpg", image, "image/jpeg")},
                                        data={"prompt": prompt}, params={"max-tokens": MAX_TOKENS},
                                        timeout=(2, self.timeout_s))
                http, outcome = response.status_code, classify(response)
                if response.status_code in (429, 503):
                    pause = min(float(response.headers.get("Retry-After") or 1), 1.0)
                elif outcome == "FALLBACK":
                    pause = 0.2
            except requests.Timeout:
                outcome = HUNG
            except requests.ConnectionError:
                outcome, pause = CONNECTION_ERROR, 0.2
            with self._lock:
                self.records.append(Record(started, time.monotonic(), outcome, http))
            if pause:
                time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        session.close()
