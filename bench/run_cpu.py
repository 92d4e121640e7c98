"""CPU benchmarks on the demo model (`make bench`).

Batching: throughput at concurrency 8, 32 new tokens per request, with batching on
(MAX_BATCH_SIZE=8) against MAX_BATCH_SIZE=1. Both servers run the same build of the
demo model; the modes alternate over several rounds so machine noise hits both.
"""
from __future__ import annotations

import argparse
import base64
import datetime
import io
import platform
import statistics
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from bench import load
from tests.procs import Proc, free_port, python

RESULTS = Path(__file__).resolve().parent / "results"


def jpeg_b64(seed: int) -> str:
    pixels = np.random.default_rng(seed).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
    return base64.b64encode(buffer.getvalue()).decode()


def serve(batch_size: int, demo_dir: str) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(python("llava_server.py"), env={"MODEL_PATH": "demo", "DEMO_MODEL_DIR": demo_dir, "MODEL_PORT": str(port),
                                                 "MAX_BATCH_SIZE": str(batch_size), "WARMUP_REQUESTS": "4",
                                                 "LOG_LEVEL": "warning"})
    url = f"http://127.0.0.1:{port}"
    proc.wait_for(url + "/health", 200, timeout=180)
    return proc, url


def batching(args) -> list[dict]:
    bodies = [{"image": jpeg_b64(i), "prompt": "Describe this product photo.", "max_tokens": args.tokens,
               "min_tokens": args.tokens, "temperature": 0} for i in range(args.requests)]
    rows = []
    for round_no in range(1, args.rounds + 1):
        for mode, batch_size in (("batched", 8), ("unbatched", 1)):
            print(f"[round {round_no}/{args.rounds}] {mode} (MAX_BATCH_SIZE={batch_size}): starting server", file=sys.stderr)
            proc, url = serve(batch_size, args.demo_dir)
            try:
                result = load.run(url + "/v1/analyze", bodies, args.concurrency, mode)
            finally:
                proc.stop()
            if result.errors:
                raise SystemExit(f"{mode}: {result.errors} requests failed; see the server log {proc.log.name}")
            rows.append({"round": round_no, "mode": mode, "rps": result.rps, "tokens_per_s": result.tokens_per_s,
                         "p50": result.p50, "p95": result.percentile(0.95)})
    return rows


def report(rows: list[dict], args, command: str) -> str:
    ratios = []
    for round_no in range(1, args.rounds + 1):
        by_mode = {r["mode"]: r for r in rows if r["round"] == round_no}
        ratios.append(by_mode["batched"]["tokens_per_s"] / by_mode["unbatched"]["tokens_per_s"])
    lines = ["# CPU benchmark: batching on the demo model", "",
             f"Command: `{command}`  ", f"Date: {datetime.datetime.now():%Y-%m-%d %H:%M}, {platform.machine()}, "
             f"{args.requests} requests per run, concurrency {args.concurrency}, {args.tokens} new tokens each", "",
             "| round | mode | requests/s | tokens/s | p50 s | p95 s |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['round']} | {r['mode']} | {r['rps']:.2f} | {r['tokens_per_s']:.1f} | {r['p50']:.2f} | {r['p95']:.2f} |")
    lines += ["", f"**Batched / unbatched throughput: {statistics.median(ratios):.2f}x** (median of rounds: "
              + ", ".join(f"{x:.2f}x" for x in ratios) + ")", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=48, help="requests per run")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per request")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of both modes")
    parser.add_argument("--demo-dir", default=str(Path.home() / ".cache" / "llava-service" / "demo-model-v1"))
    args = parser.parse_args(argv)
    command = "python -m bench.run_cpu " + " ".join(argv if argv is not None else sys.argv[1:])
    table = report(batching(args), args, command.strip())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cpu-batching.md").write_text(table)
    print(table)
    print(f"written to {RESULTS / 'cpu-batching.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
