"""The device-host boundary of the continuous engine: every copy between host and
device memory, and every wait for the device, goes through one `Boundary`.

On CUDA a `non_blocking` copy is queued on the stream and the call returns at once:
- device -> host: the pinned buffer holds the copied values only once a marker (a
  CUDA event) recorded after the copy has completed; read earlier, it holds
  whatever it held before;
- host -> device: the copy reads its pinned source when the stream reaches it, so
  the host may write that source again only once a marker recorded after the copy
  has completed.
On the CPU every copy is done when the call returns, so neither mistake shows in a
CPU test; tests/async_device.py is a Boundary that behaves as CUDA does, on the CPU.
`HostRing` holds the pinned buffers and the markers that make their reuse safe.
"""
from __future__ import annotations

import time

import torch


class Marker:
    """A point in the device's work (CUDA: an event recorded on the stream)."""

    def __init__(self, event=None):
        self.event, self.at = event, time.monotonic()

    def seconds_since(self, earlier: "Marker") -> float:
        """Device time between two markers (CUDA events), or wall time on the CPU."""
        if self.event is not None and earlier.event is not None:
            return earlier.event.elapsed_time(self.event) / 1000.0
        return self.at - earlier.at


class CudaBoundary:
    def __init__(self, device):
        self.device = device

    def host_tensor(self, shape, dtype) -> torch.Tensor:
        return torch.zeros(shape, dtype=dtype, pin_memory=True)

    def mark(self, timing: bool = False) -> Marker:
        event = torch.cuda.Event(enable_timing=timing)
        event.record()
        return Marker(event)

    def wait(self, marker: Marker) -> None:
        marker.event.synchronize()

    def to_host(self, source: torch.Tensor, buffer: torch.Tensor) -> None:
        buffer.copy_(source, non_blocking=True)

    def to_device(self, dest: torch.Tensor, source: torch.Tensor) -> None:
        dest.copy_(source, non_blocking=True)

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)


class HostBoundary:
    """The CPU: every copy is complete when it returns."""

    def host_tensor(self, shape, dtype) -> torch.Tensor:
        return torch.zeros(shape, dtype=dtype)

    def mark(self, timing: bool = False) -> Marker:
        return Marker()

    def wait(self, marker: Marker) -> None:
        pass

    def to_host(self, source: torch.Tensor, buffer: torch.Tensor) -> None:
        buffer.copy_(source)

    def to_device(self, dest: torch.Tensor, source: torch.Tensor) -> None:
        dest.copy_(source)

    def synchronize(self) -> None:
        pass


def for_device(device) -> CudaBoundary | HostBoundary:
    return CudaBoundary(device) if device.type == "cuda" else HostBoundary()



class HostRing:
    """Pinned host buffers used in turn for copies in either direction. A buffer is
    handed out again only once the marker recorded after its last copy has completed,
    so no copy still queued on the device reads (or lands in) a buffer the host is
    writing (or reading)."""

    def __init__(self, boundary, count: int, shape, dtype):
        self.boundary = boundary
        self.buffers = [boundary.host_tensor(shape, dtype) for _ in range(count)]
        self._markers: list[Marker | None] = [None] * count
        self._next = 0

    def take(self) -> tuple[int, torch.Tensor]:
        index = self._next
        self._next = (index + 1) % len(self.buffers)
        if self._markers[index] is not None:
            self.boundary.wait(self._markers[index])
            self._markers[index] = None
        return index, self.buffers[index]

    def copied(self, index: int, marker: Marker) -> None:
        """The copy from or into buffer `index` was queued before `marker`."""
        self._markers[index] = marker
