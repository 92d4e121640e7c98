"""Constrained decoding: answers that follow a JSON Schema by construction.

Why llguidance (rather than xgrammar, the usual choice): it is a self-contained
wheel (3 MB, no Triton: xgrammar pulls a 286 MB Triton wheel into an image that
never uses it), works from the Hugging Face tokenizer, computes a row's token mask
in microseconds on the CPU, and refuses the JSON Schema keywords it cannot enforce
(`not`, `if`, `uniqueItems`, ...) instead of ignoring them. vLLM and SGLang use it too.

A request's schema is compiled in the HTTP thread that received it (never on the
engine thread), bounded by llguidance's parser limits, and kept in an LRU cache by
tenant and schema hash (a tenant never finds another's entry, so the time of its
own compile says nothing about what others asked); each job gets a fresh matcher
copied from the cached one. The engine asks the job's `Constraint` for the mask of
the next token (a row of a bitmask, one bit per vocabulary id) and tells it each
token chosen.

A request's grammar can only fail its own row (issue 25). Schemas too costly to
enforce are refused before they are queued (llava_common/schema_costs.py); a new
grammar is then tried on its forced prefix and first mask before it is cached.
What remains is bounded while decoding: llguidance's limits put the matcher in an
error state, and a mask that takes longer than its budget of the engine thread's
CPU time is one too; either raises GrammarFailure, which fails that row with 400
`invalid_request` (the schema's fault: the model process is fine) while the other
rows go on.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass

import torch

from llava_common.schemas import StructuredOutput

from .errors import ApiError

log = logging.getLogger(__name__)
CACHE_SIZE = 256
# Bounds on the work one compile and one mask may take (llguidance's "fuel"): a
# pathological schema fails with 400 instead of holding a thread.
_LIMITS = dict(initial_lexer_fuel=1_000_000, step_lexer_fuel=200_000, max_grammar_size=500_000)
# Masks a row computes before its average is held to the budget (the first masks of a
# value, at the root of its grammar, cost the most).
AVERAGE_AFTER_MASKS = 32
# Tenant of requests that name none (called without the gateway).
NO_TENANT = ""


class GrammarFailure(Exception):
    """A row's grammar cannot go on: a limit of the grammar engine, or the mask budget.
    `str()` is written for the client (no exception text from inside)."""


@dataclass(frozen=True)
class MaskBudget:
    """CPU time of the engine thread one row's masks may take: each mask at most
    `single_s`, and after AVERAGE_AFTER_MASKS masks, `average_s` on average. CPU time
    (the thread's own), not wall time, so a busy machine does not fail a row."""
    single_s: float = 0.010
    average_s: float = 0.0005


def _reason(matcher) -> str:
    error = matcher.get_error().strip()
    return error.splitlines()[0][:300] if error else "the grammar engine stopped"


def bitmask_words(vocab: int) -> int:
    """int32 words of a row mask covering `vocab` logits."""
    return (vocab + 31) // 32


class Constraint:
    """One job's grammar state: the tokens allowed next, advanced token by token."""

    def __init__(self, matcher, output: StructuredOutput, vocab: int, budget: MaskBudget = MaskBudget(),
                 on_failure=None):
        self.matcher, self.output, self.matcher_vocab, self.budget = matcher, output, vocab, budget
        self._on_failure = on_failure  # counts a failure (metrics)
        self._staging: torch.Tensor | None = None
        self.masks, self.mask_cpu_s = 0, 0.0   # masks computed and the engine thread's CPU time they took

    def staged_mask(self, words: int, pin: bool) -> torch.Tensor:
        """This job's next-token mask in a host buffer of its own (pinned on CUDA), for a
        non-blocking copy to the device: nothing else writes it while the copy may run."""
        if self._staging is None:
            self._staging = torch.empty(words, dtype=torch.int32, pin_memory=pin)
        self.fill(self._staging)
        return self._staging

    def fill(self, mask_row: torch.Tensor) -> None:
        """Write the allowed-next-token bits into `mask_row` (int32, contiguous, on the CPU).
        (llguidance.torch.fill_next_token_bitmask does the same; importing that module
        compiles a TorchScript kernel we do not use.)"""
        assert mask_row.dtype == torch.int32 and mask_row.is_contiguous() and mask_row.device.type == "cpu"
        mask_row.zero_()  # ids past the tokenizer's (the model's padded vocabulary) stay forbidden
        words = min(mask_row.numel(), bitmask_words(self.matcher_vocab))
        started = time.thread_time()
        self.matcher.unsafe_compute_mask_ptr(mask_row.data_ptr(), words * 4)
        took = time.thread_time() - started
        self.masks += 1
        self.mask_cpu_s += took
        if self.matcher.is_error():
            raise self._failed(f"the schema could not be enforced: {_reason(self.matcher)}")
        if took > self.budget.single_s:
            raise self._failed(f"the schema is too costly to enforce: one token's mask took {took * 1000:.1f} ms "
                               f"of the engine (at most {self.budget.single_s * 1000:g} ms)")
        if self.masks > AVERAGE_AFTER_MASKS and self.mask_cpu_s > self.masks * self.budget.average_s:
            raise self._failed(f"the schema is too costly to enforce: its masks took "
                               f"{self.mask_cpu_s / self.masks * 1000:.2f} ms per token of the engine (at most "
                               f"{self.budget.average_s * 1000:g} ms)")

    def accept(self, token: int) -> None:
        """Advance by `token`; GrammarFailure if the grammar cannot take it (a limit of
        the grammar engine: the mask allowed the token)."""
        if not self.matcher.consume_token(token) or self.matcher.is_error():
            raise self._failed(f"the schema could not be enforced: {_reason(self.matcher)}")

    def _failed(self, why: str) -> GrammarFailure:
        if self._on_failure is not None:
            self._on_failure()
        return GrammarFailure(why)

    @property
    def finished(self) -> bool:
        """The value is complete: nothing but end-of-sequence may follow."""
        return self.matcher.is_stopped()


class Grammars:
    """Compiles structured-output requests for one tokenizer, with a cache."""

    def __init__(self, hf_tokenizer, budget: MaskBudget = MaskBudget(), metrics=None):
        self._hf_tokenizer, self.budget, self._metrics = hf_tokenizer, budget, metrics
        self._tokenizer = None
        self._lock = threading.Lock()
        self._cache: collections.OrderedDict[tuple[str, str], object] = collections.OrderedDict()
        self.compiled = 0   # compiles that missed the cache (tests, metrics)

    def _llg_tokenizer(self):
        if self._tokenizer is None:
            import llguidance.hf

            self._tokenizer = llguidance.hf.from_tokenizer(self._hf_tokenizer)
        return self._tokenizer

    def constraint(self, output: StructuredOutput, tenant: str = NO_TENANT) -> Constraint:
        """A fresh matcher for `output`, or ApiError 400 when its schema cannot be enforced.
        Cached per `tenant`: one tenant's compile never makes another's faster."""
        key = (tenant, output.key)
        with self._lock:
            template = self._cache.get(key)
            if template is not None:
                self._cache.move_to_end(key)
        if template is None:
            template = self._compile(output)
            with self._lock:
                self._cache[key] = template
                self.compiled += 1
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
            if self._metrics is not None:
                self._metrics.grammar_compiles.inc()
        return Constraint(template.deep_copy(), output, self._llg_tokenizer().vocab_size, self.budget,
                          self._count_failure("decode"))

    def _count_failure(self, stage: str):
        return None if self._metrics is None else self._metrics.grammar_failures.labels(stage).inc

    def _compile(self, output: StructuredOutput):
        import llguidance

        grammar = llguidance.LLMatcher.grammar_from_json_schema(output.schema_json,
                                                                defaults={"whitespace_flexible": False})
        template = llguidance.LLMatcher(self._llg_tokenizer(), grammar, limits=llguidance.LLParserLimits(**_LIMITS))
        if template.is_error():
            raise ApiError("invalid_request", f"the schema cannot be enforced: {_reason(template)}", "response_format")
        self._try(template.deep_copy(), output)
        return template

    def _try(self, matcher, output: StructuredOutput) -> None:
        """Run a new grammar over what every answer starts with (its forced tokens, e.g.
        `{` and the first key) and the masks before and after: a grammar that fails or
        overruns its budget there would fail every row that used it, so it is refused now
        (120 `anyOf` objects passed the parser's items limit on the first `{`)."""
        trial = Constraint(matcher, output, self._llg_tokenizer().vocab_size, self.budget,
                           self._count_failure("compile"))
        mask = torch.empty(bitmask_words(trial.matcher_vocab), dtype=torch.int32)
        try:
            trial.fill(mask)
            for token in matcher.compute_ff_tokens():
                trial.accept(token)
            if not matcher.is_stopped():
                trial.fill(mask)
        except GrammarFailure as failure:
            raise ApiError("invalid_request", str(failure), "response_format") from None
