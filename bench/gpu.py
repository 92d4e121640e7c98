"""GPU benchmark: the full LLaVA-1.6-7B architecture (random bf16 weights; speed does
not depend on weight values) served by the real llava_server.py, so HTTP, image
preprocessing and batching are included. Nothing is downloaded.

    python -m bench.gpu                # on a CUDA host; without one it says so and exits
    python -m bench.gpu --tiny --allow-cpu   # the same path at demo size (smoke test)

First the card (bench/card.py: device-to-device copy bandwidth, bf16 matrix
throughput), then, for each engine (one server each, ENGINE=continuous first):
process start to ready, time to first token for one 672x672 image, decode tokens/s
at batch 1, aggregate tokens/s at concurrency 8 and 16 (fixed new tokens), p50/p95
latency at concurrency 8, structured output and GPU memory. Each figure stands
beside the ceiling computed from the card's two numbers (bench/ceiling.py) and its
target, as a fraction of the ceiling with pass/miss. bench/results/gpu.md is
rewritten as each figure lands (bench/gpu_report.py): a time limit's SIGINT or a
failed part leaves every figure measured before it. Both engines take about 6
minutes on an H100.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench import load
from bench.ceiling import Ceiling, Shapes
from bench.gpu_report import MISSING, Report, rows
from bench.run_cpu import QC_SCHEMA, b64, jpeg
from harness.procs import Proc, child_env, free_port, python

RESULTS = Path(__file__).resolve().parent / "results"
# ../shared/notes/llava-offline.md: llava-hf/llava-v1.6-vicuna-7b-hf
VISION_7B = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                 image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu", layer_norm_eps=1e-5)
TEXT_7B = dict(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
               num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5)
VISION_TINY = dict(VISION_7B, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                   projection_dim=32)
TEXT_TINY = dict(TEXT_7B, vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=4)
ENGINES = ("continuous", "generate")  # the engine this benchmark is for first: a time limit cuts the other


def build_checkpoint(out: Path, tiny: bool) -> Path:
    """config.json (the 7B architecture) + the demo model's processor (real image
    geometry; its tokenizer's ids fit the 7B vocabulary). No weights."""
    from transformers import AutoProcessor, CLIPVisionConfig, GenerationConfig, LlamaConfig, LlavaNextConfig

    from llava_runtime.demo_model import GRID_PINPOINTS, ensure_demo_model

    demo = ensure_demo_model(out.parent / "demo-model")
    processor = AutoProcessor.from_pretrained(demo)
    tok = processor.tokenizer
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    config = LlavaNextConfig(vision_config=CLIPVisionConfig(**(VISION_TINY if tiny else VISION_7B)).to_dict(),
                             text_config=LlamaConfig(**(TEXT_TINY if tiny else TEXT_7B), **ids).to_dict(),
                             image_token_index=tok.convert_tokens_to_ids("<image>"),
                             image_grid_pinpoints=GRID_PINPOINTS,
                             vision_feature_layer=-2, vision_feature_select_strategy="default", image_seq_length=576,
                             tie_word_embeddings=False)
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    GenerationConfig(**ids).save_pretrained(out)
    processor.save_pretrained(out)
    return out


def count_tokens(checkpoint: Path) -> tuple[int, int]:
    """Prompt tokens of the benchmark's request (one 672x672 image + its text), and
    the patches the vision tower sees for it (tiles x (patches per tile + 1))."""
    from transformers import AutoConfig, AutoProcessor

    from llava_runtime.inputs import Limits, parse_chat, prepare
    from llava_runtime.settings import ModelSettings

    processor = AutoProcessor.from_pretrained(checkpoint)
    request = parse_chat(chat(0, 1), Limits(ModelSettings()))
    prepared = prepare(request, processor, 1 << 20, processor.tokenizer.convert_tokens_to_ids("<image>"))
    tiles, _, size, _ = prepared.pixel_values.shape[-4:]
    patch = AutoConfig.from_pretrained(checkpoint).vision_config.patch_size
    return prepared.prompt_tokens, tiles * ((size // patch) ** 2 + 1)


def metric(url: str, name: str) -> float | None:
    for line in requests.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def completion_seconds(url: str, body: dict) -> float:
    """Wall time of one non-streamed completion (its tokens are fixed by min_tokens)."""
    started = time.perf_counter()
    response = requests.post(url + "/v1/chat/completions", json=body, timeout=600)
    response.raise_for_status()
    return time.perf_counter() - started


def chat(image_seed: int, tokens: int, schema: dict | None = None) -> dict:
    body = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + b64(jpeg(image_seed, 672, 672))}},
        {"type": "text", "text": "Describe this product photo in detail."}]}], "max_tokens": tokens, "temperature": 0}
    if schema is None:
        body["min_tokens"] = tokens
    else:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "qc", "schema": schema}}
    return body


