"""Decode modes: the compiled decode step (static KV cache + torch.compile) answers
exactly what the eager one answers, and a compile failure drops to eager under
DECODE_MODE=auto instead of failing requests.

On this CPU the engine tests compile with aot_eager (dynamo's graph capture without
code generation: seconds, not minutes); the server test builds the real inductor
graph, as the GPU path does (without CUDA graphs)."""
import concurrent.futures
import dataclasses

import pytest
import requests
import torch

from llava_runtime import decode
from llava_runtime.errors import ApiError
from llava_runtime.generate_engine import GenerateEngine
from llava_runtime.loader import Progress, load_model
from llava_runtime.metrics import ModelMetrics
from tests import images
from tests.procs import Proc, free_port, python
from tests.test_engine import SIZES, prepared_for, run_together


@pytest.fixture(scope="module")
def own_model(model_settings):
    """A model instance of this module's own: compiling leaves state on the model
    (its compiled call, the static cache length) that other tests must not inherit."""
    loaded = load_model(model_settings, Progress())
    yield loaded
    torch._dynamo.reset()


@pytest.fixture()
def make_engine(own_model, model_settings):
    engines = []

    def make(plan, **overrides):
        settings = dataclasses.replace(model_settings, **overrides)
        metrics = ModelMetrics()
        engine = GenerateEngine(own_model, settings, metrics, decode_plan=plan).start()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.stop(grace_s=5)


def settings_with(model_settings, **overrides):
    return dataclasses.replace(model_settings, **overrides)


def compiled_plan(model_settings, context_length, backend="aot_eager", mode="compiled"):
    return decode.plan(settings_with(model_settings, decode_mode=mode, compile_backend=backend),
                       torch.device("cpu"), context_length)


def failing_backend(graph_module, example_inputs):
    raise RuntimeError("no C compiler on this host (injected)")


def failing_plan(model_settings, context_length, fallback: bool) -> decode.DecodePlan:
    """A compiled plan whose backend fails, with or without auto's fallback."""
    plan = compiled_plan(model_settings, context_length)
    config = dataclasses.replace(plan.generate_kwargs["compile_config"], backend=failing_backend)
    config._compile_all_devices = True
    return dataclasses.replace(plan, fallback=fallback, generate_kwargs={**plan.generate_kwargs,
                                                                         "compile_config": config})


def gauge(engine) -> float:
    return engine.metrics.registry.get_sample_value("llava_model_decode_compiled")


# ------------------------------------------------------------------ the plan

def test_auto_compiles_on_cuda_only_and_falls_back_there(model_settings):
    assert decode.plan(model_settings, torch.device("cpu"), 4096).mode == decode.EAGER
    on_gpu = decode.plan(model_settings, torch.device("cuda"), 4096)
    assert (on_gpu.mode, on_gpu.fallback) == (decode.COMPILED, True)
    assert on_gpu.generate_kwargs["cache_implementation"] == "static"
    assert on_gpu.generate_kwargs["max_cache_len"] == 4096  # default: the context length
    config = on_gpu.generate_kwargs["compile_config"]
    assert (config.backend, config.mode, config.fullgraph) == ("inductor", "reduce-overhead", True)
    assert not config._compile_all_devices  # transformers compiles on CUDA by itself


def test_auto_stays_eager_on_a_gpu_too_small_for_the_static_cache(model_settings):
    from transformers import LlamaConfig

    from bench.gpu import TEXT_7B

    per_token = decode.kv_bytes_per_token(LlamaConfig(**TEXT_7B), torch.bfloat16)
    assert per_token == 512 * 1024  # 2 x 32 layers x 4096 x 2 bytes: docs/engine.md's 0.5 MiB
    gib = 2**30
    model_settings = settings_with(model_settings, max_batch_size=8)
    # 8 rows x 4,096 tokens = 16 GiB of cache: fine with 60 GiB free (an H100 after 14 GB of weights)...
    roomy = decode.plan(model_settings, torch.device("cuda"), 4096, per_token, free_bytes=60 * gib)
    assert roomy.mode == decode.COMPILED
    # ...not with 9 GiB free (a 24 GB card): eager, saying why and what to change.
    tight = decode.plan(model_settings, torch.device("cuda"), 4096, per_token, free_bytes=9 * gib)
    assert tight.mode == decode.EAGER
    assert "16.0 GiB" in tight.description and "MAX_BATCH_SIZE" in tight.description
    smaller = settings_with(model_settings, max_batch_size=2)
    assert decode.plan(smaller, torch.device("cuda"), 4096, per_token, free_bytes=9 * gib).mode == decode.COMPILED
    # Asked for explicitly, compiled is obeyed (an OOM then splits batches as usual).
    forced = settings_with(model_settings, decode_mode="compiled")
    assert decode.plan(forced, torch.device("cuda"), 4096, per_token, free_bytes=9 * gib).mode == decode.COMPILED


