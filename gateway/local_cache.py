"""The default answer store: one cache on disk, shared by every gunicorn worker of
the host, with no server to run.

Why: gunicorn runs several worker processes (4 by default), and a cache in each
one's memory missed whenever a repeat landed on another worker. diskcache keeps
its entries in SQLite (write-ahead log) under one directory: safe across processes
and threads, pure Python, maintained, and what Django and others use for exactly
this. Redis (CACHE_URL) stays the choice for several hosts.

Where: CACHE_DIR, else a private temporary directory that gunicorn's master makes
before it forks (`choose_dir`), so all its workers meet there, and removes at exit.

Bounds, as before: an entry is reused for CACHE_TTL_SECONDS by the gateway's clock
(monotonic: one clock for every process of a host; a test can move it; an age below
zero, after a reboot, is a miss), diskcache drops the row by the wall clock then
too, and past
CACHE_MAX_ENTRIES the oldest stored entries go, in the same transaction as the
write. Values are JSON text, never pickled, and a pickled row is refused: other
local processes might write to the directory.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
import weakref
from typing import Callable

import diskcache
from diskcache.core import MODE_PICKLE

ENV = "CACHE_DIR"
PREFIX = "llava-gateway-cache-"
# SQLite's wait for another process's write; past it the lookup is a counted miss,
# not a request held up (a write takes well under a millisecond).
BUSY_TIMEOUT_S = 0.5
ERRORS = (diskcache.Timeout, sqlite3.Error, OSError, ValueError)


def choose_dir(environ=os.environ) -> str | None:
    """In gunicorn's master, before any worker: use CACHE_DIR, or make a private
    directory and name it there for the workers. The directory made here, if any."""
    if environ.get(ENV, "").strip() or environ.get("CACHE_URL", "").strip():
        return None
    made = tempfile.mkdtemp(prefix=PREFIX)
    environ[ENV] = made
    return made


def remove_dir(made: str | None) -> None:
    if made:
        shutil.rmtree(made, ignore_errors=True)


class _NoPickle(diskcache.Disk):
    def fetch(self, mode, filename, value, read):
        if mode == MODE_PICKLE:
            raise ValueError("refusing a pickled cache entry")
        return super().fetch(mode, filename, value, read)


class LocalCache:
    def __init__(self, directory: str, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic):
        if not directory:  # not under gunicorn (tests, a WSGI server of one process): this process's own
            directory = tempfile.mkdtemp(prefix=PREFIX)
            weakref.finalize(self, shutil.rmtree, directory, True)
        self.directory, self._max, self._ttl_s, self._clock = directory, max_entries, ttl_s, clock
        self._lock = threading.Lock()
        self._opened: tuple[int, diskcache.Cache] | None = None

    def _cache(self) -> diskcache.Cache:
        # Opened in the process that uses it: SQLite connections must not cross a fork
        # (gunicorn --preload builds the app in the master).
        with self._lock:
            if self._opened is None or self._opened[0] != os.getpid():
                self._opened = (os.getpid(), diskcache.Cache(self.directory, timeout=BUSY_TIMEOUT_S, disk=_NoPickle,
                                                             eviction_policy="none"))
            return self._opened[1]

    def get(self, key: str) -> dict | None:
        raw = self._cache().get(key)
        if raw is None:
            return None
        stored_at, value = json.loads(raw)
        return value if 0 <= self._clock() - stored_at < self._ttl_s else None

    def put(self, key: str, value: dict) -> None:
        cache = self._cache()
        with cache.transact():
            cache.set(key, json.dumps([self._clock(), value]), expire=self._ttl_s)
            for _ in range(len(cache) - self._max):
                cache.delete(cache.peekitem(last=False)[0])
