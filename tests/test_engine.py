"""Both engines on the real demo model, in-process (no HTTP): what a request sees
must not depend on ENGINE. Engine-specific behaviour: test_continuous_engine.py and
the generate engine's batch window and OOM splitting at the end of this file."""
import dataclasses
import threading
import time

import pytest

from llava_runtime.continuous_engine import ContinuousEngine
from llava_runtime.errors import ApiError
from llava_runtime.faults import Faults
from llava_runtime.generate_engine import GenerateEngine
from llava_runtime.inputs import Limits, parse_analyze, prepare
from llava_runtime.metrics import ModelMetrics
from tests import images

SIZES = [(640, 480), (300, 900), (1, 1), (2000, 600), (500, 500), (336, 336), (900, 300), (800, 800)]
ENGINES = {"continuous": ContinuousEngine, "generate": GenerateEngine}


def build(kind, loaded, model_settings, faults=None, eos_ids=None, boundary=None, **overrides):
    """An engine, prepared and started; `boundary` replaces the continuous engine's
    device-host boundary (tests/async_device.py: copies as asynchronous as CUDA's)."""
    settings = dataclasses.replace(model_settings, **overrides)
    engine = ENGINES[kind](loaded, settings, ModelMetrics(), faults=faults, eos_ids=eos_ids)
    if boundary is not None:
        engine.runner.io = boundary
    engine.prepare()
    return engine.start()


@pytest.fixture()
def make_engine(loaded_demo, model_settings):
    engines = []

    def make(kind="generate", faults=None, eos_ids=None, **overrides):
        engine = build(kind, loaded_demo, model_settings, faults=faults, eos_ids=eos_ids, **overrides)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.stop(grace_s=5)


def prepared_for(loaded, model_settings, size, seed=0, prompt="What is in this picture?", **params):
    body = {"image": images.b64(images.jpeg(*size, seed=seed)), "prompt": prompt, "temperature": 0, **params}
    request = parse_analyze(body, Limits(model_settings))
    return prepare(request, loaded.processor, loaded.context_length, loaded.image_token_id), request.params


def run_together(engine, items):
    """Submit all at once (so they batch) and wait for every result."""
    with engine.preparing():  # as HTTP threads do: a generate batch waits for requests still being prepared
        jobs = [engine.submit(prep, params, f"r{i}") for i, (prep, params) in enumerate(items)]
    return [job.result(timeout=120) for job in jobs]


def wait_idle(engine, timeout=5.0):
    """The engine thread books a finished row just after answering it."""
    deadline = time.monotonic() + timeout
    while engine.load != {"waiting": 0, "running": 0} and time.monotonic() < deadline:
        time.sleep(0.01)
    return engine.load


both = pytest.mark.parametrize("kind", list(ENGINES))


@both
def test_greedy_answers_are_identical_alone_and_together(kind, make_engine, loaded_demo, model_settings):
    items = [prepared_for(loaded_demo, model_settings, size, seed=i, max_tokens=12 + i)
             for i, size in enumerate(SIZES)]
    alone_engine = make_engine(kind, max_batch_size=1)
    alone = [alone_engine.submit(p, params, f"a{i}").result(timeout=120) for i, (p, params) in enumerate(items)]
    batched = run_together(make_engine(kind, max_batch_size=8, max_batch_wait_ms=500), items)

    assert [c.batch_size for c in alone] == [1] * len(items)
    assert max(c.batch_size for c in batched) >= 3  # they really ran together
    assert [c.text for c in batched] == [c.text for c in alone]
    # each row kept its own max_tokens
    assert [c.completion_tokens for c in batched] == [12 + i for i in range(len(items))]
    assert all(c.finish_reason == "length" for c in batched)


@both
def test_sampled_rows_do_not_change_greedy_rows_beside_them(kind, make_engine, loaded_demo, model_settings):
    greedy = prepared_for(loaded_demo, model_settings, (640, 480), seed=1, max_tokens=16)
    alone = make_engine(kind, max_batch_size=1).submit(*greedy, "alone").result(timeout=60)
    hot = prepared_for(loaded_demo, model_settings, (640, 480), seed=1, max_tokens=16)
    hot = (hot[0], dataclasses.replace(hot[1], temperature=2.0, top_p=0.9))
    results = run_together(make_engine(kind, max_batch_size=4, max_batch_wait_ms=500), [hot, greedy, hot])
    assert max(r.batch_size for r in results) >= 2
    assert results[1].text == alone.text
    assert results[0].text != alone.text or results[2].text != alone.text  # temperature 2 really sampled


