"""The gateway's Prometheus metrics: names are part of the contract (docs/DESIGN.md).

Under gunicorn every worker is a process, so prometheus-client runs in
multiprocess mode (PROMETHEUS_MULTIPROC_DIR, chosen and cleaned by multiproc.py):
each worker writes its samples to files there and /metrics, in whichever worker
answers it, sums them. Gauges say how they combine across workers.
"""
from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from .multiproc import ENV as MULTIPROC_ENV

# Seconds; a model answer takes from ~0.5 s (short, batched) to a minute (1024 tokens).
LATENCY_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 15, 30, 60, 120)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("llava_requests", "Gateway requests answered, by endpoint and answer status",
                                ["endpoint", "status"], registry=r)
        self.response_time = Histogram("llava_response_time_seconds", "Time from request to response, by endpoint",
                                       ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.cache_hits = Counter("llava_cache_hits", "Answers served from the cache", registry=r)
        self.cache_misses = Counter("llava_cache_misses", "Cache lookups that found nothing", registry=r)
        self.cache_errors = Counter("llava_cache_errors",
                                    "Cache reads or writes that failed (Redis down, a failing disk; counted as misses)",
                                    registry=r)
        self.coalesced = Counter("llava_singleflight_shared", "Requests answered by an identical request's model "
                                 "call that was already in flight", registry=r)
        self.upstream_errors = Counter("llava_upstream_errors", "Failed model calls, by kind: connection, timeout, "
                                       "server_error, bad_response, breaker_open, not_ready, queue_full", ["kind"],
                                       registry=r)
        self.upstream_time = Histogram("llava_upstream_response_time_seconds", "Duration of model calls",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.breaker_state = Gauge("llava_breaker_state", "Circuit breaker per upstream replica: 0 closed, "
                                   "1 half-open, 2 open (worst over workers)", ["upstream"],
                                   multiprocess_mode="livemax", registry=r)
        self.in_flight = Gauge("llava_in_flight_requests",
                               "Requests being answered by the gateway (sum over live workers)",
                               multiprocess_mode="livesum", registry=r)
        self.upstream_in_flight = Gauge("llava_upstream_in_flight_requests", "Model calls in flight, by replica",
                                        ["upstream"], multiprocess_mode="livesum", registry=r)
        self.overloaded = Counter("llava_admission_rejected", "Requests refused with 429 by admission, by reason "
                                  "(queue_full: the waiting line was full; wait_timeout: no slot within "
                                  "ADMISSION_WAIT_SECONDS; pushed_out: another API key took its place in a full "
                                  "line, this key holding the most of it; busy: no spare thread left in the worker; "
                                  "decode_busy: no DECODE_CONCURRENCY slot within 10 s)", ["reason"], registry=r)
        self.admission_waiting = Gauge("llava_admission_waiting_requests",
                                       "Requests waiting for a model call slot (sum over live workers)",
                                       multiprocess_mode="livesum", registry=r)
        self.admission_wait = Histogram("llava_admission_wait_seconds", "Time requests waited for a model call slot",
                                        buckets=LATENCY_BUCKETS, registry=r)

    def exposition(self) -> tuple[bytes, str]:
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