def schema_cost(url: str, mode: str) -> tuple[float, float]:
    """Aggregate tokens/s at concurrency 8 with a JSON Schema, and free text of as many
    tokens per answer: (schema, free)."""
    send = load.post_json(url + "/v1/chat/completions")
    constrained = load.run(send, [chat(5000 + i, 160, QC_SCHEMA) for i in range(16)], 8, f"[gpu] {mode}, schema")
    tokens = max(1, round(constrained.tokens / 16))
    free = load.run(send, [chat(6000 + i, tokens) for i in range(16)], 8, f"[gpu] {mode}, free text")
    if constrained.errors or free.errors:
        raise RuntimeError(f"schema runs failed: {constrained.labels} {free.labels}")
    return constrained.tokens_per_s, free.tokens_per_s


def measure_card(timeout: float) -> dict:
    """bench/card.py in a child process: this process never holds a CUDA context."""
    done = subprocess.run(python("-m", "bench.card"), env=child_env(), capture_output=True, text=True,
                          timeout=timeout, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def log(text: str) -> None:
    print(f"[gpu] {text}", file=sys.stderr, flush=True)


def measure(mode: str, checkpoint: Path, args, device: str, report: Report, work: Path) -> None:
    """One llava_server.py with ENGINE=mode: start, measure (each figure into `report`
    as it lands), stop."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"MODEL_PATH": str(checkpoint), "RANDOM_WEIGHTS": "1", "MODEL_PORT": str(port), "MAX_QUEUE": "64",
           "WARMUP_REQUESTS": "3", "MAX_BATCH_SIZE": str(args.max_batch_size),
           "MAX_NEW_TOKENS_LIMIT": str(max(1024, args.tokens)), "ENGINE": mode, "LOG_LEVEL": "warning",
           "COMPILE_CACHE_DIR": str(args.compile_cache)}
    log(f"ENGINE={mode}: starting llava_server.py on the {'tiny' if args.tiny else '7B'} architecture, random "
        f"weights, on {device}" + (" (the warmup builds the compiled step)" if mode == "generate" else ""))
    started = time.perf_counter()
    server = Proc(python("llava_server.py"), env=env, log=work / f"server-{mode}.log", name=f"llava_server {mode}")
    log(f"{mode}: server pid {server.pid}")
    try:
        server.wait_for(url + "/health", 200, timeout=1800)
        ready_s = time.perf_counter() - started
        report.add(mode, "ready_s", {"ready_s": ready_s, "load_s": metric(url, "llava_model_load_seconds") or 0.0,
                                     "warmup_s": metric(url, "llava_model_warmup_seconds") or 0.0})
        health = requests.get(url + "/health", timeout=10).json()
        if health.get("engine") != mode:
            raise RuntimeError(f"asked for ENGINE={mode}, the server ran {health.get('engine')}")
        compiled = {True: "compiled layers", False: "uncompiled layers"}.get(health.get("compiled"))
        report.add(mode, "decode", ", ".join(str(part) for part in (
            health.get("decode"), health.get("cudaGraphs") and f"graphs {health['cudaGraphs']}",
            health.get("attention") and f"{health['attention']} attention", compiled) if part))
        log(f"{mode}: ready in {ready_s:.1f}s ({health.get('decode')}); time to first token and batch-1 decode")
        # Measured on whole completions, not on streamed text: random weights may
        # emit tokens that decode to nothing. TTFT = a 1-token completion; decode
        # rate = the extra tokens over the extra time of a longer one.
        ttft = statistics.median(completion_seconds(url, chat(i, 1)) for i in range(args.repeats))
        report.add(mode, "ttft", ttft)
        full = statistics.median(completion_seconds(url, chat(100 + i, args.tokens)) for i in range(args.repeats))
        report.add(mode, "batch1", (args.tokens - 1) / (full - ttft) if full > ttft else float("nan"))
        for concurrency in args.concurrency:
            bodies = [chat(1000 * concurrency + i, args.tokens) for i in range(2 * concurrency)]
            result = load.run(load.post_json(url + "/v1/chat/completions"), bodies, concurrency,
                              f"[gpu] {mode}, concurrency {concurrency}")
            if result.errors:
                raise RuntimeError(f"{result.errors} requests failed at concurrency {concurrency}: {result.labels}")
            report.add(mode, f"aggregate_{concurrency}", result.tokens_per_s)
            if concurrency == 8:
                report.add(mode, "latency_8", (result.p50, result.percentile(0.95)))
        if args.schema:
            report.add(mode, "schema", schema_cost(url, mode))
        report.add(mode, "memory", {"bytes": metric(url, "llava_model_gpu_memory_used_bytes") or 0.0,
                                    "rows": health.get("rows")})
    except BaseException:
        log(f"{mode}: the server's last output:\n{server.tail(3000)}")
        raise
    finally:
        server.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="demo-size architecture (a smoke test of this script)")
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (with --tiny)")
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per request")
    parser.add_argument("--repeats", type=int, default=3, help="single-request measurements to take the median of")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--no-schema", dest="schema", action="store_false",
                        help="skip the structured-output run (needs the llguidance and jsonschema wheels)")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES),
                        help="engines to measure, one server each, in this order (default: continuous, generate)")
    parser.add_argument("--max-batch-size", type=int, default=16,
                        help="MAX_BATCH_SIZE of the model process (the generate engine's batch, the continuous "
                             "engine's most rows)")
    parser.add_argument("--compile-cache", default=str(Path(tempfile.gettempdir()) / "llava-gpu-bench-compile"),
                        help="COMPILE_CACHE_DIR of the servers (kept between runs: a second run starts warm)")
    parser.add_argument("--output", default=str(RESULTS / "gpu.md"))
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("bench.gpu: no CUDA GPU here; this benchmark needs one (run it on a GPU host). Nothing measured.")
        return 0
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    command = " ".join(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="llava-gpu-bench-"))
    header = [f"Command: `python -m bench.gpu {command}`  ",
              f"Device: {device}, torch {torch.__version__}, MAX_BATCH_SIZE={args.max_batch_size}, one 672x672 "
              f"image per request, {args.tokens} new tokens each (min_tokens), greedy"
              + (" - TINY smoke-test architecture, not a measurement of the 7B model" if args.tiny else ""), "",
              "continuous = `ENGINE=continuous` (KV slots, rows join and leave between steps, CUDA graphs); "
              "generate = `ENGINE=generate` (static batches through transformers' generate, compiled decode step "
              "on a GPU)."]
    report = Report(Path(args.output), list(args.engines),
                    "GPU benchmark: LLaVA-1.6-7B architecture, random bf16 weights, real llava_server.py", header,
                    rows(args.concurrency, args.repeats))
    status = 0
    try:
        report.write()
        log("measuring the card: device-to-device copy bandwidth, matrix throughput")
        card = measure_card(timeout=300)
        checkpoint = build_checkpoint(work / "llava-7b-random", args.tiny)
        from transformers import AutoConfig

        prompt, vision = count_tokens(checkpoint)
        report.set_card(card, Ceiling(card["copy_bytes_per_s"], card["matmul_flops"],
                                      Shapes.of(AutoConfig.from_pretrained(checkpoint)), prompt, vision, args.tokens))
        for mode in args.engines:
            try:
                measure(mode, checkpoint, args, device, report, work)
            except Exception as exc:  # one engine's failure must not cost the other's figures
                report.note(f"{mode}: failed after {time.perf_counter() - started:.0f} s: "
                            f"{type(exc).__name__}: {str(exc).strip()[:400]}")
                status = 1
    except KeyboardInterrupt:  # `timeout -s INT`: keep what was measured
        report.note(f"stopped after {time.perf_counter() - started:.0f} s (SIGINT: a time limit); every figure "
                    f"above was measured before it; '{MISSING}' ones were not reached")
        status = 130
    except Exception as exc:
        report.note(f"failed after {time.perf_counter() - started:.0f} s: {type(exc).__name__}: "
                    f"{str(exc).strip()[:400]}")
        status = 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
        report.note(f"Whole run: {time.perf_counter() - started:.0f} s.")
        print(report.render())
    return status


if __name__ == "__main__":
    sys.exit(main())
