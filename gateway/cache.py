"""Answer cache and single-flight.

The key is a hash of the original image bytes + prompt + parameters + model + the
caller's tenant (a hash of its API key, auth.py), so a hit needs no decoding and no
model call, and one key never reads an answer made for another. By default the store
is on disk, shared by every worker of the host (local_cache.py); CACHE_URL=redis://
shares one cache between all workers and gateway replicas. A cache that fails
(Redis down or frozen, the disk full) costs a miss, never a failed request.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable, TypeVar

import redis

from . import local_cache

log = logging.getLogger(__name__)
T = TypeVar("T")
REDIS_PREFIX = "llava:answer:v1:"
# A cache lookup must not hold a request up: Redis answers in well under a millisecond.
REDIS_TIMEOUT_S = 0.5


def cache_key(image: bytes, prompt: str, max_tokens: int, temperature: float, model: str,
              structured: str = "", tenant: str = "") -> str:
    """`structured`: the schema's hash (llava_common/schemas.py); `tenant`: auth.check's
    hash of the caller's key ("" = shared by every caller)."""
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(image).digest())
    digest.update(json.dumps([prompt, max_tokens, repr(float(temperature)), model, structured, tenant]).encode())
    return digest.hexdigest()


def chat_cache_key(messages: list, params: dict, model: str, tenant: str = "") -> str:
    """A chat request's key: its messages with each image given as the SHA-256 of its
    original bytes (see chat.py), every parameter that changes the answer (seed and
    stop included), the model and the tenant. Prefixed so it never meets an analyze key."""
    material = json.dumps(["chat", messages, {k: repr(v) if isinstance(v, float) else v for k, v in params.items()},
                           model, tenant], sort_keys=True)
    return "chat:" + hashlib.sha256(material.encode()).hexdigest()


class NoCache:
    """CACHE_MAX_ENTRIES=0: nothing is kept."""

    def get(self, key: str) -> dict | None:
        return None

    def put(self, key: str, value: dict) -> None:
        pass


class RedisCache:
    def __init__(self, url: str, ttl_s: float):
        self._client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S,
                                            socket_connect_timeout=REDIS_TIMEOUT_S, health_check_interval=30)
        self._ttl_ms = int(ttl_s * 1000)

    def get(self, key: str) -> dict | None:
        raw = self._client.get(REDIS_PREFIX + key)
        return None if raw is None else json.loads(raw)

    def put(self, key: str, value: dict) -> None:
        self._client.set(REDIS_PREFIX + key, json.dumps(value), px=self._ttl_ms)


# What a store may raise when it fails; each costs a logged, counted miss.
STORE_ERRORS = (redis.RedisError, *local_cache.ERRORS)


class Cache:
    """The store plus what a failing store costs: a logged, counted miss."""

    def __init__(self, store, metrics):
        self._store, self._metrics = store, metrics

    def get(self, key: str) -> dict | None:
        try:
            value = self._store.get(key)
        except STORE_ERRORS as exc:
            self._failed("read", exc)
            value = None
        (self._metrics.cache_hits if value is not None else self._metrics.cache_misses).inc()
        return value

    def put(self, key: str, value: dict) -> None:
        try:
            self._store.put(key, value)
        except STORE_ERRORS as exc:
            self._failed("write", exc)

    def _failed(self, what: str, exc: Exception) -> None:
        self._metrics.cache_errors.inc()
        log.warning("cache %s failed (%s); answering without the cache", what, type(exc).__name__)


def build_cache(settings, metrics, clock: Callable[[], float] = time.monotonic) -> Cache:
    if settings.cache_url:
        return Cache(RedisCache(settings.cache_url, settings.cache_ttl_s), metrics)
    if not settings.cache_max_entries:
        return Cache(NoCache(), metrics)
    return Cache(local_cache.LocalCache(settings.cache_dir, settings.cache_max_entries, settings.cache_ttl_s, clock),
                 metrics)


class SingleFlight:
    """Identical calls in flight at once run once; the others wait for its outcome
    (value or exception). Hand-written: it is a dozen lines and no pinned library
    offers it for threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self._calls: dict[str, Future] = {}

    def do(self, key: str, fn: Callable[[], T], wait_s: float) -> tuple[T, bool]:
        """(outcome, shared): shared is True when another call's outcome was reused.
        A follower that waits past `wait_s` gets TimeoutError."""
        with self._lock:
            future = self._calls.get(key)
            leader = future is None
            if leader:
                future = self._calls[key] = Future()
        if not leader:
            try:
                return future.result(timeout=wait_s), True
            except FutureTimeout:
                raise TimeoutError from None
        try:
            value = fn()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(value)
            return value, False
        finally:
            with self._lock:
                del self._calls[key]
