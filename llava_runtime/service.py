"""The model process's lifecycle: load -> warm up (while the engine runs) -> ready -> drain,
and where a request becomes a job (`Service.submit`, for the HTTP API and warmup alike)."""
from __future__ import annotations

import logging
import threading
import time

import torch

from . import decode
from .continuous_engine import ContinuousEngine
from .decoder import unsupported_reason
from .faults import Faults
from .generate_engine import GenerateEngine
from .grammar import NO_TENANT, Grammars, MaskBudget
from .inputs import ChatRequest, Limits, prepare
from .jobs import Job
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
        self.engine: ContinuousEngine | GenerateEngine | None = None
        self.grammars: Grammars | None = None
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
        try:
            self.engine = build_engine(self.settings, self.loaded, self.metrics, self.faults, on_fatal)
            self.engine.prepare(lambda detail: self.progress.set("preparing the engine", detail))
        except BaseException:
            self._stop_reports.set()
            raise
        self.grammars = Grammars(self.loaded.tokenizer, MaskBudget(self.settings.mask_budget_ms / 1000,
                                                                   self.settings.mask_average_ms / 1000),
                                 self.metrics)
        log.info("engine: %s %s", self.engine.name, self.engine.describe())

    @property
    def context_length(self) -> int:
        """Tokens one request may use, prompt and answer (the engine's rows may hold fewer than the model's context)."""
        return self.engine.length

    def preparing(self):
        """Wrap a request's parsing and preprocessing (the generate engine's batch waits for it)."""
        return self.engine.preparing()

    def submit(self, request: ChatRequest, request_id: str, stream: bool = False, tenant: str = NO_TENANT) -> Job:
        """A parsed request becomes a job: image tiles and prompt tokens in the caller's
        thread (overlapping the running steps), checked against the context, then queued.
        `tenant` (the gateway's tag of the caller's key) scopes the grammar cache."""
        loaded = self.loaded
        prepared = prepare(request, loaded.processor, self.context_length, loaded.image_token_id)
        output = request.params.response_format
        # Compiled here, in the request's thread, never on the engine's.
        constraint = self.grammars.constraint(output, tenant) if output is not None else None
        return self.engine.submit(prepared, request.params, request_id, stream=stream or request.stream,
                                  constraint=constraint)

    def warm_up(self) -> None:
        """Run the warmup requests through the engine (which runs on another thread),
        then turn ready. A failure here means the model cannot serve: stop the engine
        and leave the reason in `boot_error`."""
        try:
            compiling = isinstance(self.engine, GenerateEngine) and self.engine.decode.compiled
            self.progress.set("warming up", f"0/{self.settings.warmup_requests} requests done"
                              + ("; building the compiled decode step" if compiling else ""))
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
        log.info("ready: %s on %s (%s), %s engine, %d tokens per request, %s decode, started in %.1fs",
                 self.loaded.name, self.loaded.device, str(self.loaded.dtype).replace("torch.", ""), self.engine.name,
                 self.context_length, self.engine.decode_mode, time.monotonic() - self.progress.started)

    def begin_stop(self, grace_s: float) -> None:
        """Refuse new work and let the engine drain within `grace_s`; returns at once."""
        self.stopping = True
        self.ready = False
        self.stop_deadline = time.monotonic() + grace_s
        self.metrics.ready.set(0)
        if self.engine is not None:
            self.engine.request_stop(grace_s)


def build_engine(settings, loaded: LoadedModel, metrics, faults, on_fatal):
    """ENGINE=continuous unless the checkpoint's language model is one it cannot run."""
    if settings.engine == ContinuousEngine.name:
        reason = unsupported_reason(loaded.model)
        if reason is not None:
            raise BootError(f"ENGINE=continuous cannot run {loaded.source!r}: {reason}; set ENGINE=generate")
        return ContinuousEngine(loaded, settings, metrics, faults=faults, on_fatal=on_fatal)
    free = torch.cuda.mem_get_info(loaded.device)[0] if loaded.device.type == "cuda" else None
    plan = decode.plan(settings, loaded.device, loaded.context_length,
                       decode.kv_bytes_per_token(loaded.model.config.get_text_config(), loaded.dtype), free)
    log.info("decode: %s", plan.description)
    return GenerateEngine(loaded, settings, metrics, faults=faults, on_fatal=on_fatal, decode_plan=plan)
