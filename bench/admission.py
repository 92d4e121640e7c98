"""Admission under load on the `make demo` stack, with default settings (one gateway worker).

    python -m bench.admission                    # starts stack.py on the demo model (as make demo)
    python -m bench.admission --url http://127.0.0.1:8080   # against a running stack

Three measurements, each request a distinct image (no cache hits) with the client's
default parameters (max-tokens 512, temperature 0.2), as a Spring app would send:

1. `--clients` (32) concurrent clients, closed loop, `--rounds` requests each: how
   many 429s (the issue: 16 clients got about a third refused at once).
2. A burst of `--burst` (300) requests at once: every answer must be a designed one
   (200, or 429 with Retry-After), no 5xx, none left hanging past `--timeout`.
3. Fair share (issue 25), on a second stack as `make demo` runs it (4 gateway
   workers) with two API keys: key B's `--fair-clients` (8) closed-loop clients,
   `--rounds` requests each, alone, then again while key A sends a burst of
   `--burst`. B's p95 beside the burst must stay within 1.5x of its p95 alone, and B
   must get no 429. (With `--url`, that stack must have
   API_KEYS=bench-key-a,bench-key-b for this part.)

Traffic goes to 127.0.0.1 only, bounded in count and time. Writes
bench/results/admission.md and prints it.
"""
from __future__ import annotations

import argparse
import datetime
import io
import os
import platform
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from PIL import Image

from harness.stack import DemoStack, demo_env

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "admission.md"
ANALYZE = "/api/v1/multimodal/analyze"
PROMPT = "What is in this picture?"
KEY_A, KEY_B = "bench-key-a", "bench-key-b"  # loopback only, made up for the run


def photo(i: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), (i * 37 % 256, i * 91 % 256, i * 13 % 256)).save(out, "JPEG")
    return out.getvalue()


def ask(url: str, i: int, timeout: float, key: str | None = None) -> dict:
    started = time.monotonic()
    try:
        response = requests.post(url + ANALYZE, files={"image": ("photo.jpg", photo(i), "image/jpeg")},
                                 data={"prompt": PROMPT}, timeout=timeout,
                                 headers={"Authorization": f"Bearer {key}"} if key else None)
        outcome = str(response.status_code)
        retry_after = response.headers.get("Retry-After")
        status = response.json().get("status") if response.headers.get("Content-Type", "").startswith(
            "application/json") else None
    except requests.Timeout:
        outcome, retry_after, status = "HUNG", None, None
    except requests.RequestException as exc:
        outcome, retry_after, status = type(exc).__name__, None, None
    return {"outcome": outcome, "status": status, "retry_after": retry_after, "seconds": time.monotonic() - started}


def clients(url: str, count: int, rounds: int, timeout: float, key: str | None = None, first: int = 10_000
            ) -> list[dict]:
    results, lock = [], threading.Lock()

    def client(c: int) -> None:
        for r in range(rounds):
            answer = ask(url, first + c * rounds + r, timeout, key)
            with lock:
                results.append(answer)
                sys.stderr.write(f"\r  {count} clients: {len(results)}/{count * rounds}")

    with ThreadPoolExecutor(count) as pool:
        list(pool.map(client, range(count)))
    sys.stderr.write("\n")
    return results


def burst(url: str, count: int, timeout: float, key: str | None = None) -> list[dict]:
    start = threading.Barrier(count)

    def one(i: int) -> dict:
        start.wait()  # all at once
        return ask(url, 50_000 + i, timeout, key)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def summary(name: str, results: list[dict], seconds: float) -> str:
    outcomes = {}
    for r in results:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    refused = [r for r in results if r["outcome"] == "429"]
    latencies = sorted(r["seconds"] for r in results)
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
    fivexx = sum(n for o, n in outcomes.items() if o.startswith("5"))
    other = sum(n for o, n in outcomes.items() if o not in ("200", "429") and not o.startswith("5"))
    retry = sorted({r["retry_after"] for r in refused if r["retry_after"]})
    return (f"| {name} | {len(results)} | {outcomes.get('200', 0)} | {len(refused)} | "
            f"{sum(1 for r in refused if r['retry_after'])} ({', '.join(retry) or '-'} s) | {fivexx} | {other} | "
            f"{statistics.median(latencies):.1f} | {p95:.1f} | {latencies[-1]:.1f} | {seconds:.0f} |")


def p95(results: list[dict]) -> float:
    latencies = sorted(r["seconds"] for r in results)
    return latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]


def fair_share(url: str, options) -> tuple[list[dict], list[dict], list[dict], float, float]:
    """B alone, then B beside A's burst: (B alone, B beside, A's burst, seconds, seconds)."""
    started = time.monotonic()
    alone = clients(url, options.fair_clients, options.rounds, options.timeout, KEY_B, first=20_000)
    alone_s = time.monotonic() - started
    time.sleep(2)
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        flood = pool.submit(burst, url, options.burst, options.timeout, KEY_A)
        time.sleep(1.0)  # the burst is in: B arrives behind it
        beside = clients(url, options.fair_clients, options.rounds, options.timeout, KEY_B, first=30_000)
        beside_s = time.monotonic() - started
        return alone, beside, flood.result(), alone_s, beside_s


