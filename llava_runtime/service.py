"""The model process's lifecycle: load -> warm up (while the engine runs) -> ready -> drain."""
from __future__ import annotations

import logging
import threading
import time

import torch

from . import decode
from .engine import Engine
from .faults import Faults
from .inputs import Limits
from .loader import BootError, LoadedModel, Progress, load_model
from .metrics import ModelMetrics
from .warmup import run_warmup

log = logging.getLogger(__name__)


class ResponseCounter:
    """Responses being produced or written (see server.InFlight)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.count = 0

    def enter(self) -> None:
        with self._lock:
            self.count += 1

    def leave(self) -> None:
        with self._lock:
            self.count -= 1

    def wait_idle(self, deadline: float) -> bool:
        # Polled in short sleeps: this runs on the main thread, which must stay
        # responsive to a second stop signal.
        while self.count > 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.count == 0


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
        self.boot_error: BootError | None = None
        self.responses = ResponseCounter()
        self.stop_deadline: float | None = None
        self._stop_reports = threading.Event()

    def load(self, on_fatal=None) -> None:
        """Load the model and build the engine. Raises loader.BootError when it cannot."""
        self.progress.report_every(10.0, self._stop_reports)
        started = time.monotonic()
        try:
            self.loaded = load_model(self.settings, self.progress)
        except BaseException:
            self._stop_reports.set()
            raise
        self.metrics.load_seconds.set(time.monotonic() - started)
        if self.loaded.device.type == "cuda":
            self.metrics.watch_gpu(self.loaded.device)
        free = torch.cuda.mem_get_info(self.loaded.device)[0] if self.loaded.device.type == "cuda" else None
        plan = decode.plan(self.settings, self.loaded.device, self.loaded.context_length,
                           decode.kv_bytes_per_token(self.loaded.model.config.get_text_config(), self.loaded.dtype), free)
        log.info("decode: %s", plan.description)
        self.engine = Engine(self.loaded.model, self.loaded.tokenizer, self.settings, self.metrics,
                             faults=self.faults, on_fatal=on_fatal, decode_plan=plan)

    def warm_up(self) -> None:
        """Run the warmup requests through the engine (which runs on another thread),
        then turn ready. A failure here means the model cannot serve: stop the engine
        and leave the reason in `boot_error`."""
        try:
            self.progress.set("warming up", f"0/{self.settings.warmup_requests} requests done"
                              + ("; building the compiled decode step" if self.engine.decode.compiled else ""))
            self.metrics.warmup_seconds.set(
                run_warmup(self, self.settings.warmup_requests, self.settings.warmup_tokens, self.progress))
        except Exception as exc:
            log.exception("warmup failed")
            self.boot_error = BootError(f"warmup failed: {getattr(exc, 'message', None) or type(exc).__name__}")
            self.engine.request_stop(0)
            return
        finally:
            self._stop_reports.set()
        if self.stopping:
            return
        self.ready = True
        self.metrics.ready.set(1)
        self.progress.set("ready")
        log.info("ready: %s on %s (%s), context %d tokens, %s decode, started in %.1fs", self.loaded.name,
                 self.loaded.device, str(self.loaded.dtype).replace("torch.", ""), self.loaded.context_length,
                 self.engine.decode.mode, time.monotonic() - self.progress.started)

    def begin_stop(self, grace_s: float) -> None:
        """Refuse new work and let the engine drain within `grace_s`; returns at once."""
        self.stopping = True
        self.ready = False
        self.stop_deadline = time.monotonic() + grace_s
        self.metrics.ready.set(0)
        if self.engine is not None:
            self.engine.request_stop(grace_s)
