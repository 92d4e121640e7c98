"""The Triton decode-attention kernel (llava_runtime/decode_attention.py) against
SDPA on random data, run by Triton's interpreter on the CPU (TRITON_INTERPRET=1):
ragged lengths (0 = a padding row, 1, a full slot), 1 to 32 rows, bf16 and fp32,
head dims 64 and 128, and query heads sharing KV heads (GQA). Triton reads
TRITON_INTERPRET when it is first imported, so each case runs in a child process."""
import subprocess

import pytest
import torch
import torch.nn.functional as F

from tests.procs import ROOT, child_env, python


def reference(q, keys, values, lengths, scale):
    """SDPA per row over its first `length` positions (a row of length 0: zeros)."""
    rows, heads, dim = q.shape
    out = torch.zeros(rows, heads, dim, dtype=torch.float32)
    for row, length in enumerate(lengths.tolist()):
        if length:
            out[row] = F.scaled_dot_product_attention(
                q[row:row + 1, :, None].float(), keys[row:row + 1, :, :length].float(),
                values[row:row + 1, :, :length].float(), scale=scale,
                enable_gqa=keys.shape[1] != heads)[0, :, 0]
    return out


CASES = {  # rows, heads, kv heads, head dim, dtype, slot positions
    "32 ragged rows, fp32, dim 64": (32, 2, 2, 64, torch.float32, 300),
    "one full row, bf16, dim 128": (1, 4, 4, 128, torch.bfloat16, 300),
    "5 rows, bf16, GQA 8 over 2": (5, 8, 2, 128, torch.bfloat16, 520),
    "3 rows, fp32, dim 128, GQA 4 over 1": (3, 4, 1, 128, torch.float32, 70),
}


def compare(case: str) -> None:
    """Run in the child: the kernel against SDPA for CASES[case]."""
    from llava_runtime import decode_attention

    rows, heads, kv_heads, dim, dtype, positions = CASES[case]
    generator = torch.Generator().manual_seed(rows * 1000 + dim)
    q = torch.randn(rows, heads, dim, generator=generator).to(dtype)
    # More slots than rows and a scratch position past the last one, as in the engine's cache.
    keys = torch.randn(rows + 2, kv_heads, positions + 1, dim, generator=generator).to(dtype)
    values = torch.randn(rows + 2, kv_heads, positions + 1, dim, generator=generator).to(dtype)
    lengths = torch.randint(1, positions + 1, (rows,), generator=generator)
    lengths[0] = positions           # a full slot
    if rows > 1:
        lengths[1] = 1               # a single position
    if rows > 2:
        lengths[2] = 0               # a padding row: reads nothing, outputs zeros
    scale = dim ** -0.5
    got = decode_attention.attend(q, keys, values, lengths, scale)
    assert got.dtype == dtype and got.shape == q.shape
    tolerance = 2e-2 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(got.float(), reference(q, keys, values, lengths, scale), atol=tolerance,
                               rtol=tolerance)
    if rows > 2:
        assert not got[2].any()
    print(f"{case}: matches SDPA")


@pytest.mark.parametrize("case", CASES)
def test_the_kernel_matches_sdpa_under_the_interpreter(case):
    done = subprocess.run(python("-c", f"from tests.test_decode_attention import compare; compare({case!r})"),
                          cwd=ROOT, env=child_env({"TRITON_INTERPRET": "1"}), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "matches SDPA" in done.stdout, done.stdout[-3000:] + done.stderr[-5000:]


def engine_matches_generate(demo_model_dir: str) -> None:
    """Run in the child: the continuous engine with its decode attention on the kernel
    answers two requests decoding together as generate does, token for token."""
    import dataclasses

    from llava_runtime import step_kernels
    from llava_runtime.loader import Progress, load_model
    from llava_runtime.settings import ModelSettings
    from tests.test_engine import build, prepared_for

    settings = ModelSettings.from_env({"MODEL_PATH": "demo", "DEMO_MODEL_DIR": demo_model_dir,
                                       "MAX_MODEL_LEN": "2048"})  # fewer positions: the interpreter is slow
    loaded = load_model(settings, Progress())
    items = [prepared_for(loaded, settings, size, seed=i, max_tokens=n)
             for i, (size, n) in enumerate([((336, 336), 5), ((300, 200), 3)])]
    reference = build("generate", loaded, settings, max_batch_size=1)
    expected = [reference.submit(p, params, f"r{i}").result(timeout=120) for i, (p, params) in enumerate(items)]
    engine = build("continuous", loaded, dataclasses.replace(settings, max_batch_size=2, prefill_chunk_tokens=4096))
    engine.runner.attention = step_kernels.TRITON  # what prepare chooses on CUDA
    got = [job.result(timeout=300) for job in [engine.submit(p, params, f"c{i}") for i, (p, params) in
                                                enumerate(items)]]
    for engine_ in (reference, engine):
        engine_.stop(grace_s=5)
    assert [(c.text, c.completion_tokens) for c in got] == [(c.text, c.completion_tokens) for c in expected]
    assert max(c.batch_size for c in got) == 2
    print("the engine with the kernel matches generate")


def test_the_engine_with_the_kernel_answers_as_generate(demo_model_dir):
    code = f"from tests.test_decode_attention import engine_matches_generate as run; run({str(demo_model_dir)!r})"
    done = subprocess.run(python("-c", code), cwd=ROOT, env=child_env({"TRITON_INTERPRET": "1"}),
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 0 and "matches generate" in done.stdout, done.stdout[-3000:] + done.stderr[-5000:]
