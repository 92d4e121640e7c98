"""Image URLs in chat requests: `data:` URLs, raw base64, and remote http(s) URLs.

Remote URLs are refused unless their `host:port` is on REMOTE_IMAGE_HOSTS:
otherwise the gateway would fetch whatever a client names, including addresses
inside the network it runs in (cloud metadata, admin ports, the model process).
An allowed URL is fetched so that it cannot be turned against that network:

- The name is resolved here and every address it gives is checked: loopback,
  private, shared and reserved addresses are refused unless
  REMOTE_IMAGE_ALLOW_PRIVATE=true, link-local and cloud metadata addresses always
  (also when embedded in an IPv6 address). The connection then goes to the checked
  address (TLS still verifies the name), so a second lookup cannot swap it.
- One wall-clock deadline, REMOTE_IMAGE_TIMEOUT_SECONDS, over the connect, the TLS
  handshake and every read: each waits at most for the time left, and a timer shuts
  the connection down when it passes, whatever the server is doing (before: the
  deadline was checked between 64 KiB reads, and a server sending 1 byte a second
  held a thread for 20 s under a 5 s limit; over TLS the timer could not reach the
  wrapped socket, and a drip held a fetch for 30 s).
- No redirects, no proxy or .netrc from the environment, at most MAX_UPLOAD_BYTES.
- Every failure after the allow-list answers the same words (`unavailable`), so
  the answer does not tell an open port from a closed one, or an image from a
  login page; the log has the reason.

Hand-written on the standard library's http.client: requests and urllib3 resolve
the name themselves and cannot be pinned to a checked address or cut off mid-read.
The fetched bytes are then judged like an upload (images.py).
"""
from __future__ import annotations

import http.client
import ipaddress
import logging
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

from llava_common import images as rules

from .images import refusal
from .statuses import Refusal, invalid

