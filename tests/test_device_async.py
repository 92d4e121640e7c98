"""The double of a device whose copies are asynchronous, as CUDA's are
(tests/async_device.py): it behaves as CUDA does, and the runner's host buffers are
safe on it. Every continuous engine of test_continuous_engine.py runs on it, so a
token read before its copy landed, or a host buffer rewritten before the device
read it, fails on the CPU rather than on a GPU."""
import dataclasses

import torch

from llava_runtime.continuous_engine import ContinuousEngine
from llava_runtime.grammar import Grammars
from llava_runtime.metrics import ModelMetrics
from tests.async_device import POISON, AsyncBoundary
from tests.test_engine import prepared_for
from tests.test_structured_output import SCHEMAS, with_schema

# ------------------------------------------------------------------ the double itself behaves as CUDA does

def test_a_read_lands_only_when_a_marker_after_it_is_waited_on():
    io = AsyncBoundary()
    device, host = torch.tensor([5, 6, 7]), torch.full((3,), 9)
    before = io.mark()
    io.to_host(device, host)
    device.add_(100)                     # a kernel queued after the copy: the copy does not see it
    assert host.tolist() == [POISON] * 3
    io.wait(before)                      # a marker from before the copy says nothing about it
    assert host.tolist() == [POISON] * 3
    io.wait(io.mark())
    assert host.tolist() == [5, 6, 7]
    io.to_host(device, host)
    io.synchronize()
    assert host.tolist() == [105, 106, 107]


def test_a_host_source_rewritten_before_the_device_read_it_is_a_race():
    io = AsyncBoundary()
    source, device = torch.tensor([1, 2]), torch.zeros(2, dtype=torch.int64)
    io.to_device(device, source)
    assert device.tolist() == [1, 2]     # kernels queued after the copy see it
    io.wait(io.mark())
    source.fill_(3)                      # after the wait: the device has read it
    io.to_device(device, source)
    assert io.races == []
    source.fill_(4)                      # before any wait: the queued copy may not have read it yet
    io.to_device(device, source)
    assert len(io.races) == 1
    source.fill_(4)
    io.synchronize()
    assert len(io.races) == 1            # rewriting the same values is no race


# ------------------------------------------------------------------ the runner on it

def test_a_rows_mask_can_be_set_again_before_the_device_read_the_last_one(loaded_demo, model_settings):
    """Defect 2 of issue 21: a mask's pinned host buffer was refilled while the copy
    queued from it might not have run yet (a prefill sets a row's mask twice)."""
    grammars = Grammars(loaded_demo.tokenizer)
    output = with_schema(prepared_for(loaded_demo, model_settings, (336, 336)), SCHEMAS["flat"])[1].response_format
    constraint = grammars.constraint(output)
    engine = ContinuousEngine(loaded_demo, dataclasses.replace(model_settings, max_batch_size=2), ModelMetrics())
    runner = engine.runner
    runner.io = AsyncBoundary()
    engine.prepare()
    with torch.inference_mode():  # as on the engine's thread
        runner.set_mask(0, constraint)
        first = runner.bitmask[0].clone()
        constraint.accept(loaded_demo.tokenizer.convert_tokens_to_ids("{"))  # the grammar moves on (or raises)
        runner.set_mask(0, constraint)   # no wait in between: the first copy may still be queued
        runner.set_mask(1, constraint)
        runner.io.synchronize()
    assert runner.io.races == []
    assert not torch.equal(first, runner.bitmask[0]) and torch.equal(runner.bitmask[0], runner.bitmask[1])
