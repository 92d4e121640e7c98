"""Where a token is chosen: per-row sampling on the device, for both engines.

Each row has its own temperature (0 = greedy), top_k, top_p, min_tokens and seed.
All rows of a step are chosen together with tensor operations only (no host sync,
no RNG state), so the continuous engine can capture the choice inside its CUDA
graph.

Sampling is the Gumbel-max trick: argmax(logits / T + G) draws from
softmax(logits / T), here restricted to the top_k / top_p set. G comes from a
counter-based hash of (seed, index of the token in the answer, vocabulary id), not
from a generator: the same seed gives the same answer alone or in any batch, on
either engine, and rows never share random state. A request without a seed gets
a random one at submission.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass

import torch

from .inputs import SamplingParams

_MASK32 = 0xFFFFFFFF
_NEG_INF = float("-inf")


def row_seed(params: SamplingParams) -> int:
    """The seed a row samples with, as a signed 64-bit integer."""
    return params.seed if params.seed is not None else secrets.randbits(63)


@dataclass
class RowParams:
    """Per-row sampling settings as device tensors, one entry per row."""
    temperature: torch.Tensor   # float32; 0 = greedy
    top_p: torch.Tensor         # float32 in (0, 1]
    top_k: torch.Tensor         # int64; <= 0 = off
    min_tokens: torch.Tensor    # int64
    seed: torch.Tensor          # int64

    @classmethod
    def empty(cls, rows: int, device) -> "RowParams":
        return cls(temperature=torch.zeros(rows, dtype=torch.float32, device=device),
                   top_p=torch.ones(rows, dtype=torch.float32, device=device),
                   top_k=torch.zeros(rows, dtype=torch.int64, device=device),
                   min_tokens=torch.zeros(rows, dtype=torch.int64, device=device),
                   seed=torch.zeros(rows, dtype=torch.int64, device=device))

    @classmethod
    def of(cls, params: list[SamplingParams], seeds: list[int], device) -> "RowParams":
        """A batch's settings (the generate engine builds one per batch)."""
        return cls(temperature=torch.tensor([p.temperature for p in params], dtype=torch.float32, device=device),
                   top_p=torch.tensor([p.top_p for p in params], dtype=torch.float32, device=device),
                   top_k=torch.tensor([p.top_k for p in params], dtype=torch.int64, device=device),
                   min_tokens=torch.tensor([p.min_tokens for p in params], dtype=torch.int64, device=device),
                   seed=torch.tensor(seeds, dtype=torch.int64, device=device))

    def rows(self, end: int, start: int = 0) -> "RowParams":
        return RowParams(*(t[start:end] for t in self._tensors()))

    def set_row(self, row: int, params: SamplingParams, seed: int) -> None:
        """Write one row's settings in place (the continuous engine's slot buffers)."""
        self.temperature[row] = params.temperature
        self.top_p[row] = params.top_p
        self.top_k[row] = params.top_k
        self.min_tokens[row] = params.min_tokens
        self.seed[row] = seed

    def copy_row(self, src: int, dst: int) -> None:
        for tensor in self._tensors():
            tensor[dst] = tensor[src]

    def _tensors(self):
        return self.temperature, self.top_p, self.top_k, self.min_tokens, self.seed


def suppress_eos(logits: torch.Tensor, generated: torch.Tensor, params: RowParams,
                 eos_ids: torch.Tensor) -> torch.Tensor:
    """EOS cannot be chosen before a row has its min_tokens (in place on `logits`)."""
    early = (generated < params.min_tokens).unsqueeze(1)                     # (rows, 1)
    eos_logits = logits.index_select(1, eos_ids)
    logits.index_copy_(1, eos_ids, eos_logits.masked_fill(early, _NEG_INF))
    return logits


def apply_bitmask(logits: torch.Tensor, bitmask: torch.Tensor) -> torch.Tensor:
    """Forbid (in place) every token whose bit is 0 in its row of `bitmask` (int32 words,
    bit i of word w = token 32w + i; all bits set = unconstrained). Tensor ops only."""
    shifts = torch.arange(32, dtype=torch.int32, device=bitmask.device)
    allowed = ((bitmask.unsqueeze(-1) >> shifts) & 1).flatten(1)[:, :logits.shape[-1]]
    return logits.masked_fill_(allowed == 0, _NEG_INF)


def choose(logits: torch.Tensor, generated: torch.Tensor, params: RowParams, eos_ids: torch.Tensor,
           sampled: bool = True, bitmask: torch.Tensor | None = None) -> torch.Tensor:
    """The next token of every row: logits (rows, vocab); `generated` (rows,) counts the
    tokens each row already has (it indexes the noise and gates min_tokens). `sampled`
    False promises that every row is greedy (the caller knows; no device check);
    `bitmask` restricts rows to what their grammar allows (grammar.py)."""
    logits = logits.float()
    if bitmask is not None:
        logits = apply_bitmask(logits, bitmask)
    logits = suppress_eos(logits, generated, params, eos_ids)
    if not sampled:
        return logits.argmax(dim=-1)
    return torch.where(params.temperature > 0, sample(logits, generated, params), logits.argmax(dim=-1))


def sample(logits: torch.Tensor, generated: torch.Tensor, params: RowParams) -> torch.Tensor:
    """Temperature, top_k and top_p, drawn with seeded Gumbel noise (float32 logits)."""
    vocab = logits.shape[-1]
    temperature = torch.where(params.temperature > 0, params.temperature, torch.ones_like(params.temperature))
    scaled, order = (logits / temperature.unsqueeze(1)).sort(dim=-1, descending=True)
    rank = torch.arange(vocab, device=logits.device).unsqueeze(0)
    top_k = torch.where(params.top_k > 0, params.top_k, torch.full_like(params.top_k, vocab))
    keep = rank < top_k.unsqueeze(1)
    probs = scaled.masked_fill(~keep, _NEG_INF).softmax(dim=-1)
    # Keep a token while the mass before it is under top_p (the first always stays).
    keep &= (probs.cumsum(dim=-1) - probs) < params.top_p.unsqueeze(1)
    noise = gumbel(params.seed, generated, order)
    choice = (scaled + noise).masked_fill(~keep, _NEG_INF).argmax(dim=-1, keepdim=True)
    return order.gather(1, choice).squeeze(1)


def gumbel(seed: torch.Tensor, step: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise (rows, n) for rows' (seed, step) and the given token ids."""
    low, high = seed & _MASK32, (seed >> 32) & _MASK32
    row = _mix32(step.to(torch.int64) & _MASK32 ^ _mix32(high ^ _mix32(low)))            # (rows,)
    bits = _mix32(token_ids ^ row.unsqueeze(1))                                         # (rows, n)
    uniform = ((bits >> 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))                 # (0, 1), 24 bits
    return -torch.log(-torch.log(uniform))


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (Wellons' lowbias32) on int64 tensors holding 32-bit values."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _mul32(x: torch.Tensor, constant: int) -> torch.Tensor:
    """(x * constant) mod 2**32 without overflowing int64: in two 16-bit halves."""
    low = (x & 0xFFFF) * constant
    high = ((x >> 16) * constant) & 0xFFFF
    return (low + (high << 16)) & _MASK32
