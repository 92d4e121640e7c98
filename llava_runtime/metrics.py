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
        self.queue_wait = Histogram("llava_model_queue_wait_seconds", "Time a request waited for its batch to start",
                                    buckets=_FAST, registry=r)
        self.preprocess = Histogram("llava_model_preprocess_seconds",
                                    "Image decoding, tiling and tokenisation per request", buckets=_FAST, registry=r)
        self.batch_size = Histogram("llava_model_batch_size", "Requests per generate call",
                                    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64), registry=r)
        self.prompt_tokens = Counter("llava_model_prompt_tokens", "Prompt tokens processed (image tokens included)",
                                     registry=r)
        self.generation_tokens = Counter("llava_model_generation_tokens", "Tokens generated", registry=r)
        self.running = Gauge("llava_model_requests_running", "Requests in the batch being generated", registry=r)
        self.waiting = Gauge("llava_model_requests_waiting", "Requests queued for a batch", registry=r)
        self.oom = Counter("llava_model_oom_events", "CUDA out-of-memory errors caught in a batch", registry=r)
        self.ready = Gauge("llava_model_ready", "1 once the model is loaded and warmed up", registry=r)
        self.load_seconds = Gauge("llava_model_load_seconds", "Seconds spent loading the weights", registry=r)
        self.warmup_seconds = Gauge("llava_model_warmup_seconds", "Seconds spent in warmup", registry=r)
        self.decode_compiled = Gauge("llava_model_decode_compiled",
                                     "1 while the decode step runs compiled (static KV cache + torch.compile), 0 eager",
                                     registry=r)
        self.gpu_used = Gauge("llava_model_gpu_memory_used_bytes", "GPU memory allocated by this process", registry=r)
        self.gpu_total = Gauge("llava_model_gpu_memory_total_bytes", "GPU memory of the device", registry=r)

    def watch_gpu(self, device) -> None:
        """Sample GPU memory at scrape time (no polling thread)."""
        import torch

        index = device.index or 0
        self.gpu_used.set_function(lambda: torch.cuda.memory_allocated(index))
        self.gpu_total.set_function(lambda: torch.cuda.get_device_properties(index).total_memory)
