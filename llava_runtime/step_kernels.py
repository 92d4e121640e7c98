"""How the decode step's layers run on this device: which attention, and whether
their two dense parts (decoder.project_layer, decoder.finish_layer) are compiled.

- Attention: the Triton kernel over each row's length (decode_attention.py; one
  CUDA graph per rows bucket) on CUDA when Triton imports and the kernel, run once
  at start-up at the model's own head shapes, matches SDPA; otherwise SDPA over the
  longest row's length bucket, with a mask (the CPU, DECODE_ATTENTION=sdpa, or a
  failed check: logged, and an error under an explicit DECODE_ATTENTION=triton).
- Compile (COMPILE_DECODE_STEP, CUDA): torch.compile of both parts, fused kernels
  inside the engine's own CUDA graphs (inductor's default mode: no graphs of its
  own), rows dynamic, so one compile serves every layer and every rows bucket (and
  one more for a single row, which torch specialises). Inductor's FX graph cache
  and Triton's kernel cache live in COMPILE_CACHE_DIR, so a restart skips the
  compile. A compile that fails is logged, `llava_model_decode_compiled` drops to
  0, and the step runs the same parts uncompiled.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from . import decode_attention
from .decoder import finish_layer, project_layer
from .loader import BootError

log = logging.getLogger(__name__)
AUTO, TRITON, SDPA = "auto", "triton", "sdpa"
ATTENTION_MODES = (AUTO, TRITON, SDPA)


def choose_attention(wanted: str, decoder, device) -> str:
    """TRITON or SDPA for this device (see the module docstring)."""
    if wanted == SDPA or (wanted == AUTO and device.type != "cuda"):
        return SDPA
    try:
        if not decode_attention.available():
            raise RuntimeError("Triton is not installed")
        if device.type != "cuda":
            raise RuntimeError("the Triton kernel runs on CUDA only")
        check_kernel(decoder, device)
    except Exception as exc:
        if wanted == TRITON:
            raise BootError(f"DECODE_ATTENTION=triton cannot run here: {exc}") from exc
        log.error("the Triton decode-attention kernel is not used (SDPA instead, slower): %s", exc, exc_info=True)
        return SDPA
    return TRITON


def check_kernel(decoder, device) -> None:
    """The kernel against SDPA on random data at the model's head shapes and dtype,
    rows of ragged lengths up to a few splits."""
    generator = torch.Generator(device=device).manual_seed(0)
    rows, positions = 3, 3 * decode_attention.SPLIT + 5
    shape = (rows + 1, decoder.kv_heads, positions, decoder.head_dim)
    q = torch.randn(rows, decoder.heads, decoder.head_dim, generator=generator, device=device).to(decoder.dtype)
    keys = torch.randn(*shape, generator=generator, device=device).to(decoder.dtype)
    values = torch.randn(*shape, generator=generator, device=device).to(decoder.dtype)
    lengths = torch.tensor([positions, 1, positions // 2], device=device)
    got = decode_attention.attend(q, keys, values, lengths, decoder.scaling).float()
    for row, length in enumerate(lengths.tolist()):
        expected = F.scaled_dot_product_attention(
            q[row:row + 1, :, None].float(), keys[row:row + 1, :, :length].float(),
            values[row:row + 1, :, :length].float(), scale=decoder.scaling,
            enable_gqa=decoder.kv_heads != decoder.heads)[0, :, 0]
        error = (got[row] - expected).abs().max().item()
        if not error < 0.05:
            raise RuntimeError(f"the kernel differs from SDPA by {error:.3g} (row of {length} positions)")


def compile_cache(directory: str) -> Path:
    """Point inductor's and Triton's on-disk caches at `directory` (unless the
    environment already chose them): a restart reuses what this start compiled."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(path / "inductor"))
    os.environ.setdefault("TRITON_CACHE_DIR", str(path / "triton"))
    return path


class LayerParts:
    """The decode step's `project` and `finish`, compiled or plain."""

    def __init__(self, compiled: bool, backend: str = "inductor"):
        self.compiled, self.backend = compiled, backend
        self.error = ""
        if compiled:
            self.project = _rows_dynamic(torch.compile(project_layer, fullgraph=True, backend=backend))
            self.finish = _rows_dynamic(torch.compile(finish_layer, fullgraph=True, backend=backend))
        else:
            self.project, self.finish = project_layer, finish_layer

    def give_up(self, exc: BaseException) -> None:
        """Compiling failed: the plain parts from now on."""
        cause = exc.__cause__ or getattr(exc, "inner_exception", None)  # dynamo keeps the backend's error there
        self.error = "; caused by ".join(_first_line(e) for e in (exc, cause) if e is not None)
        log.error("compiling the decode step failed; running it uncompiled (slower): %s", self.error, exc_info=True)
        self.compiled, self.project, self.finish = False, project_layer, finish_layer


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _rows_dynamic(compiled):
    """Call `compiled` with the first dim (rows) of every tensor argument marked
    dynamic, and only that one: `dynamic=True` would make the head dims symbolic too,
    and a rows count equal to one of them would then cost a recompile."""
    def call(layer, *args):
        for arg in args:
            if isinstance(arg, torch.Tensor):
                torch._dynamo.maybe_mark_dynamic(arg, 0)
        return compiled(layer, *args)
    return call
