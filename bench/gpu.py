"""GPU benchmark: the full LLaVA-1.6-7B architecture (random bf16 weights; speed does
not depend on weight values) served by the real llava_server.py, so HTTP, image
preprocessing and batching are included. Nothing is downloaded.

    python -m bench.gpu                # on a CUDA host; without one it says so and exits
    python -m bench.gpu --tiny --allow-cpu   # the same path at demo size (smoke test)

Reports process start to ready, time to first token for one 672x672 image, decode
tokens/s at batch 1, aggregate tokens/s at concurrency 8 and 16 (fixed new tokens),
p50/p95 latency at concurrency 8 and GPU memory for each engine, one server each,
side by side: ENGINE=generate (static batches through `generate`, its compiled
decode step on a GPU) and ENGINE=continuous (KV slots, continuous batching, CUDA
graphs). Each figure stands beside its physical ceiling (`Ceiling`: the weights
and every row's KV read once per decode step at the card's memory bandwidth, the
prefill at its matrix throughput) and the issue's target. Writes bench/results/gpu.md.
Both engines fit in about 6 minutes on an H100.
"""
from __future__ import annotations

import argparse
import datetime
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from bench import load
from bench.run_cpu import QC_SCHEMA, b64, jpeg
from harness.procs import Proc, free_port, python

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
SGLANG_TOKENS_S = 135.6        # Llama-3-8B decode at batch 1 (anchors.md)
ENGINES = ("generate", "continuous")
# Targets of the continuous engine on an H100 (the issue that built it).
TARGETS = {"ready_s": 45.0, "ttft": 0.100, "batch1": 170.0, 8: 480.0, 16: 580.0, "p95_8": 2.0}


@dataclass(frozen=True)
class Ceiling:
    """What the card allows for this work (notes/gpu-h100-measured.md): a decode step
    reads the language model's weights plus every running row's KV once; a prefill
    is 2 x parameters x prompt tokens of matrix work."""
    bandwidth: float = 3.35e12           # bytes/s, H100 SXM HBM3 (H200: 4.8e12)
    matrix_flops: float = 600e12         # bf16, what a 3k-token prefill reaches in practice (~70 ms measured)
    weight_bytes: float = 13.2 * 2**30   # the language model's bf16 weights
    kv_per_token: float = 0.5 * 2**20    # 32 layers x 2 x 32 heads x 128 x 2 bytes
    parameters: float = 6.9e9            # language model + vision tower, per prompt token

    @classmethod
    def for_device(cls, name: str) -> "Ceiling":
        return cls(bandwidth=4.8e12) if "H200" in name else cls()

    def step_s(self, rows: int, prompt: int, new: int) -> float:
        held = prompt + new / 2  # on average over the answer
        return (self.weight_bytes + rows * held * self.kv_per_token) / self.bandwidth

    def prefill_s(self, prompt: int) -> float:
        return 2 * self.parameters * prompt / self.matrix_flops

    def batch1(self, prompt: int, new: int) -> float:
        return 1 / self.step_s(1, prompt, new)

    def aggregate(self, rows: int, prompt: int, new: int) -> float:
        """tokens/s of `rows` requests served together, their prefills counted."""
        return rows * new / (rows * self.prefill_s(prompt) + new * self.step_s(rows, prompt, new))

    def latency(self, rows: int, prompt: int, new: int) -> float:
        return rows * self.prefill_s(prompt) + new * self.step_s(rows, prompt, new)


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


def count_prompt_tokens(checkpoint: Path) -> int:
    """Prompt tokens of the benchmark's request (one 672x672 image + its text)."""
    from transformers import AutoProcessor

    from llava_runtime.inputs import Limits, parse_chat, prepare
    from llava_runtime.settings import ModelSettings

    processor = AutoProcessor.from_pretrained(checkpoint)
    request = parse_chat(chat(0, 1), Limits(ModelSettings()))
    return prepare(request, processor, 1 << 20, processor.tokenizer.convert_tokens_to_ids("<image>")).prompt_tokens


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
        raise SystemExit(f"schema runs failed: {constrained.labels} {free.labels}")
    return constrained.tokens_per_s, free.tokens_per_s


