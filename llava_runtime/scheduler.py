"""Where a job gets a row of the GPU: admission, prefill order, join and leave.

Pure Python (no torch, no threads): the continuous engine calls it from its one
thread and carries out what it returns (prefill chunks, slot moves) on the device.
Tested with a fake clock.

- Admission: a job waits in FIFO order; past MAX_QUEUE waiting jobs a new one is
  refused (429 queue_full) rather than queued without bound.
- One job at a time has its prompt written into a free row (prefill). While other
  rows are decoding, its prompt goes in chunks of PREFILL_CHUNK_TOKENS, one chunk
  between two decode steps, so a long prompt delays the running rows by one chunk
  per step rather than by its whole prefill; with nobody decoding it goes in whole.
- Running rows are packed into rows 0..n-1. A finished, stopped or cancelled row
  leaves at once: the last running row moves into its place (`Move`), and the slot
  it frees is the next job's.
"""
from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from typing import Callable

from . import errors
from .jobs import Job, JobState


@dataclass(frozen=True)
class Move:
    """Copy row `src`'s slot (its KV and per-row state) into row `dst`."""
    src: int
    dst: int


@dataclass(frozen=True)
class Chunk:
    """Prompt positions [start, end) of `job` to write into `row` now."""
    job: Job
    row: int
    start: int
    end: int

    @property
    def last(self) -> bool:
        return self.end == self.job.prepared.prompt_tokens


@dataclass
class _Prefill:
    job: Job
    row: int
    done: int = 0


class Scheduler:
    def __init__(self, rows: int, max_queue: int, chunk_tokens: int, clock: Callable[[], float] = time.monotonic):
        self.rows, self.max_queue, self.chunk_tokens, self.clock = rows, max_queue, chunk_tokens, clock
        self.waiting: collections.deque[Job] = collections.deque()
        self.running: list[Job] = []          # running[i] decodes in row i
        self._prefill: _Prefill | None = None

    # ------------------------------------------------------------ admission

    def add(self, job: Job) -> None:
        if len(self.waiting) >= self.max_queue:
            raise errors.queue_full(self.max_queue)
        job.state, job.queued_at = JobState.QUEUED, self.clock()
        self.waiting.append(job)

    def drop_cancelled(self) -> list[Job]:
        """Waiting jobs whose client went away: removed, for the engine to answer."""
        gone = [job for job in self.waiting if job.cancelled]
        if gone:
            self.waiting = collections.deque(job for job in self.waiting if not job.cancelled)
        return gone

    # ------------------------------------------------------------ prefill

    @property
    def prefilling(self) -> Job | None:
        return self._prefill.job if self._prefill else None

    @property
    def free_rows(self) -> int:
        return self.rows - len(self.running) - (1 if self._prefill else 0)

    def next_chunk(self) -> Chunk | None:
        """The prompt positions to write now, starting the next waiting job when a row is free."""
        if self._prefill is None:
            if not self.waiting or self.free_rows < 1:
                return None
            job = self.waiting.popleft()
            job.state, job.started = JobState.PREFILLING, self.clock()
            self._prefill = _Prefill(job, row=len(self.running))
        p = self._prefill
        remaining = p.job.prepared.prompt_tokens - p.done
        size = min(self.chunk_tokens, remaining) if self.running else remaining
        return Chunk(p.job, p.row, p.done, p.done + size)

    def prefilled(self, chunk: Chunk) -> None:
        """`chunk` is written."""
        assert self._prefill is not None and self._prefill.job is chunk.job
        self._prefill.done = chunk.end

    def join(self) -> tuple[int, Move | None]:
        """The prompt is complete: the job decodes from now on in row len(running).
        Returns that row, and the move its slot needs if rows left meanwhile."""
        p, self._prefill = self._prefill, None
        assert p is not None and p.done == p.job.prepared.prompt_tokens
        row = len(self.running)
        self.running.append(p.job)
        p.job.state = JobState.RUNNING
        return row, (Move(p.row, row) if p.row != row else None)

    # ------------------------------------------------------------ leaving

    def leave(self, job: Job) -> tuple[int | None, Move | None]:
        """`job` stops decoding (or prefilling). Returns the slot that is free now (None
        if it held none) and the move that keeps the running rows packed."""
        if self._prefill is not None and self._prefill.job is job:
            row, self._prefill = self._prefill.row, None
            return row, None
        try:
            row = self.running.index(job)
        except ValueError:
            return None, None
        last = len(self.running) - 1
        self.running[row] = self.running[last]
        self.running.pop()
        return last, (Move(last, row) if row != last else None)

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.running and self._prefill is None
