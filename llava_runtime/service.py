"""The model process's lifecycle: load -> engine -> warmup -> ready -> drain."""
from __future__ import annotations

import logging
import threading
import time

from .engine import Engine
from .faults import Faults
from .inputs import Limits
from .loader import LoadedModel, Progress, load_model
from .metrics import ModelMetrics
from .warmup import run_warmup

log = logging.getLogger(__name__)


class Service:
    def __init__(self, settings, metrics: ModelMetrics | None = None):
        self.settings = settings
        self.metrics = metrics or ModelMetrics()
        self.progress = Progress()
        self.limits = Limits(settings)
        self.faults = Faults() if settings.inject_faults else None
        self.loaded: LoadedModel | None = None
        self.engine: Engine | None = None
        self.ready = False
        self.stopping = False

    def start(self, on_fatal=None) -> None:
        """Load, start the engine, warm up. Raises loader.BootError when it cannot."""
        stop_reports = threading.Event()
        self.progress.report_every(10.0, stop_reports)
        try:
            started = time.monotonic()
            self.loaded = load_model(self.settings, self.progress)
            self.metrics.load_seconds.set(time.monotonic() - started)
            if self.loaded.device.type == "cuda":
                self.metrics.watch_gpu(self.loaded.device)
            self.engine = Engine(self.loaded.model, self.loaded.tokenizer, self.settings, self.metrics,
                                 faults=self.faults, on_fatal=on_fatal).start()
            self.progress.set("warming up", f"0/{self.settings.warmup_requests} requests done")
            warm = run_warmup(self, self.settings.warmup_requests, self.settings.warmup_tokens, self.progress)
            self.metrics.warmup_seconds.set(warm)
        finally:
            stop_reports.set()
        self.ready = True
        self.metrics.ready.set(1)
        self.progress.set("ready")
        log.info("ready: %s on %s (%s), context %d tokens, started in %.1fs", self.loaded.name, self.loaded.device,
                 str(self.loaded.dtype).replace("torch.", ""), self.loaded.context_length,
                 time.monotonic() - self.progress.started)

    def stop(self, grace_s: float) -> None:
        self.stopping = True
        self.ready = False
        self.metrics.ready.set(0)
        if self.engine is not None:
            self.engine.stop(grace_s)