def measure(mode: str, checkpoint: Path, args, device: str) -> dict:
    """One llava_server.py with ENGINE=mode: start, measure, stop."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"MODEL_PATH": str(checkpoint), "RANDOM_WEIGHTS": "1", "MODEL_PORT": str(port), "MAX_QUEUE": "64",
           "WARMUP_REQUESTS": "3", "MAX_BATCH_SIZE": str(args.max_batch_size),
           "MAX_NEW_TOKENS_LIMIT": str(max(1024, args.tokens)), "ENGINE": mode, "LOG_LEVEL": "warning"}
    print(f"[gpu] ENGINE={mode}: starting llava_server.py on the {'tiny' if args.tiny else '7B'} architecture, "
          f"random weights, on {device}" + (" (the warmup builds the compiled step)" if mode == "generate" else ""),
          file=sys.stderr)
    started = time.perf_counter()
    with Proc(python("llava_server.py"), env=env) as server:
        server.wait_for(url + "/health", 200, timeout=1800)
        ready_s = time.perf_counter() - started
        print(f"[gpu] {mode}: ready in {ready_s:.1f}s; measuring time to first token and batch-1 decode",
              file=sys.stderr)
        # Measured on whole completions, not on streamed text: random weights may
        # emit tokens that decode to nothing. TTFT = a 1-token completion; decode
        # rate = the extra tokens over the extra time of a longer one.
        ttft = statistics.median(completion_seconds(url, chat(i, 1)) for i in range(args.repeats))
        full = statistics.median(completion_seconds(url, chat(100 + i, args.tokens)) for i in range(args.repeats))
        rows = []
        for concurrency in args.concurrency:
            bodies = [chat(1000 * concurrency + i, args.tokens) for i in range(2 * concurrency)]
            result = load.run(load.post_json(url + "/v1/chat/completions"), bodies, concurrency,
                              f"[gpu] {mode}, concurrency {concurrency}")
            if result.errors:
                raise SystemExit(f"{result.errors} requests failed at concurrency {concurrency}: {result.labels}")
            rows.append((concurrency, result))
        schema = schema_cost(url, mode) if args.schema else None
        health = requests.get(url + "/health", timeout=10).json()
        if health.get("engine") != mode:
            raise SystemExit(f"asked for ENGINE={mode}, the server ran {health.get('engine')}: see its log")
        return {"ready_s": ready_s, "decode": health.get("decode"), "rows_held": health.get("rows"), "schema": schema,
                "load_s": metric(url, "llava_model_load_seconds") or 0.0,
                "warmup_s": metric(url, "llava_model_warmup_seconds") or 0.0, "ttft": ttft,
                "batch1": (args.tokens - 1) / max(full - ttft, 1e-9), "rows": rows,
                "memory": metric(url, "llava_model_gpu_memory_used_bytes") or 0.0}


def report(results: dict, args, argv_text: str, device: str, prompt_tokens: int) -> str:
    import torch

    ceiling = Ceiling.for_device(device)
    engines = list(results)
    new = args.tokens

    def row(name: str, values: list[str], limit: str, target: str = "") -> str:
        return f"| {name} | " + " | ".join(values) + f" | {limit} | {target} |"

    def cells(key, fmt) -> list[str]:
        return [fmt(key(r)) for r in results.values()]

    lines = ["# GPU benchmark: LLaVA-1.6-7B architecture, random bf16 weights, real llava_server.py", "",
             f"Command: `python -m bench.gpu {argv_text}`  ",
             f"Date: {datetime.datetime.now():%Y-%m-%d %H:%M}, device: {device}, torch {torch.__version__}, "
             f"MAX_BATCH_SIZE={args.max_batch_size}, one 672x672 image per request ({prompt_tokens} prompt tokens), "
             f"{new} new tokens each (min_tokens), greedy"
             + (" — TINY smoke-test architecture, not a measurement of the 7B model" if args.tiny else ""), "",
             "generate = `ENGINE=generate` (static batches through transformers' generate, compiled decode step on "
             "a GPU); continuous = `ENGINE=continuous` (KV slots, rows join and leave between steps, CUDA graphs). "
             "Ceiling: weights + each row's KV read once per step at the card's bandwidth, prefill at "
             f"{ceiling.matrix_flops / 1e12:.0f} TFLOP/s.", "",
             "| measurement | " + " | ".join(engines) + " | ceiling | target (continuous) |",
             "|---|" + "---|" * (len(engines) + 2),
             row("process start to ready (load + warmup)",
                 cells(lambda r: r, lambda r: f"{r['ready_s']:.1f} s (weights {r['load_s']:.1f} s, warmup "
                                              f"{r['warmup_s']:.1f} s)"), "weights load + seconds",
                 f"<= {TARGETS['ready_s']:.0f} s"),
             row(f"time to first token, alone, median of {args.repeats}",
                 cells(lambda r: r["ttft"], lambda v: f"{v * 1000:.0f} ms"),
                 f"{ceiling.prefill_s(prompt_tokens) * 1000:.0f} ms", f"<= {TARGETS['ttft'] * 1000:.0f} ms"),
             row("decode at batch 1", cells(lambda r: r["batch1"], lambda v: f"{v:.1f} tokens/s"),
                 f"{ceiling.batch1(prompt_tokens, new):.0f} tokens/s", f">= {TARGETS['batch1']:.0f} tokens/s")]
    for index, concurrency in enumerate(args.concurrency):
        lines.append(row(f"aggregate at concurrency {concurrency} (prefill counted)",
                         cells(lambda r: r["rows"][index][1].tokens_per_s, lambda v: f"{v:.0f} tokens/s"),
                         f"{ceiling.aggregate(concurrency, prompt_tokens, new):.0f} tokens/s",
                         f">= {TARGETS[concurrency]:.0f} tokens/s" if concurrency in TARGETS else ""))
        if concurrency == 8:
            lines.append(row("latency at concurrency 8: p50 / p95",
                             cells(lambda r: r["rows"][index][1],
                                   lambda v: f"{v.p50:.2f} s / {v.percentile(0.95):.2f} s"),
                             f"{ceiling.latency(8, prompt_tokens, new):.2f} s", f"p95 <= {TARGETS['p95_8']:.1f} s"))
    if args.schema:
        lines.append(row("structured output: tokens/s at concurrency 8 with a JSON Schema / free text of as many "
                         "tokens", cells(lambda r: r["schema"], lambda v: f"{v[0]:.0f} / {v[1]:.0f} = "
                                                                        f"{v[0] / v[1]:.2f}x"), "", ""))
    lines += [row("decode step as served (`/health` decode)", cells(lambda r: r["decode"], str), "", ""),
              row("GPU memory allocated after the runs (continuous: KV rows preallocated)",
                  cells(lambda r: r, lambda r: f"{r['memory'] / 2**30:.1f} GiB"
                        + (f", {r['rows_held']} KV rows" if r.get("rows_held") else "")), "", ""), ""]
    for mode, r in results.items():
        lines.append(f"{mode}: batch-1 decode is {r['batch1'] / ceiling.batch1(prompt_tokens, new):.0%} of the "
                     f"ceiling and {r['batch1'] / SGLANG_TOKENS_S:.0%} of what SGLang reaches for a 7-8B model "
                     f"(~{SGLANG_TOKENS_S:.0f} tokens/s).  ")
    if len(results) == 2:
        a, b = results["generate"], results["continuous"]
        lines.append(f"continuous / generate: batch-1 decode {b['batch1'] / a['batch1']:.2f}x; " + "; ".join(
            f"concurrency {c} {b['rows'][i][1].tokens_per_s / a['rows'][i][1].tokens_per_s:.2f}x"
            for i, c in enumerate(args.concurrency)) + ".")
    lines.append(f"Whole run: {args.elapsed_s:.0f} s.")
    return "\n".join(lines) + "\n"


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
                        help="engines to measure, one server each (default: both, side by side)")
    parser.add_argument("--max-batch-size", type=int, default=16,
                        help="MAX_BATCH_SIZE of the model process (the generate engine's batch, the continuous "
                             "engine's most rows)")
    parser.add_argument("--output", default=str(RESULTS / "gpu.md"))
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("bench.gpu: no CUDA GPU here; this benchmark needs one (run it on a GPU host). Nothing measured.")
        return 0
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="llava-gpu-bench-"))
    try:
        checkpoint = build_checkpoint(work / "llava-7b-random", args.tiny)
        prompt_tokens = count_prompt_tokens(checkpoint)
        results = {mode: measure(mode, checkpoint, args, device) for mode in args.engines}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.elapsed_s = time.perf_counter() - started

    text = report(results, args, " ".join(sys.argv[1:] if argv is None else argv), device, prompt_tokens)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
