"""The continuous engine on the real demo model, in-process: its answers are the
generate engine's token for token, rows join and leave between steps, and
faults stay with the requests they touched. Each continuous engine here copies
to and from its device as asynchronously as CUDA does (tests/async_device.py)."""
import dataclasses
import json
import time

import jsonschema
import pytest
import torch

from llava_runtime import kv_slots
from llava_runtime.continuous_engine import ContinuousEngine
from llava_runtime.errors import ApiError
from llava_runtime.faults import Faults
from llava_runtime.grammar import Grammars
from llava_runtime.inputs import Limits, parse_chat, prepare
from llava_runtime.loader import BootError
from llava_runtime.metrics import ModelMetrics
from tests import images
from tests.async_device import AsyncBoundary
from tests.test_engine import SIZES, build, prepared_for, wait_idle
from tests.test_structured_output import SCHEMAS, submit, with_schema


@pytest.fixture()
def make_engine(loaded_demo, model_settings):
    engines, boundaries = [], []

    def make(kind="continuous", faults=None, pad_rows=False, **overrides):
        # On the CPU every continuous engine here copies to and from its "device" as
        # asynchronously as CUDA does; on CUDA (bench/gpu_session.sh) it meets the real thing.
        boundary = AsyncBoundary() if kind == "continuous" and loaded_demo.device.type == "cpu" else None
        boundaries.extend([boundary] if boundary else [])
        engine = build(kind, loaded_demo, model_settings, faults=faults, boundary=boundary, **overrides)
        if kind == "continuous":
            engine.runner.pad_rows = pad_rows  # the rows padding CUDA graphs use, here on the CPU
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.stop(grace_s=5)
    assert [race for boundary in boundaries for race in boundary.races] == []


@pytest.fixture()
def reference(make_engine):
    """`generate` alone: one request at a time, the answers to match."""
    engine = make_engine("generate", max_batch_size=1)

    def answer(items):
        return [engine.submit(p, params, f"ref{i}").result(timeout=120) for i, (p, params) in enumerate(items)]

    return answer


def same(got, expected):
    return [(c.text, c.completion_tokens, c.finish_reason) for c in got] == \
        [(c.text, c.completion_tokens, c.finish_reason) for c in expected]


def submit_all(engine, items, stream=False):
    return [engine.submit(p, params, f"c{i}", stream=stream) for i, (p, params) in enumerate(items)]


def test_one_request_is_answered_as_generate_answers_it(make_engine, reference, loaded_demo, model_settings):
    items = [prepared_for(loaded_demo, model_settings, (640, 480), max_tokens=40)]
    got = make_engine().submit(*items[0], "one").result(timeout=60)
    assert same([got], reference(items))


@pytest.mark.parametrize("pad_rows", [False, True], ids=["exact-rows", "padded-rows-as-cuda-graphs"])
def test_eight_at_once_with_mixed_sizes_and_max_tokens(make_engine, reference, loaded_demo, model_settings, pad_rows):
    items = [prepared_for(loaded_demo, model_settings, size, seed=i, max_tokens=(4, 40, 12, 64)[i % 4])
             for i, size in enumerate(SIZES)]
    engine = make_engine(max_batch_size=8, pad_rows=pad_rows)
    got = [job.result(timeout=120) for job in submit_all(engine, items)]
    assert same(got, reference(items))
    assert max(c.batch_size for c in got) >= 4  # rows really decoded together
    assert wait_idle(engine) == {"waiting": 0, "running": 0}


