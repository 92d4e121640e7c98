"""CPU benchmarks on the demo model (`make bench`). Ratios measured side by side in
one run, alternating the two sides over rounds so machine noise hits both.

1. Engines: ENGINE=continuous against ENGINE=generate, closed loop at concurrency 8,
   336x336 images, max_tokens drawn from 16 / 64 / 256: throughput, and latency of
   the short requests (which a static batch holds until its longest row ends).
2. Batching: throughput and latency at concurrency 1, 4, 8, 16 (32 new tokens per
   request) with batching on (MAX_BATCH_SIZE=8) against MAX_BATCH_SIZE=1.
3. Gateway overhead: cache-hit throughput through the gateway against a bare Flask
   endpoint that only reads the same multipart upload, both under the gateway's
   gunicorn settings (the floor for this stack).
4. Cache-miss latency through the gateway against straight to the model process.
5. Structured output: the same closed loop at concurrency 8 with a JSON Schema
   (a QC-inspection answer) against free text, on the continuous engine: the cost
   of the grammar (token masks, and no step overlap while a row has a grammar).
6. The generate engine's decode step: DECODE_MODE=compiled (static KV cache +
   torch.compile, inductor) against eager: batch-1 decode tokens/s and throughput at
   concurrency 8.

Writes bench/results/cpu.md and bench/results/cpu-concurrency.png.
"""
from __future__ import annotations

import argparse
import base64
import datetime
import io
import platform
import random
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import requests
from PIL import Image

from bench import load
from harness.procs import Proc, free_port, python

RESULTS = Path(__file__).resolve().parent / "results"
PROMPT = "Describe this product photo."
MIXED_TOKENS = (16, 64, 256)


def jpeg(seed: int, width: int = 640, height: int = 480) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def serve_model(batch_size: int, demo_dir: str, **env) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(python("llava_server.py"), env={"MODEL_PATH": "demo", "DEMO_MODEL_DIR": demo_dir,
                                                 "MODEL_PORT": str(port), "MAX_BATCH_SIZE": str(batch_size),
                                                 "WARMUP_REQUESTS": "4", "LOG_LEVEL": "warning", **env})
    url = f"http://127.0.0.1:{port}"
    proc.wait_for(url + "/health", 200, timeout=600)
    return proc, url


