"""The default answer store (gateway/local_cache.py): bounded by entries and by age,
shared by processes of the host, never unpickling, and a failing disk is a miss."""
from __future__ import annotations

import subprocess
from types import SimpleNamespace

import diskcache

from gateway.cache import Cache
from gateway.local_cache import LocalCache
from tests.procs import ROOT, child_env, python


class Counter:
    def __init__(self):
        self.value = 0

    def inc(self):
        self.value += 1


def metrics():
    return SimpleNamespace(cache_hits=Counter(), cache_misses=Counter(), cache_errors=Counter())


class Clock:
    def __init__(self):
        self.now = 500.0

    def __call__(self):
        return self.now


def test_past_the_bound_the_oldest_stored_entries_go(tmp_path):
    store = LocalCache(str(tmp_path), max_entries=3, ttl_s=600)
    for i in range(5):
        store.put(f"k{i}", {"n": i})
    assert [store.get(f"k{i}") for i in range(5)] == [None, None, {"n": 2}, {"n": 3}, {"n": 4}]


def test_an_entry_is_reused_for_the_ttl_and_not_after(tmp_path):
    clock = Clock()
    store = LocalCache(str(tmp_path), max_entries=10, ttl_s=600, clock=clock)
    store.put("k", {"answer": "a red square"})
    clock.now += 599
    assert store.get("k") == {"answer": "a red square"}
    clock.now += 1
    assert store.get("k") is None
    clock.now = 10.0  # a clock before the entry was written (a reboot): not trusted
    assert store.get("k") is None


def test_another_process_reads_what_this_one_wrote(tmp_path):
    LocalCache(str(tmp_path), max_entries=10, ttl_s=600).put("shared", {"answer": "from the parent"})
    probe = ("import sys; from gateway.local_cache import LocalCache; "
             "store = LocalCache(sys.argv[1], 10, 600); print(store.get('shared')['answer']); "
             "store.put('back', {'answer': 'from the child'})")
    done = subprocess.run(python("-c", probe, str(tmp_path)), cwd=ROOT, env=child_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "from the parent", done.stderr
    assert LocalCache(str(tmp_path), max_entries=10, ttl_s=600).get("back") == {"answer": "from the child"}


def test_a_pickled_entry_is_refused_and_counted_as_a_miss(tmp_path):
    with diskcache.Cache(str(tmp_path)) as raw:
        raw.set("planted", {"a": "dict is pickled by diskcache"})
    counted = metrics()
    cache = Cache(LocalCache(str(tmp_path), max_entries=10, ttl_s=600), counted)
    assert cache.get("planted") is None
    assert (counted.cache_misses.value, counted.cache_errors.value) == (1, 1)


def test_a_store_that_cannot_be_written_costs_a_miss_not_an_error(tmp_path):
    blocked = tmp_path / "a-file-not-a-directory"
    blocked.write_text("x")
    counted = metrics()
    cache = Cache(LocalCache(str(blocked), max_entries=10, ttl_s=600), counted)
    cache.put("k", {"answer": "lost"})
    assert cache.get("k") is None
    assert (counted.cache_misses.value, counted.cache_errors.value) == (1, 2)