@pytest.mark.parametrize("pad_rows", [False, True], ids=["exact-rows", "padded-rows-as-cuda-graphs"])
def test_requests_joining_while_others_decode(make_engine, reference, loaded_demo, model_settings, pad_rows):
    """Joiners' prompts go in 256-token chunks between the running rows' steps;
    rows leave in the middle of the pack and the last row moves into their place."""
    items = [prepared_for(loaded_demo, model_settings, SIZES[i % len(SIZES)], seed=i, max_tokens=(48, 8, 30, 3)[i % 4])
             for i in range(12)]
    engine = make_engine(max_batch_size=5, prefill_chunk_tokens=256, pad_rows=pad_rows)
    jobs = []
    for i, (p, params) in enumerate(items):
        jobs.append(engine.submit(p, params, f"j{i}", stream=i % 3 == 0))
        time.sleep(0.03 * (i % 4))
    got = [job.result(timeout=120) for job in jobs]
    assert same(got, reference(items))
    assert max(c.batch_size for c in got) >= 3


def test_a_four_image_chat(make_engine, reference, loaded_demo, model_settings):
    content = [{"type": "image_url", "image_url": {"url": images.data_url(images.jpeg(*size, seed=i))}}
               for i, size in enumerate([(1000, 20), (20, 1000), (900, 40), (1000, 20)])]
    body = {"messages": [{"role": "user", "content": content + [{"type": "text", "text": "Compare these."}]}],
            "max_tokens": 24, "temperature": 0}
    request = parse_chat(body, Limits(model_settings))
    item = (prepare(request, loaded_demo.processor, loaded_demo.context_length, loaded_demo.image_token_id),
            request.params)
    assert item[0].pixel_values.shape[0] == 4
    assert same([make_engine().submit(*item, "chat").result(timeout=60)], reference([item]))


def test_a_short_request_finishes_before_the_long_one_it_arrived_behind(make_engine, loaded_demo, model_settings):
    engine = make_engine(max_batch_size=4)
    long_job = engine.submit(*prepared_for(loaded_demo, model_settings, (640, 480), max_tokens=256, min_tokens=256),
                             "long")
    while not long_job.tokens:
        time.sleep(0.005)
    short = engine.submit(*prepared_for(loaded_demo, model_settings, (500, 500), seed=2, max_tokens=16,
                                        min_tokens=16), "short").result(timeout=60)
    assert short.completion_tokens == 16
    assert not long_job.done, "the short request waited for the long one"
    assert long_job.result(timeout=120).completion_tokens == 256


def test_a_cancelled_row_frees_its_slot_within_a_step(make_engine, loaded_demo, model_settings):
    engine = make_engine(max_batch_size=2)
    job = engine.submit(*prepared_for(loaded_demo, model_settings, (640, 480), max_tokens=1000, min_tokens=1000), "x")
    while len(job.tokens) < 5:
        time.sleep(0.002)
    job.cancel()
    at_cancel = len(job.tokens)
    done = job.result(timeout=30)
    assert done.finish_reason == "cancelled"
    assert done.completion_tokens - at_cancel <= 2  # the step in flight, at most one more
    assert wait_idle(engine, timeout=1) == {"waiting": 0, "running": 0}