def serve_gunicorn(app: str, env: dict) -> tuple[Proc, str]:
    """`app` under the gateway's own gunicorn configuration (2 workers)."""
    port = free_port()
    proc = Proc(python("-m", "gunicorn", "-c", "python:gateway.gunicorn_conf", app),
                env={"GATEWAY_PORT": str(port), "GATEWAY_WORKERS": "2", "LOG_LEVEL": "warning",
                     "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="bench-metrics-"), **env})
    url = f"http://127.0.0.1:{port}"
    gateway = app.startswith("gateway")
    proc.wait_for(url + "/health/live" if gateway else url + "/", 200 if gateway else 404, timeout=60)
    return proc, url


def engines(args) -> list[dict]:
    """ENGINE=continuous vs ENGINE=generate on the same mixed-length load."""
    print("[engines] starting a continuous and a generate model server", file=sys.stderr)
    servers = {name: serve_model(8, args.demo_dir, ENGINE=name) for name in ("continuous", "generate")}
    lengths = random.Random(7).choices(MIXED_TOKENS, k=args.mixed_requests)
    bodies = [{"image": b64(jpeg(50_000 + i, 336, 336)), "prompt": PROMPT, "max_tokens": n, "min_tokens": n,
               "temperature": 0} for i, n in enumerate(lengths)]
    rows = []
    try:
        for round_no in range(1, args.rounds + 1):
            for name, (_, url) in servers.items():
                result = load.run(load.post_json(url + "/v1/analyze"), bodies, 8,
                                  f"[engines] round {round_no}, {name}")
                if result.errors:
                    raise SystemExit(f"{name}: {result.errors} requests failed: {result.labels}")
                short = [s for s, n in zip(result.ordered_latencies, lengths) if n == min(MIXED_TOKENS)]
                rows.append({"engine": name, "round": round_no, "tokens_per_s": result.tokens_per_s, "rps": result.rps,
                             "p50": result.p50, "short_p50": statistics.median(short)})
    finally:
        for proc, _ in servers.values():
            proc.stop()
    return rows


# A bounded QC-inspection answer, as the presets use (bounded strings and arrays).
QC_SCHEMA = {"type": "object", "properties": {
    "verdict": {"enum": ["pass", "fail"]},
    "defects": {"type": "array", "maxItems": 3, "items": {"type": "object", "properties": {
        "kind": {"enum": ["scratch", "dent", "crack", "stain", "missing part", "other"]},
        "location": {"type": "string", "maxLength": 40}}, "required": ["kind", "location"],
        "additionalProperties": False}}},
    "required": ["verdict", "defects"], "additionalProperties": False}


def structured(args) -> list[dict]:
    """Throughput with a JSON Schema against free text, one continuous server."""
    print("[structured] starting a continuous model server", file=sys.stderr)
    proc, url = serve_model(8, args.demo_dir, ENGINE="continuous")
    rows = []

    def body(seed: int, schema: bool, tokens: int) -> dict:
        content = [{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + b64(jpeg(seed, 336, 336))}},
                   {"type": "text", "text": "Inspect this part."}]
        extra = ({"response_format": {"type": "json_schema", "json_schema": {"name": "qc", "schema": QC_SCHEMA}}}
                 if schema else {"min_tokens": tokens})
        return {"messages": [{"role": "user", "content": content}], "max_tokens": tokens, "temperature": 0, **extra}

    try:
        tokens = 160
        for round_no in range(1, args.rounds + 1):
            # Schema first; free text then generates as many tokens per answer (min_tokens), so
            # the two differ only by the grammar.
            for mode in ("schema", "free text"):
                bodies = [body(60_000 + i, mode == "schema", tokens) for i in range(24)]
                result = load.run(load.post_json(url + "/v1/chat/completions"), bodies, 8,
                                  f"[structured] round {round_no}, {mode}")
                if result.errors:
                    raise SystemExit(f"{mode}: {result.errors} requests failed: {result.labels}")
                rows.append({"mode": mode, "round": round_no, "tokens_per_s": result.tokens_per_s,
                             "tokens": result.tokens / len(bodies), "rps": result.rps})
                if mode == "schema":
                    tokens = max(1, round(result.tokens / len(bodies)))
            tokens = 160
    finally:
        proc.stop()
    return rows


def structured_lines(rows: list[dict]) -> list[str]:
    free = [r for r in rows if r["mode"] == "free text"]
    schema = [r for r in rows if r["mode"] == "schema"]
    ratio = statistics.median(s["tokens_per_s"] / f["tokens_per_s"] for s, f in zip(schema, free))
    return ["## Structured output: a JSON Schema against free text (continuous engine, concurrency 8, 24 requests)", "",
            "| measurement | free text | schema | **schema / free** |", "|---|---|---|---|",
            f"| generated tokens/s | {_median(free, 'tokens_per_s'):.0f} | {_median(schema, 'tokens_per_s'):.0f} | "
            f"**{ratio:.2f}x** |",
            f"| requests/s | {_median(free, 'rps'):.2f} | {_median(schema, 'rps'):.2f} | "
            f"**{statistics.median(s['rps'] / f['rps'] for s, f in zip(schema, free)):.2f}x** |",
            f"| tokens per answer (free text: as many, by min_tokens) | {_median(free, 'tokens'):.0f} | "
            f"{_median(schema, 'tokens'):.0f} | |", "",
            "A row with a grammar needs its chosen token on the host before the next step's mask exists, so steps "
            "with such a row do not overlap the host's work with the device's; the masks themselves take "
            "microseconds.", ""]


def batching(args) -> list[dict]:
    print("[batching] starting a batched and an unbatched model server", file=sys.stderr)
    servers = {"batched": serve_model(8, args.demo_dir), "unbatched": serve_model(1, args.demo_dir)}
    rows = []
    try:
        for concurrency in args.concurrency:
            count = max(args.requests, 3 * concurrency)
            bodies = [{"image": b64(jpeg(i)), "prompt": PROMPT, "max_tokens": args.tokens, "min_tokens": args.tokens,
                       "temperature": 0} for i in range(count)]
            for round_no in range(1, args.rounds + 1):
                for mode, (_, url) in servers.items():
                    result = load.run(load.post_json(url + "/v1/analyze"), bodies, concurrency,
                                      f"[batching] concurrency {concurrency}, round {round_no}, {mode}")
                    if result.errors:
                        raise SystemExit(f"{mode}: {result.errors} requests failed: {result.labels}")
                    rows.append({"concurrency": concurrency, "round": round_no, "mode": mode, "rps": result.rps,
                                 "tokens_per_s": result.tokens_per_s, "p50": result.p50,
                                 "p95": result.percentile(0.95)})
    finally:
        for proc, _ in servers.values():
            proc.stop()
    return rows


def gateway_overhead(args) -> dict:
    print("[gateway] starting model process, gateway and the bare upload endpoint", file=sys.stderr)
    model, model_url = serve_model(8, args.demo_dir)
    gateway, gateway_url = serve_gunicorn("gateway.wsgi:app", {"MODEL_URL": model_url, "CACHE_URL": ""})
    bare, bare_url = serve_gunicorn("bench.bare_app:app", {})
    try:
        photo = jpeg(10_000)
        upload = load.post_upload
        # Warm both workers' caches: keep asking until a run of answers is all CACHED.
        for _ in range(10):
            warm = load.run(upload(gateway_url + "/api/v1/multimodal/analyze"), [(photo, PROMPT)] * 16, 4,
                            "[gateway] warming the cache")
            if warm.labels.get("CACHED") == 16:
                break
        rounds = []
        for round_no in range(1, args.rounds + 1):
            items = [(photo, PROMPT)] * args.hits
            via_gateway = load.run(upload(gateway_url + "/api/v1/multimodal/analyze"), items, 8,
                                   f"[gateway] round {round_no}, cache hits")
            floor = load.run(upload(bare_url + "/api/v1/multimodal/analyze"), items, 8,
                             f"[gateway] round {round_no}, bare endpoint")
            if via_gateway.labels.get("CACHED") != len(items) or floor.errors:
                raise SystemExit(f"unexpected answers: gateway {via_gateway.labels}, bare {floor.labels}")
            rounds.append((via_gateway, floor))
        # Cache misses, one at a time, alternating the two paths per image.
        through, direct = [], []
        for i in range(args.misses):
            image = jpeg(20_000 + i)
            through.append(load.run(upload(gateway_url + "/api/v1/multimodal/analyze"), [(image, f"{PROMPT} #{i}")], 1,
                                    f"[latency] {i + 1}/{args.misses} through the gateway"))
            body = {"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + b64(jpeg(30_000 + i))}},
                {"type": "text", "text": f"{PROMPT} #{i}"}]}], "max_tokens": 8, "temperature": 0.2}
            direct.append(load.run(load.post_json(model_url + "/v1/chat/completions"), [body], 1,
                                   f"[latency] {i + 1}/{args.misses} straight to the model"))
        if any(r.labels != {"SUCCESS": 1} for r in through) or any(r.errors for r in direct):
            raise SystemExit("a cache-miss request did not succeed")
        return {"rounds": rounds, "through": statistics.median(r.latencies[0] for r in through),
                "direct": statistics.median(r.latencies[0] for r in direct)}
    finally:
        for proc in (bare, gateway, model):
            proc.stop()