def test_explicit_modes_are_obeyed_everywhere(model_settings):
    eager = decode.plan(settings_with(model_settings, decode_mode="eager"), torch.device("cuda"), 4096)
    assert eager.mode == decode.EAGER and eager.generate_kwargs == {}
    forced = decode.plan(settings_with(model_settings, decode_mode="compiled", compile_backend="aot_eager",
                                       static_cache_tokens=1500), torch.device("cpu"), 4096)
    assert (forced.mode, forced.fallback) == (decode.COMPILED, False)  # asked for: a failure is an error
    assert forced.generate_kwargs["max_cache_len"] == 1500
    config = forced.generate_kwargs["compile_config"]
    assert config._compile_all_devices and config.mode is None  # mode is for inductor only
    assert "aot_eager" in forced.description and "1500" in forced.description


def test_settings_refuse_unknown_modes_and_backends():
    from llava_common.settings import SettingsError
    from llava_runtime.settings import ModelSettings

    with pytest.raises(SettingsError) as caught:
        ModelSettings.from_env({"DECODE_MODE": "fast", "COMPILE_BACKEND": "tensorrt"})
    assert "DECODE_MODE" in str(caught.value) and "COMPILE_BACKEND" in str(caught.value)


def test_compile_errors_are_told_apart_from_model_errors():
    compiled = torch.compile(lambda x: x * 2, backend=failing_backend, fullgraph=True)
    with pytest.raises(Exception) as caught:
        compiled(torch.ones(2))
    assert decode.is_compile_error(caught.value)
    try:
        try:
            compiled(torch.ones(3))
        except Exception as inner:
            raise RuntimeError("generation failed") from inner
    except RuntimeError as wrapped:
        assert decode.is_compile_error(wrapped)  # found through the cause chain
    assert not decode.is_compile_error(RuntimeError("CUDA error: device-side assert triggered"))
    assert not decode.is_compile_error(ValueError("bad input"))


# ------------------------------------------------------------------ the engine

def test_compiled_decode_answers_exactly_what_eager_does(make_engine, own_model, model_settings):
    items = [prepared_for(own_model, model_settings, size, seed=i, max_tokens=6 + i) for i,
             size in enumerate(SIZES[:5])]
    eager = make_engine(decode.eager(), max_batch_size=1)
    expected = [eager.submit(p, params, f"e{i}").result(timeout=120) for i, (p, params) in enumerate(items)]

    compiled = make_engine(compiled_plan(model_settings, own_model.context_length), max_batch_size=8,
                           max_batch_wait_ms=500)
    graphs_before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    alone = [compiled.submit(p, params, f"c{i}").result(timeout=300) for i, (p, params) in enumerate(items[:2])]
    batched = run_together(compiled, items)

    assert compiled.decode.compiled and gauge(compiled) == 1  # no silent fallback
    # The decode step really went through torch.compile: batch 1, then a batch-size-dynamic graph.
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs_before == 2
    assert [c.text for c in alone] == [c.text for c in expected[:2]]
    assert max(c.batch_size for c in batched) == len(items)
    assert [c.text for c in batched] == [c.text for c in expected]
    assert [c.completion_tokens for c in batched] == [6 + i for i in range(len(items))]  # per-row max_tokens held


