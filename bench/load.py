"""A bounded closed-loop load generator against a loopback server."""
from __future__ import annotations

import concurrent.futures
import statistics
import sys
import threading
import time
from dataclasses import dataclass

import requests


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]
    tokens: int

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


def run(url: str, bodies: list[dict], concurrency: int, label: str) -> LoadResult:
    """Send every body once, `concurrency` at a time; print progress on one line."""
    lock, done, errors, latencies, tokens = threading.Lock(), [0], [0], [], [0]
    local = threading.local()

    def one(body: dict) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        started = time.perf_counter()
        response = session.post(url, json=body, timeout=600)
        elapsed = time.perf_counter() - started
        with lock:
            done[0] += 1
            if response.status_code == 200:
                latencies.append(elapsed)
                tokens[0] += response.json()["usage"]["completionTokens"]
            else:
                errors[0] += 1
            sys.stderr.write(f"\r  {label}: {done[0]}/{len(bodies)} requests")
            sys.stderr.flush()

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, bodies))
    seconds = time.perf_counter() - started
    sys.stderr.write("\n")
    return LoadResult(len(bodies), errors[0], seconds, latencies, tokens[0])
