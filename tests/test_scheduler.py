"""The scheduler alone: no torch, no model, a fake clock. Who gets a row, how a
prompt is chunked, and how rows stay packed as jobs join and leave."""
from types import SimpleNamespace

import pytest

from llava_runtime.errors import ApiError
from llava_runtime.jobs import JobState
from llava_runtime.scheduler import Move, Scheduler


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def job(prompt_tokens=1000, name="j"):
    return SimpleNamespace(prepared=SimpleNamespace(prompt_tokens=prompt_tokens), cancelled=False, state=None,
                           started=None, queued_at=None, name=name)


def prefill_whole(scheduler):
    """Write the next prompt completely; returns the joined job's row and move."""
    chunk = scheduler.next_chunk()
    while True:
        scheduler.prefilled(chunk)
        if chunk.last:
            return scheduler.join()
        chunk = scheduler.next_chunk()


def test_a_full_queue_refuses_with_429_and_keeps_order():
    scheduler = Scheduler(rows=1, max_queue=2, chunk_tokens=256, clock=Clock())
    first, second = job(name="a"), job(name="b")
    scheduler.add(first)
    scheduler.add(second)
    with pytest.raises(ApiError) as refused:
        scheduler.add(job())
    assert refused.value.code == "queue_full" and refused.value.status == 429
    assert scheduler.next_chunk().job is first  # FIFO


def test_with_nobody_decoding_a_prompt_goes_in_whole_and_the_wait_is_timed():
    clock = Clock()
    scheduler = Scheduler(rows=2, max_queue=8, chunk_tokens=256, clock=clock)
    waiting = job(prompt_tokens=3000)
    scheduler.add(waiting)
    clock.now += 1.5
    chunk = scheduler.next_chunk()
    assert (chunk.row, chunk.start, chunk.end, chunk.last) == (0, 0, 3000, True)
    assert waiting.state is JobState.PREFILLING and waiting.started - waiting.queued_at == 1.5
    scheduler.prefilled(chunk)
    assert scheduler.join() == (0, None)
    assert waiting.state is JobState.RUNNING and scheduler.running == [waiting]


def test_while_rows_decode_a_prompt_goes_in_chunks():
    scheduler = Scheduler(rows=4, max_queue=8, chunk_tokens=256, clock=Clock())
    scheduler.add(job(prompt_tokens=100))
    prefill_whole(scheduler)
    scheduler.add(job(prompt_tokens=600))
    chunks = []
    while True:
        chunk = scheduler.next_chunk()
        chunks.append((chunk.row, chunk.start, chunk.end))
        scheduler.prefilled(chunk)
        if chunk.last:
            break
    assert chunks == [(1, 0, 256), (1, 256, 512), (1, 512, 600)]


def test_no_row_no_prefill_and_a_leave_frees_one():
    scheduler = Scheduler(rows=2, max_queue=8, chunk_tokens=256, clock=Clock())
    a, b, c = job(name="a"), job(name="b"), job(name="c")
    for j in (a, b, c):
        scheduler.add(j)
    prefill_whole(scheduler)
    prefill_whole(scheduler)
    assert scheduler.free_rows == 0 and scheduler.next_chunk() is None
    assert scheduler.leave(b) == (1, None)  # the last row: nothing to move
    assert scheduler.next_chunk().job is c


def test_a_leave_in_the_middle_moves_the_last_row_into_the_hole():
    scheduler = Scheduler(rows=4, max_queue=8, chunk_tokens=256, clock=Clock())
    jobs = [job(name=str(i)) for i in range(3)]
    for j in jobs:
        scheduler.add(j)
        prefill_whole(scheduler)
    freed, move = scheduler.leave(jobs[0])
    assert (freed, move) == (2, Move(src=2, dst=0))
    assert scheduler.running == [jobs[2], jobs[1]]
    assert scheduler.leave(jobs[0]) == (None, None)  # leaving twice is harmless


def test_a_prompt_whose_row_lost_its_place_joins_packed():
    scheduler = Scheduler(rows=4, max_queue=8, chunk_tokens=256, clock=Clock())
    a, b, late = job(name="a"), job(name="b"), job(prompt_tokens=600, name="late")
    for j in (a, b):
        scheduler.add(j)
        prefill_whole(scheduler)
    scheduler.add(late)
    chunk = scheduler.next_chunk()
    assert chunk.row == 2  # the next free row while a and b decode
    scheduler.prefilled(chunk)
    assert scheduler.leave(a) == (1, Move(src=1, dst=0))  # b moves up; row 1 is free, late sits in 2
    while not chunk.last:
        chunk = scheduler.next_chunk()
        scheduler.prefilled(chunk)
    assert scheduler.join() == (1, Move(src=2, dst=1))
    assert scheduler.running == [b, late]


def test_a_cancelled_waiting_job_is_dropped_and_a_prefilling_one_frees_its_row():
    scheduler = Scheduler(rows=2, max_queue=8, chunk_tokens=256, clock=Clock())
    first, gone, third = job(name="first"), job(name="gone"), job(name="third")
    for j in (first, gone, third):
        scheduler.add(j)
    gone.cancelled = True
    assert scheduler.drop_cancelled() == [gone]
    chunk = scheduler.next_chunk()
    assert chunk.job is first and scheduler.prefilling is first
    assert scheduler.leave(first) == (0, None)
    assert scheduler.prefilling is None and scheduler.next_chunk().job is third
    assert not scheduler.idle
