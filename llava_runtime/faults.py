"""Failure injection for tests and the chaos suite; inert unless LLAVA_FAULTS=1.

`POST /_faults {"mode": "oom" | "error" | "slow" | "none", "count": n, "seconds": s,
"min_batch": k, "stage": "any" | "prefill" | "decode"}` arms the next `count` model
calls (-1 = until disarmed) of that stage whose batch has at least `min_batch`
requests. A model call is a `generate` call (generate engine, stage decode), or a
request's prefill or one decode step (continuous engine). The fault fires where the
real one would: inside the engine, before the call, so recovery paths run for real.
"""
from __future__ import annotations

import threading
import time

import torch

from .errors import ApiError

MODES = ("none", "oom", "error", "slow")
STAGES = ("any", "prefill", "decode")


class Faults:
    def __init__(self):
        self._lock = threading.Lock()
        self.mode, self.count, self.seconds, self.min_batch, self.stage = "none", 0, 0.0, 1, "any"

    def arm(self, spec: object) -> dict:
        if not isinstance(spec, dict) or spec.get("mode") not in MODES:
            raise ApiError("invalid_request", "mode must be one of " + ", ".join(MODES), "mode")
        count, seconds, min_batch = spec.get("count", 1), spec.get("seconds", 0), spec.get("min_batch", 1)
        if not isinstance(count, int) or count == 0 or count < -1:
            raise ApiError("invalid_request", "count must be a positive integer or -1", "count")
        if not isinstance(seconds, (int, float)) or not 0 <= seconds <= 3600:
            raise ApiError("invalid_request", "seconds must be between 0 and 3600", "seconds")
        if not isinstance(min_batch, int) or min_batch < 1:
            raise ApiError("invalid_request", "min_batch must be a positive integer", "min_batch")
        stage = spec.get("stage", "any")
        if stage not in STAGES:
            raise ApiError("invalid_request", "stage must be one of " + ", ".join(STAGES), "stage")
        with self._lock:
            self.mode, self.count, self.seconds, self.min_batch = spec["mode"], count, float(seconds), min_batch
            self.stage = stage
            return self.state()

    def state(self) -> dict:
        return {"mode": self.mode, "count": self.count, "seconds": self.seconds, "min_batch": self.min_batch,
                "stage": self.stage}

    def before_generate(self, batch_size: int, stage: str = "decode") -> None:
        with self._lock:
            if self.mode == "none" or batch_size < self.min_batch or self.stage not in ("any", stage):
                return
            mode, seconds = self.mode, self.seconds
            if self.count > 0:
                self.count -= 1
                if self.count == 0:
                    self.mode = "none"
        if mode == "oom":
            raise torch.cuda.OutOfMemoryError("injected CUDA out of memory")
        if mode == "error":
            raise RuntimeError("injected generation failure")
        time.sleep(seconds)