def test_a_compile_failure_under_auto_drops_to_eager_and_answers(make_engine, own_model, model_settings):
    probe = prepared_for(own_model, model_settings, (640, 480), seed=7, max_tokens=10)
    expected = make_engine(decode.eager()).submit(*probe, "eager").result(timeout=120)

    engine = make_engine(failing_plan(model_settings, own_model.context_length, fallback=True), max_batch_size=4,
                         max_batch_wait_ms=500)
    assert gauge(engine) == 1
    with engine.preparing():
        quiet = engine.submit(*probe, "quiet")
        streamed = engine.submit(*probe, "streamed", stream=True)
    # The plain request ran again, eagerly, and nobody can tell.
    assert quiet.result(timeout=120).text == expected.text
    # The streamed one had already sent its first words: it cannot be re-run unseen.
    stream = streamed.deltas(timeout=120)
    assert next(stream)
    with pytest.raises(ApiError) as failed:
        list(stream)
    assert failed.value.code == "internal_error"
    assert engine.decode.mode == decode.EAGER and gauge(engine) == 0
    # ...and stays eager: later requests are served as usual.
    assert engine.submit(*probe, "after").result(timeout=120).text == expected.text


def test_an_explicit_compiled_mode_does_not_fall_back(make_engine, own_model, model_settings):
    engine = make_engine(failing_plan(model_settings, own_model.context_length, fallback=False))
    job = engine.submit(*prepared_for(own_model, model_settings, (640, 480), max_tokens=6), "strict")
    with pytest.raises(ApiError) as failed:
        job.result(timeout=120)
    assert failed.value.code == "internal_error"
    assert engine.decode.compiled and gauge(engine) == 1


# ------------------------------------------------------------------ the server

def test_the_server_warms_up_the_inductor_graph_and_serves_compiled(demo_model_dir, make_engine, own_model,
                                                                      model_settings):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"MODEL_PATH": "demo", "DEMO_MODEL_DIR": str(demo_model_dir), "MODEL_PORT": str(port),
           "ENGINE": "generate", "DECODE_MODE": "compiled", "COMPILE_MODE": "default", "WARMUP_REQUESTS": "3",
           "WARMUP_TOKENS": "4",
           "MAX_BATCH_WAIT_MS": "300"}
    bodies = [{"image": images.b64(images.jpeg(*size, seed=i)), "prompt": "What is in this picture?",
               "max_tokens": 8, "temperature": 0} for i, size in enumerate(SIZES[:3])]
    eager = make_engine(decode.eager(), max_batch_size=1)
    expected = [eager.submit(*prepared_for(own_model, model_settings, size, seed=i, max_tokens=8), f"e{i}")
                .result(timeout=120).text for i, size in enumerate(SIZES[:3])]
    with Proc(python("llava_server.py"), env=env) as server:
        server.wait_for(url + "/health", 200, timeout=420)  # inductor builds 2 graphs on 2 cores
        assert requests.get(url + "/health", timeout=5).json()["decode"] == "compiled"
        with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(pool.map(lambda b: requests.post(url + "/v1/analyze", json=b, timeout=300), bodies))
        assert [a.status_code for a in answers] == [200] * len(bodies)
        assert [a.json()["result"] for a in answers] == expected
        metrics = requests.get(url + "/metrics", timeout=5).text
        assert "llava_model_decode_compiled 1.0" in metrics
    assert "decode: compiled (static KV cache" in server.output()


def test_an_explicit_compiled_mode_without_a_c_compiler_exits_3_naming_the_cause(demo_model_dir, tmp_path):
    """A real compile failure: inductor finds no C++ compiler (a fresh kernel cache,
    so nothing compiled earlier is reused)."""
    from llava_common import exit_codes

    env = {"MODEL_PATH": "demo", "DEMO_MODEL_DIR": str(demo_model_dir), "MODEL_PORT": str(free_port()),
           "ENGINE": "generate", "DECODE_MODE": "compiled", "COMPILE_MODE": "default", "WARMUP_REQUESTS": "1",
           "CXX": str(tmp_path / "no-such-c++"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    with Proc(python("llava_server.py"), env=env) as server:
        assert server.wait(timeout=240) == exit_codes.BOOT_ERROR
    output = server.output()
    assert "No working C++ compiler" in output
    assert "cannot start: warmup failed: the compiled decode step failed" in output
