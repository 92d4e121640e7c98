"""The KV cache: one slot per row, each holding a whole context, allocated once.

Layout (layers, keys|values, rows, kv heads, length + 1, head dim). Running rows
always occupy the first slots (scheduler.py keeps them packed), so a step over B
rows reads `keys(layer)[:B, :, :L]`, a view: nothing is gathered or copied per
step. A row that leaves is filled by the last running row (one copy of that row's
live positions, once); a joining row takes the next slot.

The extra position at index `length` is scratch: rows that are not decoding
(padding rows of a CUDA-graph bucket, a row whose prompt is still being written)
write there and never touch a live position.

Sizing (`rows_that_fit`): like vLLM's gpu_memory_utilization, KV_CACHE_MEMORY_FRACTION
of the device's memory is the process's budget; what the weights, the activations
of the largest prefill and a margin for the CUDA graphs take comes off it, and the
rest is split into whole slots.
"""
from __future__ import annotations

import torch

# With SDPA (the CPU, and the fallback of the Triton kernel, which reads each row's
# own length) attention reads a row's slot up to the longest running row rounded
# up to this many positions (one CUDA graph per length bucket): measured on an H100, a 256
# bucket reads ~9 % less than the whole 4,096-token slot at 3,000 live tokens and
# keeps the graph count small (notes/gpu-h100-measured.md).
ATTENTION_BUCKET = 256
# Room left for the CUDA graphs' memory pool and allocator fragmentation.
GRAPH_MARGIN_BYTES = 512 * 2**20


class KVSlots:
    def __init__(self, layers: int, rows: int, kv_heads: int, head_dim: int, length: int, dtype, device):
        self.rows, self.length, self.scratch = rows, length, length
        # Zeroed, not empty: padding rows attend over whatever a free slot holds, and
        # uninitialised memory may hold NaN bit patterns.
        self.data = torch.zeros(layers, 2, rows, kv_heads, length + 1, head_dim, dtype=dtype, device=device)

    def keys(self, layer: int) -> torch.Tensor:
        return self.data[layer, 0]

    def values(self, layer: int) -> torch.Tensor:
        return self.data[layer, 1]

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()

    def move(self, src: int, dst: int, tokens: int) -> None:
        """Copy the first `tokens` positions of slot `src` into slot `dst` (all layers)."""
        if tokens > 0:
            self.data[:, :, dst, :, :tokens] = self.data[:, :, src, :, :tokens]


def slot_bytes(text_config, dtype, length: int) -> int:
    """Bytes of one slot (all layers, keys and values, plus the scratch position)."""
    heads = text_config.num_attention_heads
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // heads
    kv_heads = getattr(text_config, "num_key_value_heads", None) or heads
    return 2 * text_config.num_hidden_layers * kv_heads * head_dim * (length + 1) * dtype.itemsize


def rows_that_fit(budget_bytes: int, per_row: int, cap: int) -> int:
    """Whole slots in the budget, at most `cap` (MAX_BATCH_SIZE)."""
    return max(0, min(cap, budget_bytes // per_row))


def attention_length(longest: int, length: int) -> int:
    """Positions attention reads for rows whose longest holds `longest` tokens."""
    return min(length, -(-longest // ATTENTION_BUCKET) * ATTENTION_BUCKET)


def cuda_budget(device, fraction: float, activation_peak: int) -> int:
    """Bytes the KV cache may take on a CUDA device now (weights already loaded)."""
    free, total = torch.cuda.mem_get_info(device)
    used = total - free
    return int(total * fraction) - used - activation_peak - GRAPH_MARGIN_BYTES


def cpu_budget(fraction: float) -> int | None:
    """Bytes the KV cache may take in host memory now (Linux MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(int(line.split()[1]) * 1024 * fraction)
    except OSError:
        pass
    return None
