"""The card's own ceiling, measured: device-to-device copy bandwidth and bf16 matrix
throughput (fp32 on the CPU). bench.gpu runs this in a child process before any
server starts, so the benchmark's own process holds no CUDA context, and computes
every ceiling it reports from these two numbers.

    python -m bench.card            # prints one JSON line
"""
from __future__ import annotations

import functools
import json
import sys
import time

import torch


def _timed(run, device, repeats: int) -> float:
    """Seconds per call of `run`, after one warm call (CUDA events on a GPU)."""
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            run()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0 / repeats
    started = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - started) / repeats


def measure(device) -> dict:
    cuda = device.type == "cuda"
    # 2 GiB each way on a GPU (far past its caches: HBM, as a decode step reads the
    # weights); 64 MiB on the CPU, where this is only a smoke test of the path.
    copy_bytes = (2 << 30) if cuda else (64 << 20)
    source = torch.empty(copy_bytes, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    copy_s = _timed(functools.partial(target.copy_, source), device, 20 if cuda else 3)
    del source, target  # before the matrices: both fit on a small card
    size, dtype = (8192, torch.bfloat16) if cuda else (512, torch.float32)
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    matmul_s = _timed(lambda: a @ b, device, 20 if cuda else 3)
    return {"name": torch.cuda.get_device_name(device) if cuda else "CPU",
            "copy_bytes_per_s": 2 * copy_bytes / copy_s,   # read + write, as a copy moves them
            "matmul_flops": 2 * size ** 3 / matmul_s, "matmul_dtype": str(dtype).replace("torch.", "")}


def main() -> int:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(json.dumps(measure(device)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