def decode_modes(args) -> list[dict]:
    print("[decode] starting an eager and a compiled model server (the compiled one builds its graphs first)",
          file=sys.stderr)
    servers = {"eager": serve_model(8, args.demo_dir, ENGINE="generate", DECODE_MODE="eager"),
               "compiled": serve_model(8, args.demo_dir, ENGINE="generate", DECODE_MODE="compiled",
                                       COMPILE_MODE="default")}
    rows = []

    def body(seed: int, tokens: int) -> dict:
        return {"image": b64(jpeg(seed)), "prompt": PROMPT, "max_tokens": tokens, "min_tokens": tokens,
                "temperature": 0}

    try:
        for round_no in range(1, args.rounds + 1):
            for mode, (_, url) in servers.items():
                send = load.post_json(url + "/v1/analyze")
                # Batch-1 decode rate: the extra tokens over the extra time of a longer answer.
                short = load.run(send, [body(40_000 + i, 1) for i in range(5)], 1,
                                 f"[decode] round {round_no}, {mode}, 1 token")
                long = load.run(send, [body(41_000 + i, args.decode_tokens) for i in range(5)], 1,
                                f"[decode] round {round_no}, {mode}, {args.decode_tokens} tokens")
                many = load.run(send, [body(42_000 + i, args.tokens) for i in range(24)], 8,
                                f"[decode] round {round_no}, {mode}, concurrency 8")
                if short.errors or long.errors or many.errors:
                    raise SystemExit(f"{mode}: requests failed: {short.labels} {long.labels} {many.labels}")
                rows.append({"mode": mode, "round": round_no, "rps": many.rps,
                             "decode": (args.decode_tokens - 1) / max(long.p50 - short.p50, 1e-9)})
        for mode, (_, url) in servers.items():
            served = requests.get(url + "/health", timeout=10).json()["decode"]
            if served != mode:
                raise SystemExit(f"the {mode} server decoded {served}: see its log")
    finally:
        for proc, _ in servers.values():
            proc.stop()
    return rows


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def engine_lines(engine_rows: list[dict], args) -> list[str]:
    continuous = [r for r in engine_rows if r["engine"] == "continuous"]
    generate = [r for r in engine_rows if r["engine"] == "generate"]

    def ratio(key: str) -> float:
        return statistics.median(c[key] / g[key] for c, g in zip(continuous, generate))

    return [f"## Engines: continuous vs generate, concurrency 8, {args.mixed_requests} requests of one 336x336 image, "
            f"max_tokens drawn from {' / '.join(map(str, MIXED_TOKENS))}, MAX_BATCH_SIZE=8", "",
            "| measurement | generate | continuous | **continuous / generate** |", "|---|---|---|---|",
            f"| throughput, generated tokens/s | {_median(generate, 'tokens_per_s'):.0f} | "
            f"{_median(continuous, 'tokens_per_s'):.0f} | "
            f"**{ratio('tokens_per_s'):.2f}x** |",
            f"| p50 latency, all requests, s | {_median(generate, 'p50'):.2f} | {_median(continuous, 'p50'):.2f} | "
            f"**{ratio('p50'):.2f}x** |",
            f"| p50 latency of the {min(MIXED_TOKENS)}-token requests, s | {_median(generate, 'short_p50'):.2f} | "
            f"{_median(continuous, 'short_p50'):.2f} | **{ratio('short_p50'):.2f}x** |", "",
            "A generate batch runs until its longest row ends, so a 16-token answer batched with a 256-token one "
            "waits for it; continuous rows leave as they finish and waiting requests take their rows.", ""]