@both
def test_eos_ends_a_row_early_and_min_tokens_holds_it_back(kind, make_engine, loaded_demo, model_settings):
    probe = prepared_for(loaded_demo, model_settings, (640, 480), max_tokens=8)
    first_tokens = make_engine(kind).submit(*probe, "probe").result(timeout=60)
    token_ids = loaded_demo.tokenizer(first_tokens.text, add_special_tokens=False)["input_ids"]
    # An engine that takes the model's 3rd greedy token for end-of-sequence.
    engine = make_engine(kind, eos_ids=[token_ids[2]], max_batch_size=4, max_batch_wait_ms=300)
    stops, held = run_together(engine, [probe, (probe[0], dataclasses.replace(probe[1], min_tokens=6))])
    assert (stops.finish_reason, stops.completion_tokens) == ("stop", 2)
    assert held.completion_tokens >= 6


@both
def test_a_cancelled_request_frees_its_row(kind, make_engine, loaded_demo, model_settings):
    faults = Faults()
    faults.arm({"mode": "slow", "seconds": 0.002, "count": -1})  # every step: the long one outlasts the cancel
    engine = make_engine(kind, faults=faults, max_batch_size=2, max_batch_wait_ms=300)
    long_one = prepared_for(loaded_demo, model_settings, (640, 480), max_tokens=1000, min_tokens=1000)
    short_one = prepared_for(loaded_demo, model_settings, (640, 480), max_tokens=8)
    job = engine.submit(*long_one, "long")
    other = engine.submit(*short_one, "short")
    threading.Timer(0.3, job.cancel).start()
    done = job.result(timeout=60)
    assert done.finish_reason == "cancelled"
    assert done.completion_tokens < 1000
    assert other.result(timeout=60).completion_tokens == 8
    assert wait_idle(engine) == {"waiting": 0, "running": 0}


@both
def test_streamed_deltas_add_up_to_the_final_text(kind, make_engine, loaded_demo, model_settings):
    engine = make_engine(kind)
    prep, params = prepared_for(loaded_demo, model_settings, (500, 500), max_tokens=40)
    job = engine.submit(prep, params, "s", stream=True)
    stream = job.deltas(timeout=60)
    pieces = []
    while True:
        try:
            pieces.append(next(stream))
        except StopIteration as stop:
            done = stop.value
            break
    assert len(pieces) > 5  # token by token, not one blob
    assert "".join(pieces) == done.text


@both
def test_a_full_queue_refuses_with_queue_full(kind, make_engine, loaded_demo, model_settings):
    faults = Faults()
    faults.arm({"mode": "slow", "seconds": 1.0, "count": 1})
    engine = make_engine(kind, faults=faults, max_batch_size=1, max_queue=2, max_batch_wait_ms=0)
    item = prepared_for(loaded_demo, model_settings, (64, 64), max_tokens=2)
    running = engine.submit(*item, "running")
    time.sleep(0.2)  # the engine has taken it and sleeps in the injected fault
    queued = [engine.submit(*item, f"q{i}") for i in range(2)]
    with pytest.raises(ApiError) as refused:
        engine.submit(*item, "one-too-many")
    assert refused.value.code == "queue_full" and refused.value.status == 429 and refused.value.retry_after
    assert all(j.result(timeout=60).completion_tokens == 2 for j in [running, *queued])


@both
def test_out_of_memory_on_a_single_request_fails_it_and_the_next_is_served(kind, make_engine, loaded_demo,
                                                                            model_settings):
    faults = Faults()
    faults.arm({"mode": "oom", "count": 1})
    engine = make_engine(kind, faults=faults)
    item = prepared_for(loaded_demo, model_settings, (640, 480), max_tokens=4)
    with pytest.raises(ApiError) as failed:
        engine.submit(*item, "oom").result(timeout=60)
    assert failed.value.code == "out_of_memory" and failed.value.status == 503
    assert engine.submit(*item, "next").result(timeout=60).completion_tokens == 4
    assert engine.metrics.oom._value.get() == 1


