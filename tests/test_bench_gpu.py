"""The GPU benchmark's own path, exercised on CPU at demo size: the card measured
first, checkpoint from the 7B config layout, RANDOM_WEIGHTS in the real model
process, TTFT, batch-1 decode, concurrency runs, both engines side by side beside
the ceiling and the target, gpu.md written as each figure lands and kept when the
run is stopped. (The real run needs a GPU host: bench/gpu_session.sh.)"""
import os
import re
import signal

import pytest
import torch

from tests.procs import Proc, poll, python

pytestmark = pytest.mark.slow


@pytest.mark.may_skip("on a GPU host the no-GPU message does not apply")
@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the no-GPU message does not apply")
def test_without_a_gpu_it_says_so_and_measures_nothing(tmp_path):
    proc = Proc(python("-m", "bench.gpu", "--output", str(tmp_path / "gpu.md")))
    with proc:
        assert proc.wait(timeout=120) == 0
    assert "no CUDA GPU here" in proc.output()
    assert not (tmp_path / "gpu.md").exists()


def row(text: str, label: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {label}"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_the_benchmark_path_runs_at_demo_size(tmp_path):
    report = tmp_path / "gpu.md"
    proc = Proc(python("-m", "bench.gpu", "--tiny", "--allow-cpu", "--tokens", "8", "--repeats", "1",
                       "--concurrency", "2", "8", "--output", str(report)))
    with proc:
        assert proc.wait(timeout=300) == 0, proc.output()[-3000:]
    text = report.read_text()
    assert "TINY smoke-test architecture" in text
    assert re.search(r"The card, measured first \(CPU\): device-to-device copy \d+ GB/s", text)
    # One server per engine, continuous first, each figure beside its ceiling and target.
    assert "| measurement | continuous | generate | ceiling | target | continuous vs ceiling | meets target |" in text
    label, continuous, generate, ceiling, target, fraction, verdict = row(text, "decode at batch 1")
    assert continuous.endswith("tokens/s") and generate.endswith("tokens/s") and ceiling.endswith("tokens/s")
    assert target.startswith(">= 0.80x") and fraction.endswith("of the ceiling") and verdict in ("pass", "**miss**")
    assert row(text, "time to first token")[4].startswith("<= 1.5x + 20 ms")
    assert row(text, "latency at concurrency 8")[4].startswith("p95 <= 1.25x")
    assert row(text, "aggregate at concurrency 8")[4].startswith(">= 0.80x")
    assert row(text, "process start to ready")[4] == "<= 45 s"
    assert row(text, "structured output")[1].endswith("x")
    assert row(text, "decode step as served")[1:3] == ["eager, graphs off, sdpa attention, uncompiled layers", "eager"]
    assert "not measured" not in text
    assert "random weights" in proc.output()  # the model process built it from the config, no weights read


def test_a_run_stopped_half_way_keeps_every_figure_it_got(tmp_path):
    """`timeout -s INT` (bench/gpu_session.sh) stops the benchmark during the
    continuous engine's runs: what was measured stays in gpu.md, the rest says
    'not measured', and the server is stopped."""
    report = tmp_path / "gpu.md"
    proc = Proc(python("-m", "bench.gpu", "--tiny", "--allow-cpu", "--tokens", "400", "--repeats", "1",
                       "--concurrency", "2", "--no-schema", "--output", str(report)))
    with proc:
        poll(lambda: report.exists() and row(report.read_text(), "time to first token")[1].endswith("ms"), 240,
             "the continuous engine's time to first token in gpu.md", 0.2, proc.running)
        proc.signal(signal.SIGINT)  # during its 400-token batch-1 runs
        assert proc.wait(timeout=60) == 130, proc.output()[-3000:]
    text = report.read_text()
    assert row(text, "process start to ready")[1].endswith("s)") and row(text, "time to first token")[1].endswith("ms")
    assert row(text, "decode at batch 1")[1:3] == ["not measured", "not measured"]
    assert "stopped after" in text and "SIGINT" in text and "Whole run" in text
    server = int(re.search(r"continuous: server pid (\d+)", proc.output()).group(1))
    assert not os.path.exists(f"/proc/{server}"), "the server outlived the benchmark"