@pytest.mark.parametrize("kind", ["continuous", "generate"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_stop_string_ends_the_answer_before_it(make_engine, loaded_demo, model_settings, kind, stream):
    item = prepared_for(loaded_demo, model_settings, (640, 480), max_tokens=40)
    free = make_engine(kind).submit(*item, "free").result(timeout=60).text
    words = free.split()
    stop = words[len(words) // 2]
    expected = free[:free.find(stop)]
    engine = make_engine(kind)
    job = engine.submit(item[0], dataclasses.replace(item[1], stop=(stop, "never-in-it")), "stopped", stream=stream)
    deltas = job.deltas(timeout=60)
    pieces = []
    while True:
        try:
            pieces.append(next(deltas))
        except StopIteration as end:
            done = end.value
            break
    assert (done.text, done.finish_reason) == (expected, "stop")
    assert done.completion_tokens < 40
    if stream:
        assert "".join(pieces) == expected and all(stop not in p for p in pieces)


def test_a_seed_gives_the_same_answer_alone_in_a_batch_and_on_either_engine(make_engine, loaded_demo,
                                                                             model_settings):
    prep, params = prepared_for(loaded_demo, model_settings, (640, 480), max_tokens=24)
    seeded = (prep, dataclasses.replace(params, temperature=1.0, seed=42))
    other = (prep, dataclasses.replace(params, temperature=1.0))
    engine = make_engine(max_batch_size=4)
    alone = engine.submit(*seeded, "alone").result(timeout=60)
    crowd = submit_all(engine, [other, seeded, other, (prep, dataclasses.replace(params, temperature=1.0, seed=43))])
    crowd = [job.result(timeout=60) for job in crowd]
    on_generate = make_engine("generate").submit(*seeded, "generate").result(timeout=60)
    assert crowd[1].text == alone.text == on_generate.text
    assert crowd[3].text != alone.text  # another seed, another answer
    assert crowd[0].text != crowd[2].text  # no seed: random draws


def test_out_of_memory_in_a_prefill_fails_only_that_request(make_engine, reference, loaded_demo, model_settings):
    faults = Faults()
    engine = make_engine(faults=faults, max_batch_size=4)
    running = prepared_for(loaded_demo, model_settings, (640, 480), max_tokens=120, min_tokens=120)
    job = engine.submit(*running, "running")
    while len(job.tokens) < 3:
        time.sleep(0.002)
    faults.arm({"mode": "oom", "count": 1, "stage": "prefill"})
    with pytest.raises(ApiError) as failed:
        engine.submit(*prepared_for(loaded_demo, model_settings, (500, 500), max_tokens=8), "big").result(timeout=60)
    assert failed.value.code == "out_of_memory"
    assert same([job.result(timeout=60)], reference([running]))
    assert engine.metrics.oom._value.get() == 1
    assert engine.submit(*running, "after").result(timeout=60).completion_tokens == 120


def test_a_failing_decode_step_fails_its_rows_and_the_engine_serves_on(make_engine, loaded_demo, model_settings):
    faults = Faults()
    engine = make_engine(faults=faults, max_batch_size=4)
    item = prepared_for(loaded_demo, model_settings, (640, 480), max_tokens=200, min_tokens=200)
    jobs = submit_all(engine, [item, item])
    while len(jobs[1].tokens) < 2:
        time.sleep(0.002)
    faults.arm({"mode": "error", "count": 1, "stage": "decode"})
    for job in jobs:
        with pytest.raises(ApiError) as failed:
            job.result(timeout=60)
        assert failed.value.code == "internal_error"
    assert wait_idle(engine) == {"waiting": 0, "running": 0}
    assert engine.submit(*item, "after").result(timeout=60).completion_tokens == 200


def test_metrics_show_rows_steps_and_prefill(make_engine, loaded_demo, model_settings):
    engine = make_engine(max_batch_size=3)
    items = [prepared_for(loaded_demo, model_settings, size, seed=i, max_tokens=10) for i, size in enumerate(SIZES[:3])]
    for job in submit_all(engine, items):
        job.result(timeout=60)
    value = engine.metrics.registry.get_sample_value
    deadline = time.monotonic() + 5  # gauges follow at the end of the engine's turn
    while value("llava_model_rows_free") != 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert value("llava_model_kv_slots") == 3
    assert value("llava_model_rows_free") == 3 and value("llava_model_kv_slots_used") == 0
    assert value("llava_model_prefill_seconds_count") == 3
    assert value("llava_model_decode_step_seconds_count") >= 9
    assert value("llava_model_attention_read_ratio_count") >= 9
    assert value("llava_model_generation_tokens_total") == 30
    assert value("llava_model_cuda_graphs") == 0 and value("llava_model_cuda_graph_capture_failed") == 0


def test_no_room_for_one_row_is_a_boot_error(loaded_demo, model_settings, monkeypatch):
    monkeypatch.setattr(kv_slots, "cpu_budget", lambda fraction: 1000)  # the memory reading, at the edge
    with pytest.raises(BootError) as refused:
        build("continuous", loaded_demo, model_settings)
    assert "no room for one KV row of 4096 tokens" in str(refused.value)
    assert "KV_CACHE_MEMORY_FRACTION" in str(refused.value)


def test_rows_are_sized_from_memory_and_capped_by_max_batch_size():
    per_row = 2 * 2**30
    assert kv_slots.rows_that_fit(57 * 2**30, per_row, cap=64) == 28
    assert kv_slots.rows_that_fit(57 * 2**30, per_row, cap=16) == 16
    assert kv_slots.rows_that_fit(2**30, per_row, cap=16) == 0
    assert [kv_slots.attention_length(n, 4096) for n in (1, 256, 257, 3000, 4096)] == [256, 256, 512, 3072, 4096]


def test_a_request_that_could_never_fit_a_row_is_refused_up_front(model_settings):
    from llava_runtime.service import Service

    service = Service(dataclasses.replace(model_settings, max_model_len=2048))
    service.load()
    try:
        assert service.context_length == 2048
        body = {"image": images.b64(images.jpeg(640, 480)), "prompt": "What is in this picture?", "max_tokens": 8}
        from llava_runtime.inputs import parse_analyze
        with pytest.raises(ApiError) as refused:
            service.submit(parse_analyze(body, service.limits), "too-long")
        assert refused.value.code == "context_length_exceeded" and refused.value.status == 400
        assert "2048" in refused.value.message
    finally:
        service.engine.start().stop(grace_s=1)


# ------------------------------------------------------------------ CUDA-graph logic, on the CPU

class ReplayedStep:
    """Stands in for a captured CUDA graph: replaying runs the recorded step again, so
    the capture loop, the replay check and the dispatch by shape run without CUDA."""
    replayed: list = []

    def __init__(self, runner, shape, broken=False):
        self.runner, self.shape, self.broken = runner, shape, broken

    def replay(self):
        ReplayedStep.replayed.append(self.shape)
        if not self.broken:  # a broken graph "replays" without doing the work
            self.runner.step(*self.shape)

    def pool(self):
        return "shared pool"


def captured_engine(loaded, model_settings, make_graph, **overrides):
    """A continuous engine whose decode step is "captured" by `make_graph(runner, shape, pool)`."""
    engine = ContinuousEngine(loaded, dataclasses.replace(model_settings, **overrides), ModelMetrics())
    engine.runner.pad_rows = True
    engine.runner.record = lambda shape, pool: make_graph(engine.runner, shape, pool)
    engine.prepare(capture=True)
    return engine.start()


@pytest.mark.parametrize("fault", [None, "one capture raises", "one replay disagrees",
                                   "every checked replay disagrees"])
def test_cuda_graph_capture_and_its_fallbacks_per_shape(loaded_demo, model_settings, reference, fault, caplog):
    seen = []
    wrong = (3, 4096, False)

    def make_graph(runner, shape, pool):
        seen.append((shape, pool))
        if fault == "one capture raises" and len(seen) == 3:
            raise RuntimeError("operation not permitted when stream is capturing")
        broken = (fault == "every checked replay disagrees" and shape[1] == 4096) or \
            (fault == "one replay disagrees" and shape == wrong)
        return ReplayedStep(runner, shape, broken=broken)

    engine = captured_engine(loaded_demo, model_settings, make_graph, max_batch_size=3)
    try:
        runner = engine.runner
        shapes = runner.shapes()
        assert {rows for rows, _, _ in shapes} == {1, 2, 3} and len({a for _, a, _ in shapes}) == 16
        assert len(shapes) == 3 * 16 * 2  # greedy and sampling
        assert shapes[0] == (3, 4096, True)  # largest first: later captures reuse its pool
        assert seen[0][1] is None and all(pool == "shared pool" for _, pool in seen[1:])
        value = engine.metrics.registry.get_sample_value
        graphs = runner.graphs
        checked = {shape for shape in shapes if shape[1] == 4096}  # the full length: the others run its kernels
        failed = {None: {}, "one capture raises": {seen[2][0]}, "one replay disagrees": {wrong},
                  "every checked replay disagrees": checked}[fault]
        assert set(graphs.failed) == set(failed) and set(graphs.graphs) == set(shapes) - set(failed)
        assert value("llava_model_cuda_graph_capture_failed") == len(failed)
        assert value("llava_model_cuda_graphs") == len(shapes) - len(failed)
        assert engine.describe()["cudaGraphs"] == ("captured" if fault is None else "partial")
        assert engine.decode_mode == "cuda-graphs"
        if fault == "one replay disagrees":  # the log names the shape that runs uncaptured
            assert "for 3 rows, 4096 positions, greedy failed" in caplog.text
        assert int(runner.active.sum()) == 0  # capture and its check leave no row active
        items = [prepared_for(loaded_demo, model_settings, SIZES[i], seed=i, max_tokens=(20, 6, 33)[i % 3])
                 for i in range(4)]
        ReplayedStep.replayed.clear()
        got = [job.result(timeout=120) for job in submit_all(engine, items)]
        assert same(got, reference(items))  # through the "graphs", or uncaptured where one failed
        used = set(ReplayedStep.replayed)
        assert used and not used & set(failed)
        assert all(not sampled for _, _, sampled in used)  # all rows greedy: the graphs without the sort
        if fault is None:
            prep, params = items[0]
            engine.submit(prep, dataclasses.replace(params, temperature=0.7, seed=1), "sampled").result(timeout=60)
            assert any(sampled for _, _, sampled in ReplayedStep.replayed)
    finally:
        engine.stop(grace_s=5)


def test_a_request_cancelled_while_its_prompt_is_written_frees_the_row(make_engine, reference, loaded_demo,
                                                                        model_settings):
    """Its prompt goes in 16-token chunks beside a decoding row; cancelled half way, it
    answers `cancelled` with no token and the row is the next request's."""
    engine = make_engine(max_batch_size=2, prefill_chunk_tokens=16)
    running = prepared_for(loaded_demo, model_settings, (640, 480), max_tokens=400, min_tokens=400)
    job = engine.submit(*running, "running")
    while not job.tokens:
        time.sleep(0.002)
    late = engine.submit(*prepared_for(loaded_demo, model_settings, (500, 500), seed=3, max_tokens=8), "late")
    while engine.scheduler.prefilling is not late:
        time.sleep(0.001)
    late.cancel()
    done = late.result(timeout=30)
    assert (done.finish_reason, done.completion_tokens) == ("cancelled", 0)
    after = prepared_for(loaded_demo, model_settings, (336, 336), seed=4, max_tokens=8)
    assert same([engine.submit(*after, "after").result(timeout=60)], reference([after]))
    job.cancel()
    assert wait_idle(engine) == {"waiting": 0, "running": 0}


def test_a_one_token_answer_needs_no_decode_step(make_engine, reference, loaded_demo, model_settings):
    engine = make_engine(max_batch_size=2)
    items = [prepared_for(loaded_demo, model_settings, (640, 480), max_tokens=1) for _ in range(3)]
    got = [job.result(timeout=60) for job in submit_all(engine, items)]
    assert same(got, reference(items[:1]) * 3)
    assert engine.metrics.registry.get_sample_value("llava_model_decode_step_seconds_count") == 0


# ------------------------------------------------------------------ copies as asynchronous as CUDA's

def test_greedy_answers_match_generate_token_for_token(make_engine, loaded_demo, model_settings):
    """Defect 1 of issue 21: a prefill's token was read from the pinned buffer before
    its copy landed, so every answer's first token was whatever the buffer held."""
    items = [prepared_for(loaded_demo, model_settings, SIZES[i], seed=i, max_tokens=(1, 9, 17, 5)[i % 4])
             for i in range(6)]
    reference = make_engine("generate", max_batch_size=1)
    expected = [reference.submit(p, params, f"ref{i}").result(timeout=120) for i, (p, params) in enumerate(items)]
    engine = make_engine(max_batch_size=4, pad_rows=True)
    got = [job.result(timeout=120) for job in [engine.submit(p, params, f"a{i}") for i, (p, params) in
                                                  enumerate(items)]]
    assert [(c.text, c.completion_tokens) for c in got] == [(c.text, c.completion_tokens) for c in expected]
    assert engine.runner.io.reads_landed >= len(items)


def test_answers_with_a_schema_validate(make_engine, loaded_demo, model_settings):
    """A row with a schema reads its first token before its first decode step; a
    stale token there is one its grammar refuses, and the request fails."""
    grammars = Grammars(loaded_demo.tokenizer)
    chosen = ["flat", "nested", "anyOf", "enum list"]
    items = [with_schema(prepared_for(loaded_demo, model_settings, SIZES[i], seed=i, max_tokens=160), SCHEMAS[name])
             for i, name in enumerate(chosen)]
    items.append(prepared_for(loaded_demo, model_settings, (640, 480), seed=9, max_tokens=12))
    answers = submit(make_engine(max_batch_size=4, pad_rows=True), grammars, items)
    for name, answer in zip(chosen, answers):
        assert answer.finish_reason == "stop", (name, answer.text)
        jsonschema.validate(json.loads(answer.text), SCHEMAS[name])


# ------------------------------------------------------------------ the compiled step, on the CPU
# (inductor itself runs on the GPU: bench/gpu_session.sh; here dynamo traces the same
# functions and an AOT backend runs them, which is what decides how often it compiles)

def compiled_engine(loaded, model_settings, backend, **overrides):
    torch._dynamo.reset()  # each test counts its own compiles
    engine = ContinuousEngine(loaded, dataclasses.replace(model_settings, **overrides), ModelMetrics())
    engine.runner.pad_rows = True
    engine.runner.compile_backend = backend
    engine.prepare(compiled=True)
    return engine.start()


def test_the_compiled_step_compiles_once_for_every_layer_and_rows_bucket(loaded_demo, model_settings, reference):
    from torch._dynamo.testing import CompileCounterWithBackend

    counter = CompileCounterWithBackend("aot_eager")
    engine = compiled_engine(loaded_demo, model_settings, counter, max_batch_size=4)
    try:
        # project and finish, rows dynamic, and once more each for a single row (torch specialises 1)
        assert counter.frame_count == 4
        assert engine.describe()["compiled"] is True
        assert engine.metrics.registry.get_sample_value("llava_model_decode_compiled") == 1
        items = [prepared_for(loaded_demo, model_settings, SIZES[i], seed=i, max_tokens=(24, 6, 40, 14, 32)[i])
                 for i in range(5)]
        got = [job.result(timeout=120) for job in submit_all(engine, items)]
        assert same(got, reference(items))
        assert max(c.batch_size for c in got) >= 2 and counter.frame_count == 4  # nothing compiled while serving
    finally:
        engine.stop(grace_s=5)


def test_a_compile_that_fails_leaves_the_step_uncompiled(loaded_demo, model_settings, reference, caplog):
    def no_compiler(graph, inputs):
        raise RuntimeError("no working C compiler")

    engine = compiled_engine(loaded_demo, model_settings, no_compiler, max_batch_size=2)
    try:
        assert engine.describe()["compiled"] is False
        assert engine.metrics.registry.get_sample_value("llava_model_decode_compiled") == 0
        assert "compiling the decode step failed; running it uncompiled" in caplog.text
        assert "no working C compiler" in engine.runner.parts.error
        items = [prepared_for(loaded_demo, model_settings, (640, 480), max_tokens=10)]
        assert same([engine.submit(*items[0], "after").result(timeout=60)], reference(items))
    finally:
        engine.stop(grace_s=5)