@both
def test_stop_drains_queued_work_then_refuses(kind, make_engine, loaded_demo, model_settings):
    engine = make_engine(kind, max_batch_size=1)
    item = prepared_for(loaded_demo, model_settings, (640, 480), max_tokens=4)
    jobs = [engine.submit(*item, f"d{i}") for i in range(3)]
    engine.stop(grace_s=30)
    assert all(j.result(timeout=1).completion_tokens == 4 for j in jobs)
    with pytest.raises(ApiError) as refused:
        engine.submit(*item, "late")
    assert refused.value.code == "shutting_down"


@both
def test_a_stop_that_outlasts_its_grace_fails_what_is_left(kind, make_engine, loaded_demo, model_settings):
    faults = Faults()
    faults.arm({"mode": "slow", "seconds": 0.005, "count": -1})  # every step: 1000 tokens outlast the grace period
    engine = make_engine(kind, faults=faults, max_batch_size=1)
    item = prepared_for(loaded_demo, model_settings, (640, 480), max_tokens=1000, min_tokens=1000)  # no early EOS
    jobs = [engine.submit(*item, f"g{i}") for i in range(2)]
    time.sleep(0.2)
    engine.stop(grace_s=0.3)
    for job in jobs:
        with pytest.raises(ApiError) as failed:
            job.result(timeout=10)
        assert failed.value.code == "shutting_down"


# ------------------------------------------------------------------ generate engine only

def test_out_of_memory_splits_a_generate_batch_and_everyone_is_answered(make_engine, loaded_demo, model_settings):
    faults = Faults()
    faults.arm({"mode": "oom", "count": -1, "min_batch": 3})  # any batch of 3+ runs out of memory
    engine = make_engine("generate", faults=faults, max_batch_size=8, max_batch_wait_ms=500)
    items = [prepared_for(loaded_demo, model_settings, size, seed=i, max_tokens=6) for i, size in enumerate(SIZES[:6])]
    results = run_together(engine, items)
    assert [r.completion_tokens for r in results] == [6] * 6
    assert max(r.batch_size for r in results) <= 6
    assert engine.metrics.oom._value.get() >= 1


def test_requests_queued_behind_a_batch_still_wait_for_company(make_engine, loaded_demo, model_settings):
    faults = Faults()
    faults.arm({"mode": "slow", "seconds": 0.8, "count": 1})  # the first batch outlasts the batch window
    engine = make_engine("generate", faults=faults, max_batch_size=2, max_batch_wait_ms=400)
    item = prepared_for(loaded_demo, model_settings, (64, 64), max_tokens=2)
    first = [engine.submit(*item, f"first{i}") for i in range(2)]  # a full batch: starts at once
    time.sleep(0.1)
    queued = engine.submit(*item, "queued")  # arrives while the first batch runs
    with engine.preparing():  # a request still being prepared when the first batch ends
        first[0].result(timeout=60)
        time.sleep(0.1)
        latecomer = engine.submit(*item, "latecomer")
    assert queued.result(timeout=60).batch_size == 2
    assert latecomer.result(timeout=60).batch_size == 2


def test_a_lone_request_does_not_wait_out_the_batch_window(make_engine, loaded_demo, model_settings):
    engine = make_engine("generate", max_batch_size=8, max_batch_wait_ms=3000)
    done = engine.submit(*prepared_for(loaded_demo, model_settings, (64, 64), max_tokens=2), "alone").result(timeout=60)
    assert done.batch_size == 1 and done.queue_s < 1.0  # nobody is being prepared: no reason to wait 3 s


@both
def test_a_drained_stop_leaves_no_timer_behind(kind, loaded_demo, model_settings):
    """A grace timer still sleeping when the interpreter exits once aborted pytest (exit 134)."""
    engine = build(kind, loaded_demo, model_settings)
    item = prepared_for(loaded_demo, model_settings, (64, 64), max_tokens=2)
    engine.submit(*item, "last").result(timeout=60)
    engine.stop(grace_s=60)
    deadline = time.monotonic() + 2
    while engine._grace.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not engine._grace.is_alive()
