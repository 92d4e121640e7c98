"""Decode attention that takes each row's length: one query token per row over
its KV slot, in Triton (it ships with the CUDA build of torch).

Why a kernel of our own: SDPA needs a mask and reads every position up to the
attended length for every row, so the engine bucketed that length and captured one
CUDA graph per (rows, length) bucket; padding rows read whole slots. Here each row
reads exactly its own positions [0, length) and a row of length 0 (padding, or not
decoding) reads nothing, so one graph per rows bucket serves every length.

Split-K (flash-decoding): stage 1 gives each (row, KV head, split of SPLIT
positions) its own program, which keeps the card busy at batch 1 (a row's few
thousand positions become ~a dozen programs per head); it writes a partial output
with its running max and sum. Stage 2 combines a row's splits with the usual
log-sum-exp rescaling. The query heads that share a KV head (GQA) are one program's
block, so each key and value is read once per KV head. Accumulation is in float32.

Kernels are built on first use (`TRITON_INTERPRET=1`, read then, runs them on the
CPU for the tests).
"""
from __future__ import annotations

import functools
import math
import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # a CPU-only install without Triton: the engine uses SDPA
    triton = None

SPLIT = 256      # positions per stage-1 program
BLOCK_N = 64     # positions per loop step inside it


def available() -> bool:
    return triton is not None


if triton is not None:
    def _split_kernel(Q, K, V, Lengths, Acc, Max, Sum,
                      q_row, q_head, k_slot, k_head, k_pos, v_slot, v_head, v_pos,
                      kv_heads, splits, scale_log2,
                      GROUP: tl.constexpr, BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
                      SPLIT_N: tl.constexpr, BLOCK: tl.constexpr):
        program = tl.program_id(0)
        split = tl.program_id(1)
        row = program // kv_heads
        kv_head = program % kv_heads
        length = tl.load(Lengths + row).to(tl.int32)
        g = tl.arange(0, BLOCK_G)
        d = tl.arange(0, BLOCK_D)
        heads = kv_head * GROUP + g
        g_ok = g < GROUP
        d_ok = d < HEAD_DIM
        q = tl.load(Q + row * q_row + heads[:, None] * q_head + d[None, :], mask=g_ok[:, None] & d_ok[None, :],
                    other=0.0).to(tl.float32)
        running_max = tl.full([BLOCK_G], float("-inf"), tl.float32)
        running_sum = tl.zeros([BLOCK_G], tl.float32)
        acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
        start = split * SPLIT_N
        end = tl.minimum(start + SPLIT_N, length)
        k_base = K + row * k_slot + kv_head * k_head
        v_base = V + row * v_slot + kv_head * v_head
        for first in range(start, end, BLOCK):
            n = first + tl.arange(0, BLOCK)
            n_ok = n < end
            kv_mask = n_ok[:, None] & d_ok[None, :]
            k = tl.load(k_base + n[:, None] * k_pos + d[None, :], mask=kv_mask, other=0.0).to(tl.float32)
            scores = tl.sum(q[:, None, :] * k[None, :, :], axis=2) * scale_log2          # (BLOCK_G, BLOCK)
            scores = tl.where(n_ok[None, :], scores, float("-inf"))
            new_max = tl.maximum(running_max, tl.max(scores, axis=1))
            rescale = tl.exp2(running_max - new_max)
            p = tl.exp2(scores - new_max[:, None])
            v = tl.load(v_base + n[:, None] * v_pos + d[None, :], mask=kv_mask, other=0.0).to(tl.float32)
            acc = acc * rescale[:, None] + tl.sum(p[:, :, None] * v[None, :, :], axis=1)
            running_sum = running_sum * rescale + tl.sum(p, axis=1)
            running_max = new_max
        # partials: (rows, heads, splits[, dim]), contiguous
        at = (row * kv_heads * GROUP + heads) * splits + split
        tl.store(Acc + at[:, None] * HEAD_DIM + d[None, :], acc, mask=g_ok[:, None] & d_ok[None, :])
        tl.store(Max + at, running_max, mask=g_ok)
        tl.store(Sum + at, running_sum, mask=g_ok)

    def _combine_kernel(Acc, Max, Sum, Out, o_row, o_head, heads, splits,
                        HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_S: tl.constexpr):
        program = tl.program_id(0)   # row * heads + head
        s = tl.arange(0, BLOCK_S)
        d = tl.arange(0, BLOCK_D)
        s_ok = s < splits
        d_ok = d < HEAD_DIM
        maxes = tl.load(Max + program * splits + s, mask=s_ok, other=float("-inf"))
        top = tl.max(maxes, axis=0)
        top = tl.where(top == float("-inf"), 0.0, top)   # a row of length 0: every split empty
        weights = tl.exp2(maxes - top)
        total = tl.sum(tl.load(Sum + program * splits + s, mask=s_ok, other=0.0) * weights, axis=0)
        acc = tl.load(Acc + (program * splits + s[:, None]) * HEAD_DIM + d[None, :],
                      mask=s_ok[:, None] & d_ok[None, :], other=0.0)
        out = tl.sum(acc * weights[:, None], axis=0) / tl.where(total == 0.0, 1.0, total)
        row = program // heads
        head = program % heads
        tl.store(Out + row * o_row + head * o_head + d, out.to(Out.dtype.element_ty), mask=d_ok)


@functools.cache
def _kernels(interpret: bool):
    """(stage 1, stage 2), jitted once per mode (the interpreter is chosen at jit time)."""
    return triton.jit(_split_kernel), triton.jit(_combine_kernel)


def _next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def attend(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, lengths: torch.Tensor,
           scale: float) -> torch.Tensor:
    """q (rows, heads, dim); keys, values (slots >= rows, kv heads, positions, dim), their
    last dim contiguous; lengths (rows,): row r attends to positions [0, lengths[r]) of
    slot r (0: nothing, output 0). Returns (rows, heads, dim) in q's dtype."""
    q = q.contiguous()  # a no-op for the step's own q; a compiled step may hand over other strides
    rows, heads, dim = q.shape
    kv_heads, positions = keys.shape[1], keys.shape[2]
    group = heads // kv_heads
    splits = triton.cdiv(positions, SPLIT)
    assert keys.stride(3) == 1 and values.stride(3) == 1 and heads == group * kv_heads
    out = torch.empty_like(q)
    acc = torch.empty(rows, heads, splits, dim, dtype=torch.float32, device=q.device)
    maxes = torch.empty(rows, heads, splits, dtype=torch.float32, device=q.device)
    sums = torch.empty_like(maxes)
    split_kernel, combine_kernel = _kernels(os.environ.get("TRITON_INTERPRET") == "1")
    block_g, block_d = _next_power_of_2(group), _next_power_of_2(dim)
    split_kernel[(rows * kv_heads, splits)](
        q, keys, values, lengths, acc, maxes, sums,
        q.stride(0), q.stride(1), keys.stride(0), keys.stride(1), keys.stride(2),
        values.stride(0), values.stride(1), values.stride(2), kv_heads, splits, scale * math.log2(math.e),
        GROUP=group, BLOCK_G=block_g, HEAD_DIM=dim, BLOCK_D=block_d, SPLIT_N=SPLIT,
        BLOCK=max(16, BLOCK_N // block_g))
    combine_kernel[(rows * heads,)](acc, maxes, sums, out, out.stride(0), out.stride(1), heads, splits,
                                    HEAD_DIM=dim, BLOCK_D=block_d, BLOCK_S=_next_power_of_2(splits))
    return out
