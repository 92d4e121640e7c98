"""The gateway's settings: one frozen object, read once from the environment.

Defaults, and why:
- Read timeout 60 s: the model answers a non-streaming call only when generation
  is done. LLaVA-1.6-7B on Hugging Face transformers decodes about 23 tokens/s at
  batch 1 on an A10G, so the default 512 tokens take about 22 s and the maximum of
  1024 about 45 s, plus a second or two of prefill (~2.9k image tokens) and batch
  queueing. 60 s covers the longest legal answer; the seed's 5 s fast-fail would
  have turned every long answer into a fallback. Outages still cost microseconds:
  a dead process refuses the connection at once, and repeated failures open the
  circuit breaker.
- Connect timeout 2 s: a connect on a LAN takes milliseconds; 2 s allows one lost
  SYN (retransmitted after 1 s) and no more.
- Long side 1008 px: the largest LLaVA-1.6 tile grid (image_grid_pinpoints up to
  1008x336 / 672x672); pixels past it are thrown away by the model's processor, so
  sending them only costs bandwidth and decode time.
- Admission: 8 model calls per worker (one full batch of the model process's
  default MAX_BATCH_SIZE) and up to 32 more waiting their turn, for at most 60 s
  (the read timeout: as long as one call may take). A Spring RestTemplate does not
  retry a 429, so the gateway waits before it refuses: measured on `make demo` (one
  worker, shared 2-core CPU), 32 concurrent clients waited up to 29 s (four batches
  of ~5 s plus their own) and none was refused (bench/results/admission.md). Each
  waiting request holds a thread, hence 48 threads: 8 calling, 32 waiting and 8 for
  cache hits, health probes and scrapes.
- Images of at most 4096 x 4096 decoded pixels (MAX_IMAGE_PIXELS): the model never sees
  more than 1008 px a side, so more pixels only cost memory. A 4K screenshot passes, and
  so does any camera JPEG: it decodes at the 1/2 to 1/8 scale that still covers 1008 px
  (a 24 MP photo at 1500 x 1000). Decoding the largest PNG allowed takes ~160 MB (RGBA)
  for a third of a second; the old 40 MP limit let a 166 KB PNG take 650 MB.
  DECODE_CONCURRENCY (2) such decodes, or reads of a large body, run at once per worker.
- Chat requests: at most 256 messages, 512 content parts and 8,000 characters of text
  (the model process's MAX_PROMPT_CHARS): 200,000 empty messages used to keep the model
  busy for 11 s before it refused them.
- An anonymous gateway only on loopback: one that listens beyond it refuses to start
  without API_KEYS unless ALLOW_ANONYMOUS=true says so.
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from llava_common import logs
from llava_common.settings import accepting, boolean, choice, csv, integer, load, number, setting, text

# Threads kept free of model calls and waits: cache hits, health probes, scrapes.
SPARE_THREADS = 4
LOOPBACK_NAMES = ("localhost",)
DEFAULT_FALLBACK_MESSAGE = ("Our image assistant is temporarily unavailable. "
                            "Please try again in a few moments.")
DEFAULT_FALLBACK_TIMEOUT_MESSAGE = ("Our image assistant is taking longer than usual to answer. "
                                    "Please try again in a few moments.")


@accepting("http:// or https:// URLs, comma-separated")
def urls(raw: str) -> tuple[str, ...]:
    values = tuple(url.rstrip("/") for url in csv(raw))
    if not values:
        raise ValueError("expected one or more http(s) URLs, comma-separated")
    for url in values:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
    return values


@accepting("host:port entries, comma-separated")
def host_ports(raw: str) -> tuple[str, ...]:
    """`host:port` entries: a port is required, so allowing a host never opens every
    service on it (the model process's own port on localhost, say)."""
    entries = tuple(entry.lower() for entry in csv(raw))
    for entry in entries:
        host, _, port = entry.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{entry!r} must be host:port (e.g. images.example.com:443)")
    return entries


@accepting("comma-separated key=weight entries, weights 0.01 to 1000")
def weights(raw: str) -> tuple[tuple[str, float], ...]:
    """`key=weight` entries (a key may itself hold `=`: the weight follows the last one)."""
    entries = []
    for entry in csv(raw):
        key, _, weight = entry.rpartition("=")
        try:
            value = float(weight)
        except ValueError:
            value = 0.0
        if not key or not 0.01 <= value <= 1000:
            raise ValueError("each entry must be key=weight with a weight from 0.01 to 1000 (the key is not repeated "
                             "here)")
        entries.append((key, value))
    return tuple(entries)


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class GatewaySettings:
    """Under gunicorn, `PROMETHEUS_MULTIPROC_DIR` (prometheus-client's own variable) may
    name the metrics directory; it is emptied at start. Without it (`make demo`, the
    plain gunicorn command) the gateway makes a temporary one before any worker starts
    and removes it at exit."""

    model_urls: tuple = setting("MODEL_URL", ("http://127.0.0.1:8081",), urls,
                                "Model process base URL(s), comma-separated; any server of the OpenAI chat-completions "
                                "protocol")
    host: str = setting("GATEWAY_HOST", "127.0.0.1", text,
                        "Address the gateway listens on (0.0.0.0 inside a container)")
    port: int = setting("GATEWAY_PORT", 8080, integer(0, 65535), "Port of the public REST API")
    workers: int = setting("GATEWAY_WORKERS", 4, integer(1, 256), "gunicorn worker processes")
    threads: int = setting("GATEWAY_THREADS", 48, integer(1, 1024),
                           "Threads per worker; each request calling or waiting for the model holds one "
                           "(at least MAX_UPSTREAM_IN_FLIGHT + ADMISSION_QUEUE + 4)")
    api_keys: tuple = setting("API_KEYS", (), csv,
                              "Comma-separated API keys; when set, /api and /v1 require `Authorization: Bearer <key>` "
                              "or `X-API-Key` (API_KEYS_FILE reads them from a file)")
    allow_anonymous: bool = setting("ALLOW_ANONYMOUS", False, boolean,
                                    "Let a gateway that listens beyond loopback (GATEWAY_HOST) start without API_KEYS; "
                                    "off: it refuses to start")
    cache_url: str = setting("CACHE_URL", "", text,
                             "Empty = one cache on disk shared by this host's workers (CACHE_DIR); "
                             "redis://host:port/db = one cache shared by all workers and replicas")
    cache_dir: str = setting("CACHE_DIR", "", text,
                             "Directory of the on-host cache (SQLite, diskcache); empty = a private temporary "
                             "directory gunicorn's master makes at start and removes at exit")
    cache_password: str = setting("CACHE_PASSWORD", "", text,
                                  "Password of the Redis cache, added to CACHE_URL (CACHE_PASSWORD_FILE reads it from "
                                  "a file, e.g. a Docker or Kubernetes secret)")
    cache_shared: bool = setting("CACHE_SHARED_ACROSS_KEYS", False, boolean,
                                 "Reuse answers (cached or in flight) across API keys; off: each key has its own "
                                 "entries, so no caller gets an answer to another's request")
    cache_max_entries: int = setting("CACHE_MAX_ENTRIES", 1000, integer(0, 10_000_000),
                                     "Answers kept by the on-host cache, oldest dropped first (0 disables caching)")
    cache_ttl_s: float = setting("CACHE_TTL_SECONDS", 600.0, number(1, 30 * 86400), "How long an answer is reused")
    max_upload_bytes: int = setting("MAX_UPLOAD_BYTES", 20 * 1024 * 1024, integer(1024),
                                    "Largest image file accepted, in bytes (413 past it)")
    max_image_pixels: int = setting("MAX_IMAGE_PIXELS", 4096 * 4096, integer(1),
                                    "Largest image in decoded pixels (width x height; a JPEG decodes at the 1/2 to 1/8 "
                                    "scale that covers MAX_IMAGE_SIDE), checked from the header before decoding: stops "
                                    "decompression bombs")
    max_image_side: int = setting("MAX_IMAGE_SIDE", 1008, integer(64, 16384),
                                  "Accepted images are scaled down so their long side fits this (the model's largest "
                                  "tile grid)")
    decode_concurrency: int = setting("DECODE_CONCURRENCY", 2, integer(1, 64),
                                      "Requests per worker that may read a large body, fetch or decode images at once "
                                      "(each may take a few hundred MB); others wait up to 10 s, then 429")
    max_in_flight: int = setting("MAX_UPSTREAM_IN_FLIGHT", 8, integer(1, 100_000),
                                 "Model calls in flight per worker; past it requests wait their turn (ADMISSION_QUEUE)")
    admission_queue: int = setting("ADMISSION_QUEUE", 32, integer(0, 100_000),
                                   "Requests per worker that may wait for a model call slot, first come first served; "
                                   "past it 429 OVERLOADED at once")
    admission_weights: tuple = setting("ADMISSION_WEIGHTS", (), weights,
                                       "`key=weight` entries, comma-separated, for keys of API_KEYS: their share of "
                                       "the admission line and of model call slots when several keys wait "
                                       "(default weight 1; a key of weight 2 gets twice the slots of a key of 1; "
                                       "ADMISSION_WEIGHTS_FILE reads them from a file)", secret=True)
    admission_wait_s: float = setting("ADMISSION_WAIT_SECONDS", 60.0, number(0, 3600),
                                      "Longest wait for a model call slot; past it 429 OVERLOADED")
    connect_timeout_s: float = setting("UPSTREAM_CONNECT_TIMEOUT_SECONDS", 2.0, number(0.01, 60),
                                       "Connect timeout of a model call")
    read_timeout_s: float = setting("UPSTREAM_READ_TIMEOUT_SECONDS", 60.0, number(0.01, 3600),
                                    "Longest wait for the model's answer (covers 1024 tokens of 7B generation)")
    health_interval_s: float = setting("UPSTREAM_HEALTH_INTERVAL_SECONDS", 2.0, number(0.05, 600),
                                       "How long a replica's readiness (GET /health) is trusted before it is checked "
                                       "again")
    discovery_interval_s: float = setting("MODEL_DISCOVERY_INTERVAL_SECONDS", 0.0, number(0, 3600),
                                          "When above 0, each http:// MODEL_URL whose host is a DNS name (a Kubernetes "
                                          "headless Service) stands for every address it resolves to, one replica "
                                          "each, "
                                          "re-resolved this often; 0 = use the URLs as they are")
    upstream_model: str = setting("UPSTREAM_MODEL", "", text,
                                  "`model` sent upstream (empty = the upstream's default model); also part of the cache"
                                  " key")
    breaker_fail_max: int = setting("BREAKER_FAIL_MAX", 5, integer(1, 10_000),
                                    "Consecutive failed model calls that open a replica's circuit breaker")
    breaker_reset_s: float = setting("BREAKER_RESET_SECONDS", 15.0, number(0.01, 3600),
                                     "How long an open breaker refuses calls before one trial call (half-open)")
    fallback_enabled: bool = setting("FALLBACK_ENABLED", True, boolean,
                                     "When the model is unavailable: true = 200 FALLBACK with a friendly message, false"
                                     " = 503 SERVICE_UNAVAILABLE")
    fallback_message: str = setting("FALLBACK_MESSAGE", DEFAULT_FALLBACK_MESSAGE, text,
                                    "FALLBACK result when the model is down, failing or its breaker is open")
    fallback_timeout_message: str = setting("FALLBACK_TIMEOUT_MESSAGE", DEFAULT_FALLBACK_TIMEOUT_MESSAGE, text,
                                            "FALLBACK result when the model did not answer in time")
    retry_after_s: int = setting("RETRY_AFTER_SECONDS", 5, integer(1, 3600),
                                 "Retry-After sent with 503 when the upstream gave none")
    max_images: int = setting("MAX_IMAGES_PER_REQUEST", 4, integer(1, 64),
                              "Most images in one /v1/chat/completions request (the model process has the same "
                              "setting)")
    max_messages: int = setting("MAX_MESSAGES", 256, integer(1, 100_000),
                                "Most messages in one /v1/chat/completions request")
    max_parts: int = setting("MAX_CONTENT_PARTS", 512, integer(1, 100_000),
                             "Most content parts (text and images) in one /v1/chat/completions request, over all "
                             "its messages")
    max_prompt_chars: int = setting("MAX_PROMPT_CHARS", 8000, integer(1, 1_000_000),
                                    "Most characters of text in one /v1/chat/completions request, over all its "
                                    "messages (the model process has the same setting)")
    context_tokens: int = setting("MODEL_CONTEXT_TOKENS", 4096, integer(0, 1_000_000),
                                  "The model's context in tokens, for the up-front image budget check of chat requests "
                                  "(LLaVA-1.6 tiling); 0 = leave the check to the model")
    cache_sampled: bool = setting("OPENAI_CACHE_SAMPLED", False, boolean,
                                  "Cache /v1/chat/completions answers sampled (temperature > 0) without a `seed`; "
                                  "off: each such call gets a fresh sample, as from OpenAI")
    presets_file: str = setting("PRESETS_FILE", "", text,
                                "A JSON file of presets to add to (or replace) the built-in ones: {name: {description, "
                                "prompt, schema, max_tokens}} (gateway/presets.py)")
    model_aliases: tuple = setting("OPENAI_MODEL_ALIASES", (), csv,
                                   "Extra `model` names /v1/chat/completions accepts besides the served model "
                                   "(e.g. gpt-4o-mini, Spring AI's default); `*` = any name")
    remote_image_hosts: tuple = setting("REMOTE_IMAGE_HOSTS", (), host_ports,
                                        "`host:port` entries whose http(s) image URLs chat requests may use; empty = "
                                        "remote image URLs are refused")
    remote_image_timeout_s: float = setting("REMOTE_IMAGE_TIMEOUT_SECONDS", 5.0, number(0.1, 300),
                                            "Wall-clock limit for fetching one remote image, connecting included: the "
                                            "connection is closed at the deadline (size limit: MAX_UPLOAD_BYTES)")
    remote_image_allow_private: bool = setting("REMOTE_IMAGE_ALLOW_PRIVATE", False, boolean,
                                               "Let remote image URLs resolve to loopback and private addresses "
                                               "(link-local and cloud metadata addresses stay refused)")
    max_requests: int = setting("GATEWAY_MAX_REQUESTS", 10_000, integer(0, 10_000_000),
                                "Requests a gunicorn worker answers before it is replaced (plus up to 10% jitter, so "
                                "workers do not restart together): memory a burst left behind goes back; 0 = never")
    pages_enabled: bool = setting("PAGES_ENABLED", True, boolean,
                                  "Serve the playground at / and the API docs (Swagger UI) at /docs: static pages that "
                                  "call the API from the browser; false = the API alone (both answer 404)")
    log_level: str = setting("LOG_LEVEL", "info", choice(*logs.LEVELS), "Log verbosity")

    @property
    def graceful_timeout_s(self) -> int:
        """How long a stopping gateway lets its requests finish: the longest a request may
        wait for a model call slot, then the longest the call may take, and a margin."""
        return int(self.admission_wait_s + self.read_timeout_s) + 5

    @property
    def published(self) -> bool:
        """Listening beyond loopback: reachable by other hosts or containers."""
        return not is_loopback(self.host)

    def __post_init__(self):
        if self.published and not self.api_keys and not self.allow_anonymous:
            raise ValueError(f"GATEWAY_HOST={self.host} listens beyond loopback and API_KEYS is empty: set API_KEYS "
                             "(or API_KEYS_FILE), or ALLOW_ANONYMOUS=true to serve anyone who can connect")
        if self.cache_password and self.cache_url:
            object.__setattr__(self, "cache_url", with_password(self.cache_url, self.cache_password))
        unknown = sum(1 for key, _ in self.admission_weights if key not in self.api_keys)
        if unknown:
            raise ValueError(f"ADMISSION_WEIGHTS names {unknown} key(s) that are not in API_KEYS")
        needed = self.max_in_flight + self.admission_queue + SPARE_THREADS
        if self.threads < needed:
            raise ValueError(f"GATEWAY_THREADS ({self.threads}) must be at least MAX_UPSTREAM_IN_FLIGHT + "
                             f"ADMISSION_QUEUE + {SPARE_THREADS} ({needed}): every request calling or waiting for "
                             "the model holds a thread, and cache hits and health probes need some too")

    def __repr__(self) -> str:  # never print secrets (keys, the cache password) in a log or a traceback
        return f"GatewaySettings(host={self.host!r}, port={self.port}, workers={self.workers}, ...)"

    @classmethod
    def from_env(cls, environ=None) -> "GatewaySettings":
        return load(cls, os.environ if environ is None else environ)


def with_password(url: str, password: str) -> str:
    """CACHE_URL with CACHE_PASSWORD as its password (Redis's default user)."""
    parts = urlsplit(url)
    netloc = f"{quote(parts.username or '', safe='')}:{quote(password, safe='')}@{parts.hostname or ''}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
