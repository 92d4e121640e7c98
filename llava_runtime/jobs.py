"""A job: one request inside an engine, from submission to its last event.

Both engines (continuous and generate) drive the same Job. The engine thread hands
it tokens (`on_token`); the job turns them into text, streams it, applies EOS, the
request's `stop` strings and `max_tokens`, and finishes. The HTTP thread reads the
job's events through a queue: ("delta", str) while streaming, then ("done",
Completion) or ("error", ApiError).
"""
from __future__ import annotations

import enum
import queue
import time
from dataclasses import dataclass

from .errors import ApiError, grammar_failed
from .grammar import GrammarFailure
from .inputs import Prepared, SamplingParams


class JobState(enum.Enum):
    QUEUED = "queued"            # submitted, waiting for a row
    PREFILLING = "prefilling"    # has a row; its prompt is being written into it
    RUNNING = "running"          # decoding, one token per step
    FINISHED = "finished"        # answered (stop, length or cancelled)
    FAILED = "failed"            # answered with an error


# Why a job ended (Completion.finish_reason).
STOP, LENGTH, CANCELLED = "stop", "length", "cancelled"


def eos_token_ids(loaded) -> list[int]:
    """The tokens that end an answer: the checkpoint's generation config, else the tokenizer's EOS."""
    eos = loaded.model.generation_config.eos_token_id
    return [eos] if isinstance(eos, int) else list(eos or [loaded.tokenizer.eos_token_id])


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str          # stop | length | cancelled
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float | None
    latency_s: float
    queue_s: float
    batch_size: int


class Job:
    def __init__(self, prepared: Prepared, params: SamplingParams, request_id: str, stream: bool, tokenizer, eos_ids,
                 constraint=None):
        self.prepared, self.params, self.request_id, self.stream = prepared, params, request_id, stream
        self.constraint = constraint             # grammar.Constraint for JSON output, else None
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.state = JobState.QUEUED
        self.tokens: list[int] = []
        self.cancelled = False
        self.arrived = self.queued_at = time.monotonic()
        self.started: float | None = None        # took a row (prefill began)
        self.launched = 0                        # engine bookkeeping: tokens launched on the device
        self.kv_len = 0                          # engine bookkeeping: positions written into its slot
        self.first_token_at: float | None = None
        self.batch_size = 0                      # rows decoding beside it when it started (most seen, continuous)
        self.completion: Completion | None = None
        self._tokenizer, self._eos = tokenizer, frozenset(eos_ids)
        self._text = ""                          # decoded so far
        self._sent = 0                           # characters of _text already streamed
        self._prefix, self._read = 0, 0          # incremental detokenisation offsets
        self._emitted = False                    # some event already reached the caller
        self._stop = tuple(params.stop)
        self._stop_at: int | None = None         # where a stop string begins in _text

    @property
    def done(self) -> bool:
        return self.state in (JobState.FINISHED, JobState.FAILED)

    @property
    def restartable(self) -> bool:
        """Whether the job can run again from scratch with nobody noticing."""
        return not self.done and not self._emitted

    def restart(self) -> None:
        self.tokens = []
        self.first_token_at = None
        self._text, self._sent, self._prefix, self._read, self._stop_at = "", 0, 0, 0, None

    def cancel(self) -> None:
        """The client went away: the row stops at its next step and frees its slot."""
        self.cancelled = True

    # -- called from the engine thread

    def on_token(self, token: int, now: float) -> None:
        if self.done:
            return
        if self.first_token_at is None:
            self.first_token_at = now
        if token in self._eos:
            self.finish(STOP)
            return
        self.tokens.append(token)
        if self.constraint is not None:
            try:
                self.constraint.accept(token)
            except GrammarFailure as failure:  # the schema's own limit: this row fails alone
                self.fail(grammar_failed(failure))
                return
            if self.constraint.finished:  # the JSON value is complete: nothing but EOS may follow
                self.finish(STOP)
                return
        if self.stream or self._stop:
            checked = len(self._text)
            self._text += self._detokenize()
            if self._stop and self._find_stop(checked):
                self.finish(STOP)
                return
            if self.stream:
                self._stream(len(self._text) - self._held_back())
        if len(self.tokens) >= self.params.max_tokens:
            self.finish(LENGTH)
        elif self.cancelled:
            self.finish(CANCELLED)

    def _detokenize(self) -> str:
        # Decode a short window, not the whole answer: with SentencePiece a token's
        # leading space only survives when a previous token is decoded with it.
        prefix_text = self._tokenizer.decode(self.tokens[self._prefix:self._read], skip_special_tokens=True)
        new_text = self._tokenizer.decode(self.tokens[self._prefix:], skip_special_tokens=True)
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):  # hold back half a UTF-8 character
            self._prefix, self._read = self._read, len(self.tokens)
            return new_text[len(prefix_text):]
        return ""

    def _find_stop(self, checked: int) -> bool:
        """Whether a stop string now appears (it must end past `checked`, the text
        searched before); the answer then ends before it, as OpenAI's does."""
        start = max(0, checked - max(len(s) for s in self._stop) + 1)
        hits = [i for i in (self._text.find(s, start) for s in self._stop) if i >= 0]
        if hits:
            self._stop_at = min(hits)
        return bool(hits)

    def _held_back(self) -> int:
        """Characters at the end of the text that may be the start of a stop string:
        they are not streamed until the next tokens tell."""
        for keep in range(min(len(self._text), max((len(s) for s in self._stop), default=1) - 1), 0, -1):
            tail = self._text[-keep:]
            if any(s.startswith(tail) for s in self._stop):
                return keep
        return 0

    def _stream(self, upto: int) -> None:
        if upto > self._sent:
            self.events.put(("delta", self._text[self._sent:upto]))
            self._sent = upto
            self._emitted = True

    def finish(self, reason: str) -> Completion | None:
        if self.done:
            return None
        self.state = JobState.FINISHED
        now = time.monotonic()
        if self._stop_at is not None:
            text = self._text[:self._stop_at]
        else:
            text = self._tokenizer.decode(self.tokens, skip_special_tokens=True)
        if self.stream:
            sent = self._text[:self._sent]
            if text.startswith(sent) and len(text) > len(sent):
                self.events.put(("delta", text[len(sent):]))
        completion = Completion(text=text, finish_reason=reason, prompt_tokens=self.prepared.prompt_tokens,
                                completion_tokens=len(self.tokens),
                                ttft_s=None if self.first_token_at is None else self.first_token_at - self.arrived,
                                latency_s=now - self.arrived, queue_s=(self.started or now) - self.arrived,
                                batch_size=self.batch_size)
        self.completion = completion
        self.events.put(("done", completion))
        return completion

    def fail(self, error: ApiError) -> None:
        if not self.done:
            self.state = JobState.FAILED
            self.events.put(("error", error))

    # -- called from the HTTP thread

    def deltas(self, timeout: float):
        """Yield streamed text; return the Completion; raise the job's ApiError."""
        while True:
            try:
                kind, value = self.events.get(timeout=timeout)
            except queue.Empty:
                self.cancel()
                raise ApiError("internal_error", "the model did not produce a token in time") from None
            if kind == "delta":
                yield value
            elif kind == "done":
                return value
            else:
                raise value

    def result(self, timeout: float) -> Completion:
        stream = self.deltas(timeout)
        while True:
            try:
                next(stream)
            except StopIteration as stop:
                return stop.value
