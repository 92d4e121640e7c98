"""Model replicas found through DNS (a Kubernetes headless Service).

With MODEL_DISCOVERY_INTERVAL_SECONDS > 0, an http:// MODEL_URL whose host is a DNS
name stands for every address that name resolves to: `http://llava-model:8081`
becomes `http://10.0.3.7:8081`, `http://10.0.5.2:8081`, ..., one replica each, with
its own readiness and circuit breaker, spread exactly like a comma-separated list.

The name is resolved again when the replica list is read (by a request or a health
check) and the last answer is older than the interval; no thread. Addresses that
stay keep their replica object (so their breaker and readiness); new ones are added,
gone ones dropped. One lookup at a time: meanwhile the others use the last list.

A failed lookup keeps the last addresses (logged): a DNS hiccup must not empty the
list, and a replica that is really gone fails its health checks anyway.
Left as they are: URLs whose host is an IP address, https:// URLs (TLS checks the
certificate against the name, not an address), and every URL when the interval is 0.

The resolver is the one edge: `resolve(host, port) -> [address, ...]`.
"""
from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from typing import Callable, Generic, Sequence, TypeVar
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)

R = TypeVar("R")
Resolver = Callable[[str, int], Sequence[str]]
DEFAULT_PORTS = {"http": 80, "https": 443}


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses getaddrinfo gives for host, in its order, without repeats."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def with_address(url: str, address: str) -> str:
    """url with its host replaced by address (IPv6 in brackets), port and path kept."""
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class Discovery(Generic[R]):
    """The current replicas for a list of URLs; `make_replica(url)` builds one."""

    def __init__(self, urls: Sequence[str], interval_s: float, make_replica: Callable[[str], R],
                 resolver: Resolver | None = None, clock=time.monotonic):
        self._make, self._resolve, self._clock = make_replica, resolver or system_resolver, clock
        self._interval = interval_s
        self._names = {url: urlsplit(url) for url in urls if self._discovered(url)}
        self._last: dict[str, list[str]] = {}  # url -> the URLs its name resolved to last
        self._replicas: dict[str, R] = {}
        self._resolved_at = float("-inf")
        self._urls = tuple(urls)
        self._lock = threading.Lock()
        if not self._names:
            self._replicas = {url: make_replica(url) for url in dict.fromkeys(urls)}
        skipped = [url for url in urls if interval_s > 0 and url.startswith("https://")
                   and not is_address(urlsplit(url).hostname or "")]
        if skipped:
            log.warning("model discovery leaves https URLs to connection-time resolution: %s", ", ".join(skipped))

    def _discovered(self, url: str) -> bool:
        parts = urlsplit(url)
        return self._interval > 0 and parts.scheme == "http" and not is_address(parts.hostname or "")

    def replicas(self) -> tuple[R, ...]:
        if self._names and self._clock() - self._resolved_at >= self._interval:
            # The first lookup is waited for (there is nothing to use yet); later ones are not.
            if self._lock.acquire(blocking=self._resolved_at == float("-inf")):
                try:
                    if self._clock() - self._resolved_at >= self._interval:
                        self._refresh()
                finally:
                    self._lock.release()
        return tuple(self._replicas.values())

    def _refresh(self) -> None:
        expanded: list[str] = []
        for url in self._urls:
            expanded += self._lookup(url) if url in self._names else [url]
        old = self._replicas
        self._replicas = {url: old[url] if url in old else self._make(url) for url in dict.fromkeys(expanded)}
        self._resolved_at = self._clock()
        added, gone = self._replicas.keys() - old.keys(), old.keys() - self._replicas.keys()
        if added or gone:
            log.info("model replicas: %s (added %s, gone %s)", ", ".join(self._replicas) or "none",
                     ", ".join(sorted(added)) or "none", ", ".join(sorted(gone)) or "none")

    def _lookup(self, url: str) -> list[str]:
        parts = self._names[url]
        try:
            addresses = self._resolve(parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme])
        except OSError as exc:
            log.warning("cannot resolve %s (%s); keeping its last addresses", parts.hostname, exc)
            return self._last.get(url, [])
        self._last[url] = [with_address(url, address) for address in dict.fromkeys(addresses)]
        return self._last[url]
