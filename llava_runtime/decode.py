"""Decode modes: how `generate` runs the per-token decode step.

- eager: a dynamic KV cache that grows with each token and the model's Python
  forward. Works everywhere; every step pays Python and kernel-launch overhead,
  which at batch 1 on a GPU is most of the step.
- compiled: a static KV cache of fixed length (STATIC_CACHE_TOKENS per row) and the
  decode step through `torch.compile` (inductor, `reduce-overhead` = CUDA graphs),
  via transformers' own auto-compile in `generate` (`cache_implementation="static"`
  + `CompileConfig`). Prefill stays eager: its shape changes with every prompt.

The cache length is fixed (not sized per call) so the compiled step is rebuilt only
for new batch sizes (measured: one graph for the first size, one dynamic-batch graph,
one for batch 1), never per prompt length; the warmup's lone request and batch
build those before /health turns 200.

`auto` picks compiled on CUDA and eager elsewhere, and eager on a GPU where the
static cache for MAX_BATCH_SIZE rows would take more than half the memory left after
loading (a 24 GB card: eager's cache grows only as far as each batch needs). When
compiling fails (no C compiler or Triton, a graph break, a backend error) under
`auto`, the engine drops to eager for good and says so; under an explicit `compiled`
the failure is an error (at warmup: exit 3), so nobody benchmarks the slow path
believing it is the fast one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

EAGER, COMPILED, AUTO = "eager", "compiled", "auto"
MODES = (AUTO, EAGER, COMPILED)
BACKENDS = ("inductor", "aot_eager", "eager")
COMPILE_MODES = ("reduce-overhead", "default", "max-autotune", "max-autotune-no-cudagraphs")
# Exceptions raised by torch.compile's machinery rather than by the model itself.
_COMPILER_MODULES = ("torch._dynamo", "torch._inductor", "triton")
# Under auto, the static cache may take at most this share of the memory free after loading.
AUTO_CACHE_SHARE = 0.5


@dataclass(frozen=True)
class DecodePlan:
    mode: str                                 # eager | compiled
    fallback: bool = False                    # compiled under auto: a compile failure drops to eager
    generate_kwargs: dict = field(default_factory=dict)
    description: str = "eager (dynamic KV cache)"

    @property
    def compiled(self) -> bool:
        return self.mode == COMPILED


def eager() -> DecodePlan:
    return DecodePlan(EAGER)


def kv_bytes_per_token(text_config, dtype) -> int:
    """KV cache bytes one token takes in one row (all layers, keys and values)."""
    heads = text_config.num_attention_heads
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // heads
    kv_heads = getattr(text_config, "num_key_value_heads", None) or heads
    return 2 * text_config.num_hidden_layers * kv_heads * head_dim * dtype.itemsize


def plan(settings, device, context_length: int, token_bytes: int = 0, free_bytes: int | None = None) -> DecodePlan:
    """The decode plan for these settings on this device. `token_bytes` (kv_bytes_per_token)
    and `free_bytes` (device memory free after loading) let `auto` check the static cache fits."""
    wanted = settings.decode_mode
    if wanted == EAGER or (wanted == AUTO and device.type != "cuda"):
        return eager()
    cache_tokens = settings.static_cache_tokens or context_length
    need = settings.max_batch_size * cache_tokens * token_bytes
    if wanted == AUTO and free_bytes is not None and need > AUTO_CACHE_SHARE * free_bytes:
        return DecodePlan(EAGER, description=(
            f"eager: a static KV cache of MAX_BATCH_SIZE={settings.max_batch_size} rows x {cache_tokens} tokens needs "
            f"{need / 2**30:.1f} GiB, more than half the {free_bytes / 2**30:.1f} GiB free (lower MAX_BATCH_SIZE or "
            "STATIC_CACHE_TOKENS, or set DECODE_MODE=compiled)"))
    from transformers import CompileConfig

    backend = settings.compile_backend
    # torch.compile accepts `mode` for inductor only.
    mode = settings.compile_mode if backend == "inductor" else None
    # fullgraph: a graph break becomes an error (and a fallback under auto) instead
    # of a silently slower step; CUDA graphs need the whole step in one graph.
    config = CompileConfig(fullgraph=True, backend=backend, mode=mode)
    if device.type != "cuda":
        config._compile_all_devices = True  # transformers only auto-compiles on accelerators otherwise
    return DecodePlan(COMPILED, fallback=wanted == AUTO,
                      generate_kwargs={"cache_implementation": "static", "max_cache_len": cache_tokens,
                                       "compile_config": config},
                      description=f"compiled (static KV cache of {cache_tokens} tokens per row, torch.compile "
                                  f"backend={backend}" + (f", mode={mode}" if mode else "") + ")")


def is_compile_error(exc: BaseException) -> bool:
    """Whether `exc` (or what it wraps) comes from torch.compile, not from the model."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if any(cls.__module__.startswith(_COMPILER_MODULES) for cls in type(exc).__mro__):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