def start_stack(**settings) -> tuple[DemoStack, str]:
    # As `make demo` runs it, default settings, except one gateway worker: the
    # recorded results (bench/results/admission.md) are one worker's admission line.
    stack = DemoStack(demo_env(**{"GATEWAY_WORKERS": 1, **settings}))
    try:
        stack.wait_ready(300)
    except AssertionError as exc:
        stack.close()
        raise SystemExit(f"the demo stack did not start: {exc}") from None
    return stack, stack.url


def main(argv: list[str]) -> int:
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("--url", help="a running gateway (default: start stack.py on the demo model)")
    args.add_argument("--clients", type=int, default=32)
    args.add_argument("--rounds", type=int, default=3, help="requests per client")
    args.add_argument("--burst", type=int, default=300)
    args.add_argument("--fair-clients", type=int, default=8, help="key B's closed-loop clients (fair share)")
    args.add_argument("--timeout", type=float, default=120.0, help="a request unanswered this long counts as HUNG")
    options = args.parse_args(argv)
    proc, url = (None, options.url.rstrip("/")) if options.url else start_stack()
    try:
        ask(url, 0, options.timeout)  # warm up
        started = time.monotonic()
        steady = clients(url, options.clients, options.rounds, options.timeout)
        steady_s = time.monotonic() - started
        time.sleep(2)
        started = time.monotonic()
        sudden = burst(url, options.burst, options.timeout)
        burst_s = time.monotonic() - started
    finally:
        if proc:
            proc.close()
    # Fair share: `make demo`'s 4 gateway workers (each a line of its own) and two keys.
    proc, url = (None, options.url.rstrip("/")) if options.url else start_stack(GATEWAY_WORKERS=4,
                                                                                   API_KEYS=f"{KEY_A},{KEY_B}")
    try:
        ask(url, 1, options.timeout, KEY_B)  # warm up
        alone, beside, flood, alone_s, beside_s = fair_share(url, options)
    finally:
        if proc:
            proc.close()
    ratio = p95(beside) / p95(alone)
    command = "python -m bench.admission" + (f" --url {options.url}" if options.url else "") + "".join(
        f" --{k} {v}" for k, v in (("clients", options.clients), ("rounds", options.rounds),
                                   ("burst", options.burst)) if v != args.get_default(k))
    cores = os.cpu_count()
    text = "\n".join([
        "# Admission on the demo stack, default settings", "",
        f"Command: `{command}`  ",
        f"Date: {datetime.datetime.now():%Y-%m-%d %H:%M}, {platform.machine()}, {cores} cores (shared); the stack "
        "of `make demo` (stack.py: supervisor + demo model on the CPU + gunicorn gateway, one worker) with default "
        "settings: MAX_UPSTREAM_IN_FLIGHT=8, ADMISSION_QUEUE=32, ADMISSION_WAIT_SECONDS=60, GATEWAY_THREADS=48, "
        "model MAX_BATCH_SIZE=8, MAX_QUEUE=64. Each request a distinct 320x240 JPEG, max-tokens 512 (the default).",
        "",
        "| load | requests | 200 | 429 | 429 with Retry-After | 5xx | other (errors, HUNG) | p50 s | p95 s | max s "
        "| wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        summary(f"{options.clients} concurrent clients x {options.rounds}", steady, steady_s),
        summary(f"burst of {options.burst} at once", sudden, burst_s), "",
        "## Fair share between API keys", "",
        "The stack of `make demo` with its 4 gateway workers and `API_KEYS` set to two keys (weights 1). Key B's "
        f"{options.fair_clients} closed-loop clients, {options.rounds} requests each, alone; then again while key A "
        f"sends a burst of {options.burst} at once (B starts 1 s after it).", "",
        "| load | requests | 200 | 429 | 429 with Retry-After | 5xx | other (errors, HUNG) | p50 s | p95 s | max s "
        "| wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        summary(f"B: {options.fair_clients} clients x {options.rounds}, alone", alone, alone_s),
        summary(f"B: {options.fair_clients} clients x {options.rounds}, beside A's burst", beside, beside_s),
        summary(f"A: burst of {options.burst} (beside B)", flood, beside_s), "",
        f"B's p95 beside A's burst / alone: **{ratio:.2f}x** (bound: 1.5x); B's 429s beside the burst: "
        f"**{sum(1 for r in beside if r['outcome'] == '429')}** (bound: 0).", "",
    ])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)
    bad = [r for r in steady + sudden + flood if r["outcome"] not in ("200", "429") or
           (r["outcome"] == "429" and not r["retry_after"])]
    unfair = ratio > 1.5 or any(r["outcome"] != "200" for r in alone + beside)
    return 1 if bad or unfair or any(r["outcome"] == "429" for r in steady) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
