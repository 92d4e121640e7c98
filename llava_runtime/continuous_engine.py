"""The continuous-batching engine (ENGINE=continuous, the default).

One thread runs the loop; each turn it
1. takes new submissions into the scheduler (scheduler.py decides who gets a row),
2. writes one chunk of the next prompt into its row (runner.prefill; the vision
   tower runs with the first chunk) and, when the prompt is complete, lets the row
   join the decoding rows,
3. launches one decode step for every decoding row at once (runner.decode: one
   CUDA graph replay on a GPU),
4. hands the tokens of the *previous* launch to their jobs (streaming, EOS, stop
   strings, max_tokens, cancellation), so the device is already running the next
   step while the host does this; rows that finished leave, and their slots are
   free for the next turn.

A row that reaches max_tokens leaves as its last token is launched; one that ends
on EOS, a stop string or a cancelled client is seen one step later (one wasted
row-step). Prefill: see scheduler.py (chunks of PREFILL_CHUNK_TOKENS while rows
decode, the whole prompt at once otherwise).

Like the generate engine, the loop runs on the process's main thread in the server
(torch's OpenMP team there is the one warmed by loading).
"""
from __future__ import annotations

import collections
import contextlib
import logging
import time

import torch

from . import errors, kv_slots
from .engine_thread import EngineThread
from .errors import ApiError
from .grammar import GrammarFailure
from .jobs import CANCELLED, Job, eos_token_ids
from .loader import BootError
from .runner import GRAPHS_CAPTURED, Runner, TokenRead
from .sampling import row_seed
from .scheduler import Move, Scheduler

log = logging.getLogger(__name__)
NAME = "continuous"
_IDLE_WAIT_S = 0.25      # bounded: on the main thread, signal handlers run only between waits
_RATE_WINDOW_S = 5.0     # tokens/s gauge: over the last few seconds


