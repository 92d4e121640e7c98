"""Constrained decoding: answers that follow a JSON Schema by construction.

Why llguidance (rather than xgrammar, the usual choice): it is a self-contained
wheel (3 MB, no Triton: xgrammar pulls a 286 MB Triton wheel into an image that
never uses it), works from the Hugging Face tokenizer, computes a row's token mask
in microseconds on the CPU, and refuses the JSON Schema keywords it cannot enforce
(`not`, `if`, `uniqueItems`, ...) instead of ignoring them. vLLM and SGLang use it too.

A request's schema is compiled in the HTTP thread that received it (never on the
engine thread), bounded by llguidance's parser limits, and kept in an LRU cache by
the schema's hash; each job gets a fresh matcher copied from the cached one. The
engine asks the job's `Constraint` for the mask of the next token (a row of a
bitmask, one bit per vocabulary id) and tells it each token chosen.
"""
from __future__ import annotations

import collections
import logging
import threading

import torch

from llava_common.schemas import StructuredOutput

from .errors import ApiError

log = logging.getLogger(__name__)
CACHE_SIZE = 256
# Bounds on the work one compile and one mask may take (llguidance's "fuel"): a
# pathological schema fails with 400 instead of holding a thread.
_LIMITS = dict(initial_lexer_fuel=1_000_000, step_lexer_fuel=200_000, max_grammar_size=500_000)


def bitmask_words(vocab: int) -> int:
    """int32 words of a row mask covering `vocab` logits."""
    return (vocab + 31) // 32


class Constraint:
    """One job's grammar state: the tokens allowed next, advanced token by token."""

    def __init__(self, matcher, output: StructuredOutput, vocab: int):
        self.matcher, self.output, self.matcher_vocab = matcher, output, vocab

    def fill(self, mask_row: torch.Tensor) -> None:
        """Write the allowed-next-token bits into `mask_row` (int32, contiguous, on the CPU).
        (llguidance.torch.fill_next_token_bitmask does the same; importing that module
        compiles a TorchScript kernel we do not use.)"""
        assert mask_row.dtype == torch.int32 and mask_row.is_contiguous() and mask_row.device.type == "cpu"
        mask_row.zero_()  # ids past the tokenizer's (the model's padded vocabulary) stay forbidden
        words = min(mask_row.numel(), bitmask_words(self.matcher_vocab))
        self.matcher.unsafe_compute_mask_ptr(mask_row.data_ptr(), words * 4)

    def accept(self, token: int) -> bool:
        """Advance by `token`; False if the grammar cannot take it (a bug: the mask allowed it)."""
        return bool(self.matcher.consume_token(token)) and not self.matcher.is_error()

    @property
    def finished(self) -> bool:
        """The value is complete: nothing but end-of-sequence may follow."""
        return self.matcher.is_stopped()


class Grammars:
    """Compiles structured-output requests for one tokenizer, with a cache."""

    def __init__(self, hf_tokenizer):
        self._hf_tokenizer = hf_tokenizer
        self._tokenizer = None
        self._lock = threading.Lock()
        self._cache: collections.OrderedDict[str, object] = collections.OrderedDict()
        self.compiled = 0   # compiles that missed the cache (tests, metrics)

    def _llg_tokenizer(self):
        if self._tokenizer is None:
            import llguidance.hf

            self._tokenizer = llguidance.hf.from_tokenizer(self._hf_tokenizer)
        return self._tokenizer

    def constraint(self, output: StructuredOutput) -> Constraint:
        """A fresh matcher for `output`, or ApiError 400 when its schema cannot be enforced."""
        import llguidance

        with self._lock:
            template = self._cache.get(output.key)
            if template is not None:
                self._cache.move_to_end(output.key)
        if template is None:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(
                output.schema_json, defaults={"whitespace_flexible": False})
            template = llguidance.LLMatcher(self._llg_tokenizer(), grammar,
                                            limits=llguidance.LLParserLimits(**_LIMITS))
            if template.is_error():
                reason = template.get_error().strip().splitlines()[0][:300] if template.get_error().strip() else ""
                raise ApiError("invalid_request", f"the schema cannot be enforced: {reason}", "response_format")
            with self._lock:
                self._cache[output.key] = template
                self.compiled += 1
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return Constraint(template.deep_copy(), output, self._llg_tokenizer().vocab_size)