def report(engine_rows: list[dict], structured_rows: list[dict], batch_rows: list[dict], gateway: dict,
           decode_rows: list[dict], args, command: str) -> str:
    lines = ["# CPU benchmarks (demo model)", "", f"Command: `{command}`  ",
             f"Date: {datetime.datetime.now():%Y-%m-%d %H:%M}, {platform.machine()}, {platform.python_version()}; "
             f"{args.rounds} alternating round(s) per comparison; the machine is shared, so compare ratios, not "
             f"absolutes.", ""]
    lines += engine_lines(engine_rows, args)
    lines += structured_lines(structured_rows)
    lines += [f"## Batching (continuous engine): {args.tokens} new tokens per request, MAX_BATCH_SIZE=8 vs 1", "",
             "| concurrency | batched req/s | unbatched req/s | **ratio** | batched p50 / p95 s | unbatched p50 / p95 "
             "s |",
             "|---|---|---|---|---|---|"]
    for concurrency in args.concurrency:
        rows = [r for r in batch_rows if r["concurrency"] == concurrency]
        on = [r for r in rows if r["mode"] == "batched"]
        off = [r for r in rows if r["mode"] == "unbatched"]
        ratio = statistics.median(a["rps"] / b["rps"] for a, b in zip(on, off))
        lines.append(f"| {concurrency} | {_median(on, 'rps'):.2f} | {_median(off, 'rps'):.2f} | **{ratio:.2f}x** | "
                     f"{_median(on, 'p50'):.2f} / {_median(on, 'p95'):.2f} | {_median(off, 'p50'):.2f} / "
                     f"{_median(off, 'p95'):.2f} |")
    hit_ratio = statistics.median(g.rps / f.rps for g, f in gateway["rounds"])
    lines += ["", "## Gateway overhead", "",
              "| measurement | gateway | floor | **ratio** |", "|---|---|---|---|",
              "| cache-hit throughput at concurrency 8, req/s (floor: bare Flask upload endpoint, same gunicorn "
              f"settings) | {statistics.median(g.rps for g, _ in gateway['rounds']):.0f} | "
              f"{statistics.median(f.rps for _, f in gateway['rounds']):.0f} | **{hit_ratio:.2f}x** |",
              f"| cache-miss latency, median of {args.misses}, s (floor: straight to the model process) | "
              f"{gateway['through']:.3f} | {gateway['direct']:.3f} | "
              f"**{gateway['through'] / gateway['direct']:.2f}x** |", "",
              "![throughput and latency against concurrency](cpu-concurrency.png)", ""]
    eager = [r for r in decode_rows if r["mode"] == "eager"]
    compiled = [r for r in decode_rows if r["mode"] == "compiled"]

    def ratio(key: str) -> float:
        return statistics.median(c[key] / e[key] for c, e in zip(compiled, eager))

    lines += ["## The generate engine's decode step: compiled (static KV cache + torch.compile, inductor) vs eager", "",
              "| measurement | eager | compiled | **ratio** |", "|---|---|---|---|",
              f"| decode at batch 1, tokens/s ({args.decode_tokens} vs 1 new tokens, median of 5 each) | "
              f"{_median(eager, 'decode'):.0f} | {_median(compiled, 'decode'):.0f} | **{ratio('decode'):.2f}x** |",
              f"| throughput at concurrency 8, {args.tokens} new tokens, req/s | {_median(eager, 'rps'):.2f} | "
              f"{_median(compiled, 'rps'):.2f} | **{ratio('rps'):.2f}x** |", "",
              "On the demo model a decode step is almost all Python and dispatch overhead, which is what compiling "
              "removes; prefill (~2,400 image tokens) is not compiled, so whole requests gain less.", ""]
    return "\n".join(lines)