class ContinuousEngine(EngineThread):
    name = NAME

    def __init__(self, loaded, settings, metrics, faults=None, on_fatal=None, eos_ids=None):
        super().__init__(on_fatal)
        self.loaded, self.settings, self.metrics = loaded, settings, metrics
        self.tokenizer = loaded.tokenizer
        self.faults = faults
        self.eos_ids = eos_ids or eos_token_ids(loaded)
        self.length = min(loaded.context_length, settings.max_model_len or loaded.context_length)
        self.runner = Runner(loaded.model, self.length, self.eos_ids)
        self.scheduler: Scheduler | None = None
        self._submitted: collections.deque[Job] = collections.deque()
        self._live: set[Job] = set()            # submitted and not yet answered
        self._embeds: dict[Job, torch.Tensor] = {}
        self._rate: collections.deque[tuple[float, int]] = collections.deque()

    # ------------------------------------------------------------ start-up

    def prepare(self, on_progress=None, capture: bool | None = None) -> None:
        """Size and allocate the KV slots, then capture the decode step (by default on
        CUDA with CUDA_GRAPHS on). Raises BootError when not even one row fits."""
        with torch.inference_mode():
            rows = self._rows_that_fit()
            self.runner.allocate(rows)
            self.scheduler = Scheduler(rows, self.settings.max_queue, self.settings.prefill_chunk_tokens)
            log.info("KV cache: %d rows of %d tokens, %.2f GiB (%s)", rows, self.length, self.runner.kv.nbytes / 2**30,
                     "MAX_BATCH_SIZE" if rows == self.settings.max_batch_size else "memory")
            self.metrics.kv_slots.set(rows)
            self.metrics.rows_free.set(rows)
            if capture if capture is not None else (self.runner.cuda and self.settings.cuda_graphs):
                if on_progress:
                    on_progress(f"capturing CUDA graphs of the decode step ({len(self.runner.shapes())} shapes)")
                self.runner.capture(on_progress)
            self.metrics.cuda_graphs.set(len(self.runner.graphs))
            self.metrics.cuda_graph_capture_failed.set(1 if self.runner.graph_error else 0)

    def _rows_that_fit(self) -> int:
        per_row, cap = self.runner.slot_bytes(), self.settings.max_batch_size
        fraction = self.settings.kv_cache_memory_fraction
        if self.runner.cuda:
            config = self.loaded.model.config
            tiles = 1 + max(h * w for h, w in config.image_grid_pinpoints) // config.vision_config.image_size ** 2
            peak = self.runner.prefill_peak_bytes(self.length, self.settings.max_images, tiles,
                                                  config.vision_config.image_size)
            budget = kv_slots.cuda_budget(self.runner.device, fraction, peak)
        else:
            budget = kv_slots.cpu_budget(fraction)
            if budget is None:
                return cap
        rows = kv_slots.rows_that_fit(budget, per_row, cap)
        if rows < 1:
            raise BootError(f"no room for one KV row of {self.length} tokens ({per_row / 2**30:.2f} GiB) in "
                            f"KV_CACHE_MEMORY_FRACTION={fraction} of the device's memory after loading "
                            f"({max(budget, 0) / 2**30:.2f} GiB left); raise KV_CACHE_MEMORY_FRACTION, lower "
                            "MAX_MODEL_LEN, or use a larger GPU")
        return rows

    @property
    def rows(self) -> int:
        return self.scheduler.rows if self.scheduler else 0

    def describe(self) -> dict:
        """What /health reports about the engine."""
        return {"engine": NAME, "rows": self.rows, "maxModelLen": self.length, "cudaGraphs": self.runner.graph_state}

    @property
    def decode_mode(self) -> str:
        return "cuda-graphs" if self.runner.graph_state == GRAPHS_CAPTURED else "eager"

    # ------------------------------------------------------------ public

    def run(self) -> None:
        with torch.inference_mode():
            super().run()

    def preparing(self):
        """Rows join between any two steps: nothing waits for requests being prepared."""
        return contextlib.nullcontext()

    def _queued(self) -> int:
        return len(self._submitted) + len(self.scheduler.waiting)

    def _enqueue(self, job: Job) -> None:
        self._submitted.append(job)  # the loop hands it to the scheduler, on its own thread
        self._live.add(job)

    @property
    def load(self) -> dict:
        with self._cond:
            scheduler = self.scheduler
            return {"waiting": len(self._submitted) + len(scheduler.waiting),
                    "running": len(scheduler.running) + (1 if scheduler.prefilling else 0)}

    def _leftovers(self) -> list[Job]:
        return list(self._live)

    # ------------------------------------------------------------ the loop

    def _loop(self) -> None:
        pending: collections.deque[TokenRead] = collections.deque()
        while True:
            self._take_submissions()
            with self._cond:
                if self._stopping and self.scheduler.idle and not pending and not self._submitted:
                    return
            self._drop_finished()
            launched = False
            chunk = self.scheduler.next_chunk()
            if chunk is not None:
                self._prefill(chunk, pending)
                launched = True
            if self.scheduler.running:
                self._decode(pending)
                launched = True
            # Keep the newest decode in flight while another will follow it; not while a
            # row has a grammar: its next mask needs the token this step chooses.
            constrained = any(job.constraint is not None for job in self.scheduler.running)
            keep = 1 if self.scheduler.running and pending and pending[-1].decode and not constrained else 0
            while len(pending) > keep:
                self._deliver(pending.popleft())
            self._update_gauges()
            if not launched and not pending:
                with self._cond:
                    if not self._submitted and not self._stopping:
                        self._cond.wait(timeout=_IDLE_WAIT_S)

    def _take_submissions(self) -> None:
        with self._cond:
            while self._submitted:
                self.scheduler.add(self._submitted.popleft())  # fits: submit counted it against MAX_QUEUE

    def _drop_finished(self) -> None:
        """Waiting jobs whose client left, and rows whose job was cancelled or failed
        (stop expired) leave now."""
        for job in self.scheduler.drop_cancelled():
            self.metrics.waiting.dec()
            job.finish(CANCELLED)
            self._forget(job)
        prefilling = [self.scheduler.prefilling] if self.scheduler.prefilling else []
        for job in [j for j in self.scheduler.running + prefilling if j.cancelled or j.done]:
            job.finish(CANCELLED)
            self._leave(job)
            self._forget(job)

    def _prefill(self, chunk, pending) -> None:
        job = chunk.job
        try:
            if chunk.start == 0:
                self.metrics.waiting.dec()
                self.metrics.queue_wait.observe(job.started - job.queued_at)
                self.metrics.prompt_tokens.inc(job.prepared.prompt_tokens)
                if self.faults is not None:
                    self.faults.before_generate(1, stage="prefill")
                self.runner.begin_row(chunk.row, job.params, row_seed(job.params))
                self._embeds[job] = self.runner.embeddings(job.prepared)
            if chunk.last and job.constraint is not None:
                self.runner.set_mask(chunk.row, job.constraint)
            self.runner.prefill(chunk.row, self._embeds[job], chunk.start, chunk.end, chunk.last,
                                constrained=job.constraint is not None)
        except Exception as exc:
            self._fail([job], exc, "prefill")
            return
        self.scheduler.prefilled(chunk)
        if not chunk.last:
            return
        del self._embeds[job]
        job.launched, job.kv_len, job.batch_size = 1, job.prepared.prompt_tokens, len(self.scheduler.running) + 1
        first = self.runner.read(slice(chunk.row, chunk.row + 1), [job], time.monotonic(), decode=False)
        if job.constraint is None:
            pending.append(first)
        else:  # its grammar must see the first token before the mask of its first decode step
            self._deliver(first)
            if job.done:
                return
            if not self._mask(chunk.row, job):
                self._finished(job)
                return
        if job.params.max_tokens <= 1:
            self._leave(job)
            return
        row, move = self.scheduler.join()
        if move is not None:
            self.runner.move(move.src, move.dst, job.kv_len)
        self.runner.activate(row, job.kv_len)

    def _decode(self, pending) -> None:
        jobs = list(self.scheduler.running)
        started = time.monotonic()
        try:
            if self.faults is not None:
                self.faults.before_generate(len(jobs))
            start_event = None
            if self.runner.cuda:
                start_event = torch.cuda.Event(enable_timing=True)
                start_event.record()
            longest = max(job.kv_len for job in jobs) + 1
            sampled = any(job.params.temperature > 0 for job in jobs)
            constrained = any(job.constraint is not None for job in jobs)
            padded, attend = self.runner.decode(len(jobs), longest, sampled, constrained)
        except Exception as exc:
            self._fail(jobs, exc, "decode")
            return
        pending.append(self.runner.read(slice(0, len(jobs)), jobs, started, start_event))
        self.metrics.batch_size.observe(len(jobs))
        live = sum(job.kv_len + 1 for job in jobs)
        self.metrics.attention_read_ratio.observe(padded * attend / live)
        for job in jobs:
            job.kv_len += 1
            job.launched += 1
            job.batch_size = max(job.batch_size, len(jobs))
        for job in jobs:  # only now: a move copies the moved row's positions, this step's included
            if job.launched >= job.params.max_tokens:
                self._leave(job)  # its last token is on its way: the row is free for the next turn

    def _deliver(self, read: TokenRead) -> None:
        tokens = read.tokens()
        now = time.monotonic()
        if read.decode:
            self.metrics.decode_step.observe(read.seconds)
        delivered = 0
        for job, token in zip(read.jobs, tokens):
            if job.done:
                continue
            first = job.first_token_at is None
            job.on_token(token, now)
            delivered += 1
            if job.constraint is not None and not job.done and job in self.scheduler.running:
                self._mask(self.scheduler.running.index(job), job)
            if first and job.first_token_at is not None:
                self.metrics.ttft.observe(job.first_token_at - job.arrived)
                self.metrics.prefill.observe(job.first_token_at - job.started)
            if job.done:
                self._finished(job)
        self.metrics.generation_tokens.inc(delivered)
        self._rate.append((now, delivered))

    def _mask(self, row: int, job: Job) -> bool:
        """Give `row` its job's next-token mask; a grammar that fails (a limit, its mask
        budget) fails its own job only (the caller lets the row leave)."""
        try:
            self.runner.set_mask(row, job.constraint)
            return True
        except GrammarFailure as failure:
            log.info("request %s: its grammar failed: %s", job.request_id, failure)
            job.fail(errors.grammar_failed(failure))
            return False

    def _finished(self, job: Job) -> None:
        self._leave(job)
        self._forget(job)
        if job.completion is not None and job.completion.finish_reason != CANCELLED:
            self.metrics.e2e.observe(job.completion.latency_s)

    def _forget(self, job: Job) -> None:
        with self._cond:
            self._live.discard(job)

    def _leave(self, job: Job) -> None:
        self._embeds.pop(job, None)
        freed, move = self.scheduler.leave(job)
        if move is not None:
            self._move(move)
        if freed is not None:
            self.runner.deactivate(freed)

    def _move(self, move: Move) -> None:
        moved = self.scheduler.running[move.dst]
        self.runner.move(move.src, move.dst, moved.kv_len)

    def _fail(self, jobs: list[Job], exc: Exception, where: str) -> None:
        ids = ",".join(j.request_id for j in jobs)
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            self.metrics.oom.inc()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            log.error("CUDA out of memory in %s for request(s) %s; failing them", where, ids)
            error = errors.out_of_memory()
        elif isinstance(exc, GrammarFailure):  # the schema's own limit (set_mask before a prefill's last chunk)
            log.info("%s: the grammar of request(s) %s failed: %s", where, ids, exc)
            error = errors.grammar_failed(exc)
        else:
            log.exception("%s failed for request(s) %s", where, ids)
            error = ApiError("internal_error", "generation failed inside the model process")
        for job in jobs:
            job.fail(error)
            self._leave(job)
            self._forget(job)

    def _update_gauges(self) -> None:
        scheduler = self.scheduler
        used = len(scheduler.running) + (1 if scheduler.prefilling else 0)
        self.metrics.running.set(len(scheduler.running))
        self.metrics.rows_free.set(scheduler.rows - used)
        self.metrics.kv_slots_used.set(used)
        self.metrics.kv_tokens_used.set(sum(job.kv_len for job in scheduler.running))
        horizon = time.monotonic() - _RATE_WINDOW_S
        while self._rate and self._rate[0][0] < horizon:
            self._rate.popleft()
        self.metrics.tokens_per_second.set(sum(n for _, n in self._rate) / _RATE_WINDOW_S)
