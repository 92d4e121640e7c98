"""The GPU benchmark's own path, exercised on CPU at demo size: checkpoint from the
7B config layout, RANDOM_WEIGHTS in the real model process, TTFT, batch-1 decode,
concurrency runs, both engines side by side beside the ceiling, the report. (The
real run needs a GPU host.)"""

import pytest
import torch

from tests.procs import Proc, python

pytestmark = pytest.mark.slow


@pytest.mark.may_skip("on a GPU host the no-GPU message does not apply")
@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the no-GPU message does not apply")
def test_without_a_gpu_it_says_so_and_measures_nothing(tmp_path):
    proc = Proc(python("-m", "bench.gpu", "--output", str(tmp_path / "gpu.md")))
    with proc:
        assert proc.wait(timeout=120) == 0
    assert "no CUDA GPU here" in proc.output()
    assert not (tmp_path / "gpu.md").exists()


def test_the_benchmark_path_runs_at_demo_size(tmp_path):
    report = tmp_path / "gpu.md"
    proc = Proc(python("-m", "bench.gpu", "--tiny", "--allow-cpu", "--tokens", "8", "--repeats", "1",
                       "--concurrency", "2", "--output", str(report)))
    with proc:
        assert proc.wait(timeout=300) == 0, proc.output()[-3000:]
    text = report.read_text()
    assert "TINY smoke-test architecture" in text
    for row in ("process start to ready", "time to first token", "decode at batch 1", "aggregate at concurrency 2",
                "GPU memory", "decode step as served"):
        assert row in text, row
    # One server per engine, side by side, each figure beside the ceiling and the target.
    assert "| measurement | generate | continuous | ceiling | target (continuous) |" in text
    decode_row = next(line for line in text.splitlines() if line.startswith("| decode at batch 1"))
    assert decode_row.count("tokens/s") == 4 and ">= 170 tokens/s" in decode_row  # 2 engines, ceiling, target
    assert "continuous / generate: batch-1 decode" in text
    assert "generate: batch-1 decode is" in text and "continuous: batch-1 decode is" in text
    assert "random weights" in proc.output()  # the model process built it from the config, no weights read
