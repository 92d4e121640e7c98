"""GPU benchmark: the full LLaVA-1.6-7B architecture (random bf16 weights; speed does
not depend on weight values) served by the real llava_server.py, so HTTP, image
preprocessing and batching are included. Nothing is downloaded.

    python -m bench.gpu                # on a CUDA host; without one it says so and exits
    python -m bench.gpu --tiny --allow-cpu   # the same path at demo size (smoke test)

Reports load time, time to first token for one 672x672 image, decode tokens/s at
batch 1, aggregate tokens/s at concurrency 8 and 16 (fixed new tokens), p50/p95
latency at concurrency 8 and GPU memory, beside the memory-bandwidth limit and a
reference engine, for each decode mode: eager (before) and compiled (after: static
KV cache + torch.compile / CUDA graphs). Writes bench/results/gpu.md.
"""
from __future__ import annotations

import argparse
import datetime
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench import load
from bench.run_cpu import b64, jpeg
from tests.procs import Proc, free_port, python

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
H100_BANDWIDTH_TOKENS_S = 240  # 13.2 GiB of bf16 weights read per token at ~3.35 TB/s
SGLANG_TOKENS_S = 135.6        # Llama-3-8B decode at batch 1 (anchors.md)


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


def chat(image_seed: int, tokens: int) -> dict:
    return {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + b64(jpeg(image_seed, 672, 672))}},
        {"type": "text", "text": "Describe this product photo in detail."}]}],
        "max_tokens": tokens, "min_tokens": tokens, "temperature": 0}


def measure(mode: str, checkpoint: Path, args, device: str) -> dict:
    """One llava_server.py with DECODE_MODE=mode: start, measure, stop."""
    import torch

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"MODEL_PATH": str(checkpoint), "RANDOM_WEIGHTS": "1", "MODEL_PORT": str(port), "MAX_QUEUE": "64",
           "WARMUP_REQUESTS": "3", "MAX_BATCH_SIZE": str(args.max_batch_size),
           "MAX_NEW_TOKENS_LIMIT": str(max(1024, args.tokens)), "DECODE_MODE": mode}
    if not torch.cuda.is_available():
        env["COMPILE_MODE"] = "default"  # CUDA graphs need CUDA
    print(f"[gpu] {mode} decode: starting llava_server.py on the {'tiny' if args.tiny else '7B'} architecture, "
          f"random weights, on {device}" + (" (the warmup builds the compiled step)" if mode == "compiled" else ""),
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
        # A compiled server that fell back to eager would be measuring the wrong thing.
        served = requests.get(url + "/health", timeout=10).json().get("decode")
        if served != mode:
            raise SystemExit(f"asked for {mode} decode, the server ran {served}: see its log")
        return {"ready_s": ready_s, "load_s": metric(url, "llava_model_load_seconds") or 0.0,
                "warmup_s": metric(url, "llava_model_warmup_seconds") or 0.0, "ttft": ttft,
                "batch1": (args.tokens - 1) / max(full - ttft, 1e-9), "rows": rows,
                "memory": metric(url, "llava_model_gpu_memory_used_bytes") or 0.0}


def report(results: dict, args, argv_text: str, device: str) -> str:
    import torch

    modes = list(results)
    both = len(modes) == 2

    def row(name: str, values: list[str], ratio: float | None = None) -> str:
        cells = values + ([f"{ratio:.2f}x" if ratio is not None else ""] if both else [])
        return f"| {name} | " + " | ".join(cells) + " |"

    def ratio(key) -> float | None:
        if not both:
            return None
        a, b = (key(results[m]) for m in modes)
        return b / a if a else None

    header = ["eager (before)" if m == "eager" else "compiled (after)" for m in modes]
    lines = ["# GPU benchmark: LLaVA-1.6-7B architecture, random bf16 weights, real llava_server.py", "",
             f"Command: `python -m bench.gpu {argv_text}`  ",
             f"Date: {datetime.datetime.now():%Y-%m-%d %H:%M}, device: {device}, torch {torch.__version__}, "
             f"MAX_BATCH_SIZE={args.max_batch_size}"
             + (" — TINY smoke-test architecture, not a measurement of the 7B model" if args.tiny else ""), "",
             "eager = `DECODE_MODE=eager` (dynamic KV cache); compiled = `DECODE_MODE=compiled` (static KV cache + "
             "torch.compile of the decode step, CUDA graphs on a GPU).", "",
             "| measurement | " + " | ".join(header) + (" | compiled / eager |" if both else " |"),
             "|---|" + "---|" * (len(modes) + (1 if both else 0)),
             row("process start to ready (load + warmup)",
                 [f"{r['ready_s']:.1f} s (weights {r['load_s']:.1f} s, warmup {r['warmup_s']:.1f} s)"
                  for r in results.values()]),
             row(f"time to first token, one 672x672 image (2,9xx prompt tokens), median of {args.repeats}",
                 [f"{r['ttft'] * 1000:.0f} ms" for r in results.values()], ratio(lambda r: r["ttft"])),
             row(f"decode at batch 1, {args.tokens} new tokens",
                 [f"{r['batch1']:.1f} tokens/s" for r in results.values()], ratio(lambda r: r["batch1"]))]
    for index, concurrency in enumerate(args.concurrency):
        lines.append(row(f"aggregate at concurrency {concurrency}, {args.tokens} new tokens each",
                         [f"{r['rows'][index][1].tokens_per_s:.0f} tokens/s" for r in results.values()],
                         ratio(lambda r: r["rows"][index][1].tokens_per_s)))
        if concurrency == 8:
            lines.append(row("latency at concurrency 8: p50 / p95",
                             [f"{r['rows'][index][1].p50:.2f} s / {r['rows'][index][1].percentile(0.95):.2f} s"
                              for r in results.values()], ratio(lambda r: r["rows"][index][1].p50)))
    lines += [row("GPU memory allocated after the runs", [f"{r['memory'] / 2**30:.1f} GiB" for r in results.values()]),
              ""]
    for mode, r in results.items():
        lines.append(f"{mode.capitalize()} batch-1 decode is {r['batch1'] / H100_BANDWIDTH_TOKENS_S:.0%} of the H100's "
                     f"memory-bandwidth limit (~{H100_BANDWIDTH_TOKENS_S} tokens/s: 13.2 GiB of weights read per "
                     f"token) and {r['batch1'] / SGLANG_TOKENS_S:.0%} of what SGLang reaches for a 7-8B model "
                     f"(~{SGLANG_TOKENS_S:.0f} tokens/s).  ")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="demo-size architecture (a smoke test of this script)")
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (with --tiny)")
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per request")
    parser.add_argument("--repeats", type=int, default=3, help="single-request measurements to take the median of")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--decode", nargs="+", choices=["eager", "compiled"], default=["eager", "compiled"],
                        help="decode modes to measure, one server each (default: both, before and after)")
    parser.add_argument("--max-batch-size", type=int, default=8, help="MAX_BATCH_SIZE of the model process")
    parser.add_argument("--output", default=str(RESULTS / "gpu.md"))
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("bench.gpu: no CUDA GPU here; this benchmark needs one (run it on a GPU host). Nothing measured.")
        return 0
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    work = Path(tempfile.mkdtemp(prefix="llava-gpu-bench-"))
    try:
        checkpoint = build_checkpoint(work / "llava-7b-random", args.tiny)
        results = {mode: measure(mode, checkpoint, args, device) for mode in args.decode}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    text = report(results, args, " ".join(sys.argv[1:] if argv is None else argv), device)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
