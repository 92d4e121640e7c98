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

from .inputs import parse_analyze, prepare

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
    bodies = [{"image": synthetic_jpeg(SIZES[i % len(SIZES)], i), "prompt": "Describe this image.",
               "max_tokens": tokens, "min_tokens": tokens, "temperature": 0} for i in range(count)]

    # Prepare everything first so the later requests reach the engine together and
    # run as one batch (warming the batched path), the first one alone.
    prepared = []
    for body in bodies:
        request = parse_analyze(body, service.limits)
        prepared.append((request, prepare(request, service.loaded.processor, service.loaded.context_length,
                                          service.loaded.image_token_id)))

    def submit_all(indices) -> None:
        with service.engine.preparing():  # the batch waits until all are in
            jobs = [(i, service.engine.submit(prepared[i][1], prepared[i][0].params,
                                              f"warmup-{i}-{uuid.uuid4().hex[:6]}")) for i in indices]
        for i, job in jobs:
            done = job.result(timeout=600)
            log.info("warmup request %d/%d: %d prompt tokens, %d new, batch of %d, %.2fs", i + 1, count,
                     done.prompt_tokens, done.completion_tokens, done.batch_size, done.latency_s)
            progress.set("warming up", f"{i + 1}/{count} requests done")

    submit_all([0])
    submit_all(range(1, count))
    elapsed = time.monotonic() - started
    log.info("warmup: %d requests in %.2fs", count, elapsed)
    return elapsed
