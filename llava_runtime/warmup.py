"""Warmup: real requests through the live path before /health turns 200.

Each one is an encoded JPEG that goes through base64 decoding, image checks,
tiling, the chat template, the engine's batching, generate and detokenisation,
so the first user request meets warmed kernels and allocator pools. The first runs
alone, the rest together, so the batched path is warmed too.
"""
from __future__ import annotations

import base64
import io
import logging
import time
import uuid

import numpy as np
from PIL import Image

from .inputs import parse_analyze

log = logging.getLogger(__name__)
# Shapes that hit different grid pinpoints (672x672, 336x1008, 672x336).
SIZES = [(672, 672), (336, 1008), (800, 400), (640, 480)]


def synthetic_jpeg(size: tuple[int, int], seed: int) -> str:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
    return base64.b64encode(buffer.getvalue()).decode()


def run_warmup(service, count: int, tokens: int, progress) -> float:
    if count == 0:
        return 0.0
    started = time.monotonic()
    requests = [parse_analyze({"image": synthetic_jpeg(SIZES[i % len(SIZES)], i), "prompt": "Describe this image.",
                               "max_tokens": tokens, "min_tokens": tokens, "temperature": 0}, service.limits)
                for i in range(count)]

    def submit_all(indices) -> None:
        with service.preparing():  # the generate engine's batch waits until all are in
            jobs = [(i, service.submit(requests[i], f"warmup-{i}-{uuid.uuid4().hex[:6]}")) for i in indices]
        for i, job in jobs:
            done = job.result(timeout=600)
            log.info("warmup request %d/%d: %d prompt tokens, %d new, batch of %d, %.2fs", i + 1, count,
                     done.prompt_tokens, done.completion_tokens, done.batch_size, done.latency_s)
            progress.set("warming up", f"{i + 1}/{count} requests done")

    # The first alone, the rest together, so the batched path is warmed too; in groups
    # the queue admits (MAX_QUEUE), or warmup would be refused by its own engine.
    submit_all([0])
    group = max(1, service.settings.max_queue)
    for first in range(1, count, group):
        submit_all(range(first, min(count, first + group)))
    elapsed = time.monotonic() - started
    log.info("warmup: %d requests in %.2fs", count, elapsed)
    return elapsed