log = logging.getLogger(__name__)
REFUSED = "remote_image_refused"
CONNECT_TIMEOUT_S = 2.0
_CHUNK = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Cloud metadata services that are not link-local: AWS's IPv6 endpoint, Alibaba Cloud's.
_METADATA = (ipaddress.ip_network("fd00:ec2::254/128"), ipaddress.ip_network("100.100.100.200/32"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class Unusable(Exception):
    """Why a remote image was not used (logged, never told to the client)."""


def image_bytes(url: object, settings, param: str) -> tuple[bytes, bool]:
    """(the bytes an `image_url.url` names, fetched from a remote host?); not yet judged as an image."""
    if not isinstance(url, str) or not url.strip():
        raise invalid(f"`{param}` must be a non-empty string: a data:image/...;base64, URL", param=param)
    url = url.strip()
    if url[:8].lower().startswith(("http://", "https://")):
        return fetch(url, settings, param), True
    try:
        return rules.b64decode(rules.base64_payload(url), settings.max_upload_bytes), False
    except rules.ImageRejected as rejected:
        raise refusal(rejected) from None


def unavailable(param: str) -> Refusal:
    """The one answer for a remote image that could not be used, whatever the reason."""
    return invalid(f"the image at `{param}` could not be fetched or is not an accepted image; send the image "
                   "inline as data:image/jpeg;base64,<data>", code=REFUSED, param=param)


def allowed(url: str, hosts: tuple[str, ...]) -> bool:
    """Is the URL's `host:port` (the scheme's port when none is given) on the list?"""
    target = _target(urlsplit(url))
    return target is not None and f"{_bracketed(target[0])}:{target[1]}" in hosts


def fetch(url: str, settings, param: str) -> bytes:
    if not settings.remote_image_hosts:
        raise invalid(f"`{param}` is a remote URL; this service does not fetch images from URLs. Send the image "
                      "inline as data:image/jpeg;base64,<data>", code=REFUSED, param=param)
    parts = urlsplit(url)
    if not allowed(url, settings.remote_image_hosts):
        raise invalid(f"`{param}`: fetching images from {parts.hostname or 'this address'} is not allowed; "
                      "send the image inline as data:image/jpeg;base64,<data>", code=REFUSED, param=param)
    host, port = _target(parts)
    deadline = time.monotonic() + settings.remote_image_timeout_s
    try:
        address = checked_address(host, port, settings.remote_image_allow_private)
        return _get(parts, host, port, address, deadline, settings.max_upload_bytes)
    except Unusable as why:
        log.info("remote image from %s:%d not used: %s", host, port, why)
        raise unavailable(param) from None


def checked_address(host: str, port: int, allow_private: bool) -> tuple:
    """The first address `host` resolves to, if every one of them may be reached."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Unusable(f"the name does not resolve ({exc})") from None
    for *_, sockaddr in found:
        why = refused_address(sockaddr[0], allow_private)
        if why:
            raise Unusable(f"it resolves to {sockaddr[0]}, {why}")
    family, _, _, _, sockaddr = found[0]
    return family, sockaddr


def refused_address(address: str, allow_private: bool) -> str | None:
    """Why this address may not be fetched from, or None."""
    ip = ipaddress.ip_address(address.split("%")[0])
    embedded = [ip]
    if ip.version == 6:
        embedded += [v4 for v4 in (ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())) if v4 is not None]
        if ip in _NAT64:
            embedded.append(ipaddress.ip_address(int(ip) & 0xFFFFFFFF))
    for one in embedded:
        if one.is_link_local or any(one in net for net in _METADATA):
            return "a link-local or cloud metadata address"
        if one.is_multicast or one.is_unspecified:
            return "not a host address"
        if not allow_private and not one.is_global:
            return "not a public address (REMOTE_IMAGE_ALLOW_PRIVATE is off)"
    return None


def _get(parts, host: str, port: int, address: tuple, deadline: float, limit: int) -> bytes:
    family, sockaddr = address
    sock = socket.socket(family, socket.SOCK_STREAM)
    # The timer shuts the connection through a descriptor of its own: `wrap_socket`
    # detaches `sock` (its shutdown() then fails with EBADF) before the handshake even
    # starts, and shutdown(2) on any descriptor of a connection ends every blocked read
    # on it, TLS or plain (issue 25: an HTTPS server dripping a byte every 2 s held a
    # fetch for 30 s under a 5 s limit).
    handle = sock.dup()
    cut = threading.Event()

    def at_deadline():
        cut.set()
        try:
            handle.shutdown(socket.SHUT_RDWR)  # a blocked connect, handshake or read returns at once
        except OSError:
            pass

    def left() -> float:
        return max(0.01, deadline - time.monotonic())

    timer = threading.Timer(max(0.0, deadline - time.monotonic()), at_deadline)
    timer.daemon = True
    timer.start()
    stream = sock
    try:
        sock.settimeout(min(CONNECT_TIMEOUT_S, left()))
        sock.connect(sockaddr)
        sock.settimeout(left())  # bounds the TLS handshake too
        if parts.scheme.lower() == "https":
            stream = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        connection = http.client.HTTPConnection(host, port)  # speaks HTTP over the pinned socket
        connection.sock = stream
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        default = _DEFAULT_PORTS[parts.scheme.lower()]
        connection.putheader("Host", _bracketed(host) if port == default else f"{_bracketed(host)}:{port}")
        connection.putheader("Accept", "image/*")
        stream.settimeout(left())
        connection.endheaders()
        response = connection.getresponse()
        if response.status != 200:
            raise Unusable(f"it answered HTTP {response.status}")
        declared = response.getheader("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise Unusable(f"it declared {declared} bytes, over {limit}")
        data = bytearray()
        while True:
            stream.settimeout(left())  # each read waits at most for what is left of the deadline
            chunk = response.read1(_CHUNK)  # one receive: a byte now and then cannot stretch a read
            if not chunk:
                break
            data += chunk
            if len(data) > limit:
                raise Unusable(f"it sent over {limit} bytes")
        if cut.is_set():
            raise Unusable("the deadline passed")
        return bytes(data)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise Unusable("the deadline passed" if cut.is_set() else f"the connection failed ({exc!r})") from None
    finally:
        timer.cancel()
        for each in (stream, sock, handle):
            each.close()


def _target(parts) -> tuple[str, int] | None:
    if parts.username or parts.password or not parts.hostname or parts.scheme.lower() not in _DEFAULT_PORTS:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    return parts.hostname.lower(), port or _DEFAULT_PORTS[parts.scheme.lower()]


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host
