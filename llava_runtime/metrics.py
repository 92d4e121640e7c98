"""The model process's Prometheus metrics: every name in one place (docs/DESIGN.md pins
the `llava_` prefix). One registry per app, so tests and processes never share state."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120)
_FAST = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


class ModelMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("llava_model_requests",
                                "Requests answered by the model process, by endpoint and outcome code",
                                ["endpoint", "code"], registry=r)
        self.ttft = Histogram("llava_model_time_to_first_token_seconds", "Arrival to first generated token",
                              buckets=_FAST + (60,), registry=r)
        self.e2e = Histogram("llava_model_e2e_latency_seconds", "Arrival to last token (successful generations)",
                             buckets=_LATENCY, registry=r)
        self.queue_wait = Histogram("llava_model_queue_wait_seconds",
                                    "Time a request waited for a row (continuous engine) or its batch (generate "
                                    "engine) to start",
                                    buckets=_FAST, registry=r)
        self.preprocess = Histogram("llava_model_preprocess_seconds", "Image decoding, tiling and tokenisation per "
                                                                      "request",
                                    buckets=_FAST, registry=r)
        self.batch_size = Histogram("llava_model_batch_size",
                                    "Rows per decode step (continuous engine) or requests per generate call",
                                    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128), registry=r)
        self.prompt_tokens = Counter("llava_model_prompt_tokens", "Prompt tokens processed (image tokens included)",
                                     registry=r)
        self.generation_tokens = Counter("llava_model_generation_tokens", "Tokens generated (rate(): tokens/s)",
                                         registry=r)
        self.running = Gauge("llava_model_requests_running", "Requests decoding now (rows of the running batch)",
                             registry=r)
        self.waiting = Gauge("llava_model_requests_waiting", "Requests queued for a row", registry=r)
        # Continuous engine only: its KV slots, steps and CUDA graphs.
        self.kv_slots = Gauge("llava_model_kv_slots", "Continuous engine: rows of KV cache allocated (each holds a "
                              "whole context)",
                              registry=r)
        self.kv_slots_used = Gauge("llava_model_kv_slots_used", "Continuous engine: KV rows held by decoding or "
                                   "prefilling requests",
                                   registry=r)
        self.rows_free = Gauge("llava_model_rows_free", "Continuous engine: KV rows free for the next request",
                               registry=r)
        self.kv_tokens_used = Gauge("llava_model_kv_tokens_used", "Continuous engine: positions held in the KV rows of "
                                    "decoding requests",
                                    registry=r)
        self.prefill = Histogram("llava_model_prefill_seconds",
                                 "Continuous engine: start of a request's prefill (vision + prompt) to its first token",
                                 buckets=_FAST, registry=r)
        self.decode_step = Histogram("llava_model_decode_step_seconds",
                                     "Continuous engine: device time of one decode step (all rows)",
                                     buckets=(0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1),
                                     registry=r)
        self.attention_read_ratio = Histogram("llava_model_attention_read_ratio",
                                              "Continuous engine: KV positions a decode step reads over "
                                              "the positions its rows hold (1 = nothing wasted)",
                                              buckets=(1, 1.1, 1.25, 1.5, 2, 3, 5, 10), registry=r)
        self.tokens_per_second = Gauge("llava_model_decode_tokens_per_second", "Tokens generated per second, last 5 s",
                                       registry=r)
        self.cuda_graphs = Gauge("llava_model_cuda_graphs", "Continuous engine: decode-step CUDA graphs captured (0: "
                                 "eager steps)",
                                 registry=r)
        self.cuda_graph_capture_failed = Gauge("llava_model_cuda_graph_capture_failed",
                                               "Continuous engine: 1 when capturing the decode step "
                                               "failed and steps run uncaptured",
                                               registry=r)
        self.grammar_compiles = Counter("llava_model_grammar_compiles",
                                        "Structured-output schemas compiled (a miss of the per-tenant grammar cache)",
                                        registry=r)
        self.grammar_failures = Counter("llava_model_grammar_failures",
                                        "Structured-output requests failed alone by their grammar (a limit of the "
                                        "grammar engine or the mask budget), by stage: compile (refused before "
                                        "queueing) or decode", ["stage"], registry=r)
        self.oom = Counter("llava_model_oom_events", "CUDA out-of-memory errors caught in a batch", registry=r)
        self.ready = Gauge("llava_model_ready", "1 once the model is loaded and warmed up", registry=r)
        self.load_seconds = Gauge("llava_model_load_seconds", "Seconds spent loading the weights", registry=r)
        self.warmup_seconds = Gauge("llava_model_warmup_seconds", "Seconds spent in warmup", registry=r)
        self.decode_compiled = Gauge("llava_model_decode_compiled",
                                     "ENGINE=generate: 1 while the decode step runs compiled (static KV cache + "
                                     "torch.compile), 0 eager (also after a fallback)",
                                     registry=r)
        self.gpu_used = Gauge("llava_model_gpu_memory_used_bytes", "GPU memory allocated by this process (on a GPU)",
                              registry=r)
        self.gpu_total = Gauge("llava_model_gpu_memory_total_bytes", "GPU memory of the device (on a GPU)", registry=r)

    def watch_gpu(self, device) -> None:
        """Sample GPU memory at scrape time (no polling thread)."""
        import torch

        index = device.index or 0
        self.gpu_used.set_function(lambda: torch.cuda.memory_allocated(index))
        self.gpu_total.set_function(lambda: torch.cuda.get_device_properties(index).total_memory)
