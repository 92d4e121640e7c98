"""Load a llava-hf LLaVA-NeXT checkpoint (or build the demo one) onto the device.

Every reason the process cannot start becomes a `BootError` with a one-line
message; the entry point exits with exit_codes.BOOT_ERROR so the supervisor stops
instead of restarting into the same failure.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

import torch

from .preprocess import speed_up

log = logging.getLogger(__name__)
ARCHITECTURE = "llava_next"


class BootError(Exception):
    """The process cannot start with this configuration; restarting will not help."""


@dataclass
class LoadedModel:
    model: object
    processor: object
    name: str
    source: str
    device: torch.device
    dtype: torch.dtype
    context_length: int
    image_token_id: int

    @property
    def tokenizer(self):
        return self.processor.tokenizer


class Progress:
    """What start-up is doing now. `step` moves only on real progress (a new phase,
    a weight loaded, a warmup request done), so a watcher can tell a slow load from
    a stuck one. Live tqdm bars (weights, downloads) are read where they are."""

    def __init__(self):
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.phase, self.detail, self.step = "starting", "", 0

    def set(self, phase: str, detail: str = "") -> None:
        with self._lock:
            self.phase, self.detail, self.step = phase, detail, self.step + 1
        log.info("start-up: %s%s", phase, f" ({detail})" if detail else "")

    def snapshot(self) -> dict:
        bars = _live_bars()
        with self._lock:
            return {"phase": self.phase,
                    "progress": {"step": self.step + sum(b["n"] for b in bars), "detail": self.detail, "bars": bars},
                    "elapsedSeconds": round(time.monotonic() - self.started, 1)}

    def report_every(self, seconds: float, stop: threading.Event) -> threading.Thread:
        """Log a progress line periodically until `stop` is set (a 7B load takes minutes)."""
        def run():
            while not stop.wait(seconds):
                snap = self.snapshot()
                bars = "; ".join(f"{b['desc']} {b['n']}/{b['total']}" for b in snap["progress"]["bars"])
                log.info("still starting: %s%s, %.0fs elapsed", snap["phase"], f" [{bars}]" if bars else "",
                         snap["elapsedSeconds"])
        thread = threading.Thread(target=run, name="progress", daemon=True)
        thread.start()
        return thread


def _live_bars() -> list[dict]:
    try:
        from tqdm import tqdm
        return [{"desc": str(bar.desc or "").strip(": "), "n": int(bar.n), "total": int(bar.total or 0)}
                for bar in list(tqdm._instances)]
    except Exception:  # tqdm internals are not a contract; progress then shows phases only
        return []


def resolve_device(settings) -> tuple[torch.device, torch.dtype]:
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise BootError("DEVICE=cuda but no CUDA GPU is visible to this process "
                        "(check the driver and NVIDIA_VISIBLE_DEVICES)")
    use_cuda = settings.device == "cuda" or (settings.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda", torch.cuda.current_device()) if use_cuda else torch.device("cpu")
    if settings.dtype != "auto":
        return device, getattr(torch, settings.dtype)
    if use_cuda:
        return device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return device, torch.float32


def load_model(settings, progress: Progress) -> LoadedModel:
    from transformers import AutoConfig, AutoProcessor, LlavaNextForConditionalGeneration

    device, dtype = resolve_device(settings)
    source = settings.model_path
    if settings.is_demo:
        from .demo_model import ensure_demo_model

        progress.set("building demo model", str(settings.demo_model_dir))
        source = str(ensure_demo_model(settings.demo_model_dir))

    progress.set("reading config", source)
    try:
        config = AutoConfig.from_pretrained(source)
    except OSError:
        raise BootError(_not_found(source)) from None
    except ValueError as exc:
        raise BootError(f"MODEL_PATH={source!r} has a config transformers cannot read: {_first_line(exc)}") from None
    if config.model_type != ARCHITECTURE:
        raise BootError(f"MODEL_PATH={source!r} is a {config.model_type!r} checkpoint; this server runs LLaVA-NeXT "
                        f"({ARCHITECTURE}) checkpoints in the llava-hf format, e.g. llava-hf/llava-v1.6-vicuna-7b-hf")

    progress.set("loading processor", source)
    try:
        processor = AutoProcessor.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise BootError(f"cannot load the processor (tokenizer, image processor) of {source!r}: "
                        f"{_first_line(exc)}") from None
    if not getattr(processor, "chat_template", None):
        raise BootError(f"the processor of {source!r} has no chat template; a llava-hf checkpoint ships one")
    if speed_up(processor):
        log.info("image preprocessing: fused fast path (same pixel values as %s)", "LlavaNextImageProcessorPil")

    progress.set("loading weights", f"{source} as {str(dtype).replace('torch.', '')} on {device}"
                 + (" (random weights)" if settings.random_weights else ""))
    started = time.monotonic()
    try:
        if settings.random_weights:  # benchmarks: the architecture without 14 GB to read
            with torch.device(device):
                model = LlavaNextForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation="sdpa")
            model.generation_config.update(**{k: getattr(processor.tokenizer, k) for k in
                                              ("bos_token_id", "eos_token_id", "pad_token_id")})
        else:
            model = LlavaNextForConditionalGeneration.from_pretrained(
                source, dtype=dtype, attn_implementation="sdpa",
                device_map=str(device) if device.type == "cuda" else None)
    except torch.cuda.OutOfMemoryError:
        raise BootError(f"the GPU ran out of memory loading {source!r} in {dtype}; LLaVA-1.6-7B needs about 15 GB "
                        "plus KV cache") from None
    except OSError as exc:
        raise BootError(f"cannot load the weights of {source!r}: {_first_line(exc)}") from None
    model.eval()
    log.info("weights loaded in %.1fs", time.monotonic() - started)

    text = config.text_config
    return LoadedModel(model=model, processor=processor, name=settings.model_name, source=source, device=device,
                       dtype=dtype, context_length=int(text.max_position_embeddings),
                       image_token_id=int(getattr(config, "image_token_id", None) or config.image_token_index))


def _not_found(source: str) -> str:
    if os.path.isabs(source) or source.startswith("."):
        return (f"MODEL_PATH={source!r}: no checkpoint there "
                "(a llava-hf directory has config.json, weights and a processor)")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    where = "is not in the Hugging Face cache (HF_HOME) and HF_HUB_OFFLINE is set" if offline else \
        "could not be found locally or downloaded from the Hugging Face hub"
    return f"MODEL_PATH={source!r} {where}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
