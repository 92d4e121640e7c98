"""CUDA graphs of the continuous engine's decode step: one per step shape
(rows bucket, attention length, greedy or sampling), captured during start-up and
replayed: one launch per step instead of ~1,000 kernel launches.

Each shape stands alone: a capture that raises, or whose replay does not choose
the eager step's tokens, is logged with its shape and that shape runs uncaptured
(slower, never wrong) while every other keeps its graph
(llava_model_cuda_graph_capture_failed counts them; /health says `partial`).
All graphs share one memory pool, the largest shape's, captured first.
"""
from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)
OFF, CAPTURED, PARTIAL, FAILED = "off", "captured", "partial", "failed"


def describe(shape: tuple[int, int, bool]) -> str:
    rows, attend, sampled = shape
    return f"{rows} rows, {attend} positions, {'sampling' if sampled else 'greedy'}"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


class StepGraphs:
    def __init__(self):
        self.graphs: dict[tuple, object] = {}
        self.failed: dict[tuple, str] = {}   # shape -> why it runs uncaptured
        self.tried = False

    @property
    def state(self) -> str:
        if not self.tried:
            return OFF
        if not self.failed:
            return CAPTURED
        return PARTIAL if self.graphs else FAILED

    def get(self, shape):
        return self.graphs.get(shape)

    def capture(self, runner, shapes: list[tuple], on_progress=None, checked=lambda shape: True) -> None:
        """Capture `shapes` (largest first) with `runner.record`, checking the replay of
        each shape `checked` accepts against `runner`'s eager step."""
        self.tried, pool = True, None
        for done, shape in enumerate(shapes):
            try:
                runner.step(*shape)  # warm: lazy initialisation (cuBLAS, kernels) must not happen in capture
                graph = runner.record(shape, pool)
                pool = pool or graph.pool()
                self.graphs[shape] = graph
                if checked(shape):
                    runner.check_replay(shape, graph)
            except Exception as exc:  # a graph is an optimisation: never a reason not to serve
                self.graphs.pop(shape, None)
                self.failed[shape] = _reason(exc)
                log.error("CUDA graph of the decode step for %s failed; that shape runs uncaptured (slower): %s",
                          describe(shape), self.failed[shape], exc_info=not isinstance(exc, ReplayMismatch))
                runner.synchronize()
            if on_progress and (done + 1) % 8 == 0:
                on_progress(f"capturing CUDA graphs: {done + 1}/{len(shapes)}")
        runner.synchronize()
        log.info("captured %d of %d CUDA graphs of the decode step%s", len(self.graphs), len(shapes),
                 f"; uncaptured: {', '.join(describe(s) for s in self.failed)}" if self.failed else "")


class ReplayMismatch(RuntimeError):
    """A replayed graph chose other tokens than the eager step from the same state."""


def check_same(eager: torch.Tensor, replayed: torch.Tensor, shape) -> None:
    if not torch.equal(eager, replayed):
        raise ReplayMismatch(f"a replayed step chose other tokens than the eager step ({describe(shape)})")
