"""CUDA's asynchrony at the device-host boundary, on the CPU: a test double for
llava_runtime.transfers' Boundary that does what a CUDA stream does, not what the
engine happens to need.

A CUDA stream runs copies and kernels in the order they were queued, later than
the host queued them, and the host learns that work is done only by waiting on
a marker (event) recorded after it, or by synchronizing. So here:
- a device -> host copy takes its values in stream order (the source as every
  earlier kernel left it, which on the CPU is the source now) but lands in the host
  buffer only when a marker recorded after it is waited on, or on synchronize.
  Until then the buffer holds POISON (token 0, what a freshly zeroed pinned buffer
  holds), so a read before the wait sees a wrong token;
- a host -> device copy reaches the device in stream order (kernels queued after it
  see it; on the CPU they run at once, so it is applied at once), but CUDA reads
  its host source only when the stream gets there: until a marker recorded after
  the copy is waited on, the host must not write that source. A write in that
  window is a race, recorded in `races` where it is seen (the next copy queued from
  the same buffer, or the wait that completes it); tests assert there is none.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from llava_runtime.transfers import Marker

POISON = 0


@dataclass
class _Copy:
    seq: int
    host: torch.Tensor        # the host buffer (destination of a read, source of a write)
    values: torch.Tensor      # to_host: what lands; to_device: the source as it was queued
    to_host: bool
    raced: bool = False


class _AsyncMarker(Marker):
    def __init__(self, seq: int):
        super().__init__()
        self.seq = seq


class AsyncBoundary:
    def __init__(self):
        self._seq = 0
        self._pending: list[_Copy] = []
        self.races: list[str] = []
        self.reads_landed = 0

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def host_tensor(self, shape, dtype) -> torch.Tensor:
        return torch.zeros(shape, dtype=dtype)

    def mark(self, timing: bool = False) -> Marker:
        return _AsyncMarker(self._next())

    def wait(self, marker: Marker) -> None:
        self._complete(marker.seq)

    def synchronize(self) -> None:
        self._complete(self._next())

    def to_host(self, source: torch.Tensor, buffer: torch.Tensor) -> None:
        values = source.detach().clone()  # stream order: every kernel queued before the copy has run
        buffer.fill_(POISON)
        self._pending.append(_Copy(self._next(), buffer, values, to_host=True))

    def to_device(self, dest: torch.Tensor, source: torch.Tensor) -> None:
        for copy in self._pending:
            if not copy.to_host and _same_memory(copy.host, source):
                self._check(copy, "queued again from a buffer")
        dest.copy_(source)
        self._pending.append(_Copy(self._next(), source, source.detach().clone(), to_host=False))

    def pending(self) -> int:
        return len(self._pending)

    def _complete(self, upto: int) -> None:
        done = [c for c in self._pending if c.seq < upto]
        self._pending = [c for c in self._pending if c.seq >= upto]
        for copy in done:
            if copy.to_host:
                copy.host.copy_(copy.values)
                self.reads_landed += 1
            else:
                self._check(copy, "consumed from a buffer")

    def _check(self, copy: _Copy, when: str) -> None:
        if not copy.raced and not torch.equal(copy.host, copy.values):
            copy.raced = True
            self.races.append(f"host -> device copy #{copy.seq} {when} the host rewrote before the device read it")


def _same_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.data_ptr() == b.data_ptr() and a.numel() == b.numel()
