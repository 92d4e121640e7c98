"""The generate engine (ENGINE=generate): concurrent requests run together as one
left-padded `generate`. The reference the continuous engine is tested against, and
the path for checkpoints the continuous engine cannot run.

Why static batches through `generate` rather than a hand-written decode loop: it
keeps transformers' cache handling, attention masks and its static-cache /
compile path (decode.py). Per-request behaviour is added with its documented hooks:
- `RowSampler` (a LogitsProcessor) applies each row's min_tokens and, for sampled
  rows, chooses the token with sampling.py (as the continuous engine does, so a
  seed gives the same answer on both); generate itself runs greedy, so a sampled
  row is handed to it as a one-hot distribution and a greedy row is left untouched
  (so greedy answers are identical alone and in a batch).
- `RowStop` (a StoppingCriteria) ends each row at its own max_tokens, at a stop
  string (jobs.py finds it) or when its client went away; generate ends a row at
  EOS by itself.
- `RowStreamer` (a BaseStreamer) hands each row's new tokens to its job as they are
  generated, for streaming responses and time-to-first-token.

One thread runs the batches: in the server it is the process's main thread (`run`),
because torch's OpenMP team there is the one warmed by loading, and generation from
a second thread measured ~45 % slower on CPU. HTTP threads preprocess their own
request (image tiling, tokens) before submitting, overlapping the running batch.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import time

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from . import decode, errors, sampling
from .engine_thread import EngineThread
from .errors import ApiError
from .grammar import GrammarFailure, bitmask_words
from .inputs import Prepared
from .jobs import Job, eos_token_ids

log = logging.getLogger(__name__)


class RowSampler(LogitsProcessor):
    def __init__(self, jobs: list[Job], prompt_length: int, eos_ids: list[int], device):
        self.jobs, self.prompt_length = jobs, prompt_length
        self.constrained = [i for i, j in enumerate(jobs) if j.constraint is not None]
        self.eos_ids = torch.tensor(eos_ids, device=device)
        self.params = sampling.RowParams.of([j.params for j in jobs], [sampling.row_seed(j.params) for j in jobs],
                                            device)
        self.most_min_tokens = max(j.params.min_tokens for j in jobs)
        self.any_sampled = any(j.params.temperature > 0 for j in jobs)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids.shape[1] - self.prompt_length
        if self.constrained:  # the streamer has handed each job its last token: its grammar is up to date
            masks = torch.full((scores.shape[0], bitmask_words(scores.shape[1])), -1, dtype=torch.int32)
            for i in self.constrained:
                if not self.jobs[i].done:
                    try:
                        self.jobs[i].constraint.fill(masks[i])
                    except GrammarFailure as failure:  # fails this row alone; RowStop ends it
                        self.jobs[i].fail(errors.grammar_failed(failure))
                        masks[i] = -1
            scores = sampling.apply_bitmask(scores, masks.to(scores.device))
        if generated >= self.most_min_tokens and not self.any_sampled:  # decided on the host: no device sync
            return scores
        counts = torch.full((scores.shape[0],), generated, dtype=torch.int64, device=scores.device)
        scores = sampling.suppress_eos(scores, counts, self.params, self.eos_ids)
        if not self.any_sampled:
            return scores
        picked = sampling.sample(scores.float(), counts, self.params).unsqueeze(1)
        one_hot = torch.full_like(scores, float("-inf")).scatter_(1, picked, 0.0)
        return torch.where((self.params.temperature > 0).unsqueeze(1), one_hot, scores)


class RowStop(StoppingCriteria):
    """Per-row max_tokens and cancellation, computed from input_ids (generate asks
    this before the streamer sees the step's tokens)."""

    def __init__(self, jobs: list[Job], prompt_length: int, device):
        self.jobs, self.prompt_length = jobs, prompt_length
        self.max_tokens = torch.tensor([j.params.max_tokens for j in jobs], device=device)

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        generated = input_ids.shape[1] - self.prompt_length
        stop = self.max_tokens <= generated
        ended = [i for i, j in enumerate(self.jobs) if j.cancelled or j.done]  # done: a stop string was found
        if ended:
            stop[ended] = True
        return stop


class RowStreamer(BaseStreamer):
    def __init__(self, jobs: list[Job]):
        self.jobs = jobs

    def put(self, value: torch.Tensor) -> None:
        if value.dim() > 1:  # generate first hands over the prompt itself
            return
        now = time.monotonic()
        for job, token in zip(self.jobs, value.tolist()):
            job.on_token(token, now)

    def end(self) -> None:
        pass


class GenerateEngine(EngineThread):
    """Queue + one generation thread. `submit` never blocks: a full queue is a 429."""
    name = "generate"

    def __init__(self, loaded, settings, metrics, faults=None, on_fatal=None, decode_plan=None, eos_ids=None):
        super().__init__(on_fatal)
        model, tokenizer = loaded.model, loaded.tokenizer
        self.model, self.tokenizer, self.settings, self.metrics = model, tokenizer, settings, metrics
        self.length = loaded.context_length
        self.device = model.device
        self.decode = decode_plan or decode.eager()
        self.metrics.decode_compiled.set(1 if self.decode.compiled else 0)
        self.faults = faults
        self.eos_ids = eos_ids or eos_token_ids(loaded)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        self._pending: collections.deque[Job] = collections.deque()
        self._batch: list[Job] = []
        self._preparing = 0  # requests inside the HTTP layer, not yet submitted

    def prepare(self, on_progress=None) -> None:
        """Nothing to allocate up front: generate sizes its cache per batch."""

    def describe(self) -> dict:
        """What /health reports about the engine."""
        return {"engine": self.name, "maxBatchSize": self.settings.max_batch_size, "maxModelLen": self.length}

    @property
    def decode_mode(self) -> str:
        return self.decode.mode

    # ------------------------------------------------------------ public

    @contextlib.contextmanager
    def preparing(self):
        """Mark a request being preprocessed: a batch waits for it (up to
        MAX_BATCH_WAIT_MS) rather than starting without it."""
        with self._cond:
            self._preparing += 1
        try:
            yield
        finally:
            with self._cond:
                self._preparing -= 1
                self._cond.notify_all()

    def _queued(self) -> int:
        return len(self._pending)

    def _enqueue(self, job: Job) -> None:
        self._pending.append(job)

    @property
    def load(self) -> dict:
        with self._cond:
            return {"waiting": len(self._pending), "running": len(self._batch)}

    def _leftovers(self) -> list[Job]:
        leftovers = list(self._pending) + list(self._batch)
        self._pending.clear()
        return leftovers

    # ------------------------------------------------------------ engine thread

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run(batch)

    def _next_batch(self) -> list[Job] | None:
        wait_s = self.settings.max_batch_wait_ms / 1000.0
        limit = self.settings.max_batch_size
        free_since = time.monotonic()
        with self._cond:
            while not self._pending:
                if self._stopping:
                    return None
                # Bounded: on the main thread, a signal the kernel hands to another
                # thread only runs its Python handler once this wait returns.
                self._cond.wait(timeout=0.25)
            # Wait up to MAX_BATCH_WAIT_MS for company, counted from when both the first
            # job and the engine were ready (requests queued behind a running batch
            # would otherwise always start at once), and only while some request is
            # still being preprocessed: a lone request never waits for nobody.
            deadline = max(self._pending[0].arrived, free_since) + wait_s
            while len(self._pending) < limit and self._preparing and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(timeout=remaining)
            batch = [self._pending.popleft() for _ in range(min(limit, len(self._pending)))]
            self.metrics.waiting.dec(len(batch))
            self._batch = batch
        live = [j for j in batch if not j.cancelled]
        for job in batch:
            if job.cancelled:
                job.finish("cancelled")
        return live

    def _run(self, jobs: list[Job]) -> None:
        now = time.monotonic()
        for job in jobs:
            job.started, job.batch_size = now, len(jobs)
            self.metrics.queue_wait.observe(now - job.arrived)
        if jobs:
            self.metrics.batch_size.observe(len(jobs))
            self.metrics.running.set(len(jobs))
            self.metrics.prompt_tokens.inc(sum(j.prepared.prompt_tokens for j in jobs))
            self._run_splitting_on_oom(jobs)
        for job in jobs:
            if job.first_token_at is not None:
                self.metrics.ttft.observe(job.first_token_at - job.arrived)
            self.metrics.generation_tokens.inc(len(job.tokens))
            if job.completion is not None and job.completion.finish_reason != "cancelled":
                self.metrics.e2e.observe(job.completion.latency_s)
        self.metrics.running.set(0)
        with self._cond:
            self._batch = []
            self._cond.notify_all()

    def _run_splitting_on_oom(self, jobs: list[Job]) -> None:
        ids = ",".join(j.request_id for j in jobs)
        try:
            self._generate(jobs)
        except torch.cuda.OutOfMemoryError:
            self.metrics.oom.inc()
            _free_cuda_cache()
            untouched = not any(j.tokens for j in jobs)
            if len(jobs) > 1 and untouched:
                half = len(jobs) // 2
                log.warning("CUDA out of memory in a batch of %d (%s); retrying as %d + %d", len(jobs), ids, half,
                            len(jobs) - half)
                self._run_splitting_on_oom(jobs[:half])
                self._run_splitting_on_oom(jobs[half:])
                return
            log.error("CUDA out of memory for request(s) %s; failing them", ids)
            for job in jobs:
                job.fail(errors.out_of_memory())
        except Exception as exc:
            if self.decode.compiled and decode.is_compile_error(exc):
                self._compile_failed(jobs, exc)
                return
            log.exception("generation failed for request(s) %s", ids)
            for job in jobs:
                job.fail(ApiError("internal_error", "generation failed inside the model process"))

    def _compile_failed(self, jobs: list[Job], exc: Exception) -> None:
        """The compiled decode step could not be built. Under DECODE_MODE=auto drop to
        eager for good and run the batch again (rows nobody has seen output from);
        under an explicit `compiled` fail the batch."""
        if not self.decode.fallback:
            log.error("compiled decode failed (DECODE_MODE=compiled, so no fallback): %s", exc, exc_info=True)
            for job in jobs:
                job.fail(ApiError("internal_error", "the compiled decode step failed inside the model process"))
            return
        log.error("compiled decode failed; decoding eagerly from now on (set DECODE_MODE=eager to skip compiling): "
                  "%s", str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, exc_info=True)
        self.decode = decode.eager()
        self.metrics.decode_compiled.set(0)
        again = [j for j in jobs if j.restartable]
        for job in jobs:
            if job in again:
                job.restart()
            else:  # finished already (a no-op) or its caller has seen output
                job.fail(ApiError("internal_error", "generation failed inside the model process; retry"))
        if again:
            self._run_splitting_on_oom(again)

    def _generate(self, jobs: list[Job]) -> None:
        if self.faults is not None:
            self.faults.before_generate(len(jobs))
        inputs = collate([j.prepared for j in jobs], self.pad_id, self.device, self.model.dtype)
        prompt_length = inputs["input_ids"].shape[1]
        config = GenerationConfig(max_new_tokens=max(j.params.max_tokens for j in jobs), do_sample=False,
                                  eos_token_id=self.eos_ids, pad_token_id=self.pad_id, use_cache=True,
                                  **self.decode.generate_kwargs)
        with torch.inference_mode():
            self.model.generate(
                **inputs, generation_config=config,
                logits_processor=LogitsProcessorList([RowSampler(jobs, prompt_length, self.eos_ids, self.device)]),
                stopping_criteria=StoppingCriteriaList([RowStop(jobs, prompt_length, self.device)]),
                streamer=RowStreamer(jobs))
        for job in jobs:  # a row that reached generate's overall limit
            job.finish("cancelled" if job.cancelled else "length")


def collate(items: list[Prepared], pad_id: int, device, dtype) -> dict:
    """Left-pad prompts to one length; pad every image's tile stack to one count
    (LLaVA-NeXT drops the padding tiles again using image_sizes)."""
    length = max(p.input_ids.shape[1] for p in items)
    input_ids = torch.full((len(items), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(items), length), dtype=torch.long)
    for row, p in enumerate(items):
        n = p.input_ids.shape[1]
        input_ids[row, length - n:] = p.input_ids[0]
        attention_mask[row, length - n:] = p.attention_mask[0]
    batch = {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}
    with_images = [p for p in items if p.pixel_values is not None]
    if with_images:
        tiles = max(p.pixel_values.shape[1] for p in with_images)
        stacks = [torch.nn.functional.pad(p.pixel_values, (0, 0, 0, 0, 0, 0, 0, tiles - p.pixel_values.shape[1]))
                  for p in with_images]
        batch["pixel_values"] = torch.cat(stacks).to(device=device, dtype=dtype)
        batch["image_sizes"] = torch.cat([p.image_sizes for p in with_images]).to(device)
    return batch


def _free_cuda_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
