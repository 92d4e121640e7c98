"""The model process's settings: one frozen object, read once from the environment."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from llava_common import logs
from llava_common.settings import boolean, choice, integer, load, number, setting, text

from . import decode

DEFAULT_MODEL = "llava-hf/llava-v1.6-vicuna-7b-hf"


def _default_cache() -> str:
    return str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "llava-service")


@dataclass(frozen=True)
class ModelSettings:
    """`HF_HOME` (transformers' own) says where hub checkpoints are cached;
    `HF_HUB_OFFLINE=1` forbids downloads."""

    model_path: str = setting("MODEL_PATH", DEFAULT_MODEL, text,
                              "Hugging Face id or local directory of a llava-hf LLaVA-NeXT checkpoint; `demo` = the "
                              "built-in tiny demo model")
    served_model_name: str = setting("SERVED_MODEL_NAME", "", text,
                                     "Model name reported in responses and /v1/models (default: derived from "
                                     "MODEL_PATH)")
    host: str = setting("MODEL_HOST", "127.0.0.1", text,
                        "Address the model process listens on (0.0.0.0 inside a container)")
    port: int = setting("MODEL_PORT", 8081, integer(0, 65535),
                        "Port of the model process's internal API (0 = any free port)")
    device: str = setting("DEVICE", "auto", choice("auto", "cuda", "cpu"),
                          "Where the model runs: auto = cuda when available, else cpu")
    dtype: str = setting("DTYPE", "auto", choice("auto", "bfloat16", "float16", "float32"),
                         "Weight dtype: auto = bf16 on GPUs that support it, fp16 on other GPUs, fp32 on CPU")
    demo_dir: str = setting("DEMO_MODEL_DIR", "", text,
                            "Where the demo model is built (default: ~/.cache/llava-service/demo-model-v1)")
    engine: str = setting("ENGINE", "continuous", choice("continuous", "generate"),
                          "continuous = rows join and leave the running batch between decode steps (KV slots, CUDA "
                          "graphs on a GPU); generate = static batches through transformers' generate (the reference)")
    max_batch_size: int = setting("MAX_BATCH_SIZE", 32, integer(1, 256),
                                  "Most requests decoding together: caps the continuous engine's KV rows (which are "
                                  "also sized from memory) and the generate engine's batch; 1 disables batching")
    kv_cache_memory_fraction: float = setting("KV_CACHE_MEMORY_FRACTION", 0.9, number(0.05, 1.0),
                                              "continuous: share of the GPU's memory this process may use, weights "
                                              "included; what is left after the weights and the largest prefill "
                                              "becomes KV rows (like vLLM's gpu_memory_utilization). On the CPU: "
                                              "share of the memory available after loading")
    max_model_len: int = setting("MAX_MODEL_LEN", 0, integer(0, 1_000_000),
                                 "continuous: tokens one KV row holds, prompt and answer (0 = the model's context, "
                                 "4,096 for LLaVA-1.6-7B); lower it for more rows on a small GPU")
    prefill_chunk_tokens: int = setting("PREFILL_CHUNK_TOKENS", 512, integer(16, 65_536),
                                        "continuous: while rows decode, a new prompt is written in chunks of this many "
                                        "tokens, one chunk between two decode steps (a whole prompt when none decode)")
    cuda_graphs: bool = setting("CUDA_GRAPHS", True, boolean,
                                "continuous, on CUDA: capture the decode step as CUDA graphs during warmup (false = "
                                "launch it eagerly, for debugging)")
    max_batch_wait_ms: float = setting("MAX_BATCH_WAIT_MS", 25.0, number(0, 10_000),
                                       "generate: how long a batch waits for requests still being preprocessed to join "
                                       "it, counted from when both its first request and the engine are ready (0 = "
                                       "start at once)")
    max_queue: int = setting("MAX_QUEUE", 64, integer(1, 100_000),
                             "Requests waiting for a row; past it new requests get 429")
    http_threads: int = setting("HTTP_THREADS", 128, integer(4, 4096),
                                "Waitress worker threads (each waiting or streaming request holds one)")
    max_new_tokens: int = setting("MAX_NEW_TOKENS_LIMIT", 1024, integer(1, 32_768),
                                  "Largest max_tokens a request may ask for")
    max_prompt_chars: int = setting("MAX_PROMPT_CHARS", 8000, integer(1, 1_000_000),
                                    "Longest text a request may carry, in characters")
    max_images: int = setting("MAX_IMAGES_PER_REQUEST", 4, integer(1, 64), "Most images in one request")
    max_image_bytes: int = setting("MAX_IMAGE_BYTES", 20 * 1024 * 1024, integer(1),
                                   "Largest decoded image file, in bytes")
    max_image_pixels: int = setting("MAX_IMAGE_PIXELS", 40_000_000, integer(1),
                                    "Largest image, in pixels (width x height), checked before decoding: stops "
                                    "decompression bombs")
    max_body_bytes: int = setting("MAX_BODY_BYTES", 64 * 1024 * 1024, integer(1024),
                                  "Largest request body, in bytes (413 past it)")
    mask_budget_ms: float = setting("GRAMMAR_MASK_BUDGET_MS", 10.0, number(0.01, 10_000),
                                    "Longest one token's mask of a structured-output row may take (CPU time of the "
                                    "engine thread); past it that row alone fails with 400 invalid_request")
    mask_average_ms: float = setting("GRAMMAR_MASK_AVERAGE_MS", 0.5, number(0.001, 10_000),
                                     "Most a structured-output row's masks may take per token on average, after its "
                                     "first 32 tokens; past it that row alone fails with 400 invalid_request")
    warmup_requests: int = setting("WARMUP_REQUESTS", 3, integer(0, 100),
                                   "Real requests run through the full path before /health turns 200")
    warmup_tokens: int = setting("WARMUP_TOKENS", 8, integer(1, 1024), "New tokens generated by each warmup request")
    shutdown_grace_s: float = setting("SHUTDOWN_GRACE_SECONDS", 20.0, number(0, 3600),
                                      "On SIGTERM, how long in-flight requests may take to finish")
    decode_mode: str = setting("DECODE_MODE", decode.AUTO, choice(*decode.MODES),
                               "generate: how the per-token decode step runs: compiled = static KV cache + "
                               "torch.compile (CUDA "
                               "graphs); eager = dynamic cache, plain PyTorch; auto = compiled on CUDA, eager "
                               "elsewhere, "
                               "and eager for good if compiling fails (logged)")
    compile_backend: str = setting("COMPILE_BACKEND", "inductor", choice(*decode.BACKENDS),
                                   "generate: torch.compile backend of the compiled decode step (aot_eager/eager: no "
                                   "C compiler or "
                                   "Triton needed, for debugging)")
    compile_mode: str = setting("COMPILE_MODE", "reduce-overhead", choice(*decode.COMPILE_MODES),
                                "generate: torch.compile mode with the inductor backend (reduce-overhead = CUDA "
                                "graphs)")
    static_cache_tokens: int = setting("STATIC_CACHE_TOKENS", 0, integer(0, 1_000_000),
                                       "generate: KV cache length per batch row in compiled mode (0 = the model's "
                                       "context length); "
                                       "fixed so the compiled step is not rebuilt for each prompt length. Memory: "
                                       "~0.5 MiB per token per row for the 7B model in bf16")
    log_level: str = setting("LOG_LEVEL", "info", choice(*logs.LEVELS), "Log verbosity")
    random_weights: bool = setting("RANDOM_WEIGHTS", False, boolean,
                                   "Benchmarks only: build the model from MODEL_PATH's config with random weights on "
                                   "the device instead of loading weights (speed does not depend on weight values)")
    inject_faults: bool = setting("LLAVA_FAULTS", False, boolean,
                                  "Testing only: serve POST /_faults, which injects failures (oom, error, slow) into "
                                  "generate")

    def __post_init__(self):
        if self.http_threads < self.max_queue + self.max_batch_size + 4:
            # Otherwise waitress queues connections silently before the engine can answer 429.
            raise ValueError(f"HTTP_THREADS ({self.http_threads}) must be at least MAX_QUEUE + MAX_BATCH_SIZE + 4 "
                             f"({self.max_queue + self.max_batch_size + 4})")

    @property
    def is_demo(self) -> bool:
        return self.model_path == "demo"

    @property
    def model_name(self) -> str:
        if self.served_model_name:
            return self.served_model_name
        return "llava-demo" if self.is_demo else self.model_path.rstrip("/").split("/")[-1]

    @property
    def demo_model_dir(self) -> Path:
        return Path(self.demo_dir) if self.demo_dir else Path(_default_cache()) / "demo-model-v1"

    @classmethod
    def from_env(cls, environ=None) -> "ModelSettings":
        return load(cls, os.environ if environ is None else environ)