def plot(batch_rows: list[dict], args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for mode, style, color in (("batched", "o-", "C0"), ("unbatched", "s--", "C1")):
        rows = [[r for r in batch_rows if r["mode"] == mode and r["concurrency"] == c] for c in args.concurrency]
        left.plot(args.concurrency, [statistics.median(r["rps"] for r in rs) for rs in rows], style, color=color,
                  label=mode)
        right.plot(args.concurrency, [statistics.median(r["p50"] for r in rs) for rs in rows], style, color=color,
                   label=f"{mode} p50")
        right.plot(args.concurrency, [statistics.median(r["p95"] for r in rs) for rs in rows], style, color=color,
                   alpha=0.4, label=f"{mode} p95")
    left.set(title="Throughput", xlabel="concurrent clients", ylabel="requests / s")
    right.set(title="Latency", xlabel="concurrent clients", ylabel="seconds")
    for axes in (left, right):
        axes.set_xticks(args.concurrency)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(f"Demo model on CPU, {args.tokens} new tokens per request")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mixed-requests", type=int, default=48, help="requests per engine round (mixed max_tokens)")
    parser.add_argument("--only", choices=["engines", "structured"], help="run only that comparison")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--requests", type=int, default=24, help="requests per batching run (at least 3 x concurrency)")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per request in the batching runs")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each comparison")
    parser.add_argument("--hits", type=int, default=400, help="cache-hit requests per gateway round")
    parser.add_argument("--misses", type=int, default=10, help="cache-miss requests per path")
    parser.add_argument("--decode-tokens", type=int, default=64, help="new tokens in the batch-1 decode measurement")
    parser.add_argument("--demo-dir", default=str(Path.home() / ".cache" / "llava-service" / "demo-model-v1"))
    args = parser.parse_args(argv)
    command = ("python -m bench.run_cpu " + " ".join(sys.argv[1:] if argv is None else argv)).strip()
    if args.only == "structured":
        print("\n".join(structured_lines(structured(args))))
        return 0
    engine_rows = engines(args)
    if args.only == "engines":
        print("\n".join(engine_lines(engine_rows, args)))
        return 0
    structured_rows = structured(args)
    batch_rows = batching(args)
    gateway = gateway_overhead(args)
    decode_rows = decode_modes(args)
    RESULTS.mkdir(exist_ok=True)
    table = report(engine_rows, structured_rows, batch_rows, gateway, decode_rows, args, command)
    (RESULTS / "cpu.md").write_text(table)
    plot(batch_rows, args, RESULTS / "cpu-concurrency.png")
    print(table)
    print(f"written: {RESULTS / 'cpu.md'}, {RESULTS / 'cpu-concurrency.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
