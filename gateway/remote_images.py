"""Image URLs in chat requests: `data:` URLs, raw base64, and remote http(s) URLs.

Remote URLs are refused unless their host is on REMOTE_IMAGE_HOSTS: otherwise
the gateway would fetch whatever a client names, including addresses inside the
network it runs in (cloud metadata, admin ports). An allowed host is fetched with
no redirects followed (a redirect could lead anywhere), no proxy or netrc from the
environment, at most MAX_UPLOAD_BYTES read and REMOTE_IMAGE_TIMEOUT_SECONDS in
total. What comes back is judged like an upload (images.normalise).
"""
from __future__ import annotations

import time
from urllib.parse import urlsplit

import requests

from llava_common import images as rules

from .images import refusal
from .statuses import invalid

_CHUNK = 64 * 1024


def image_bytes(url: object, settings, param: str) -> bytes:
    """The image an `image_url.url` names, as bytes (not yet judged as an image)."""
    if not isinstance(url, str) or not url.strip():
        raise invalid(f"`{param}` must be a non-empty string: a data:image/...;base64, URL", param=param)
    url = url.strip()
    if url[:8].lower().startswith(("http://", "https://")):
        return fetch(url, settings, param)
    try:
        return rules.b64decode(rules.base64_payload(url), settings.max_upload_bytes)
    except rules.ImageRejected as rejected:
        raise refusal(rejected) from None


def allowed(url: str, hosts: tuple[str, ...]) -> bool:
    """`host` entries allow that host on any port, `host:port` entries that port only."""
    parts = urlsplit(url)
    if parts.username or parts.password or not parts.hostname:
        return False
    try:
        port = parts.port
    except ValueError:
        return False
    host = parts.hostname.lower()
    return any(entry.lower() in (host, f"{host}:{port}" if port else host) for entry in hosts)


def fetch(url: str, settings, param: str) -> bytes:
    if not settings.remote_image_hosts:
        raise invalid(f"`{param}` is a remote URL; this service does not fetch images from URLs. Send the image "
                      "inline as data:image/jpeg;base64,<data>", code="remote_image_refused", param=param)
    if not allowed(url, settings.remote_image_hosts):
        raise invalid(f"`{param}`: fetching images from {urlsplit(url).hostname or 'this address'} is not allowed; "
                      "send the image inline as data:image/jpeg;base64,<data>", code="remote_image_refused",
                      param=param)
    limit, budget = settings.max_upload_bytes, settings.remote_image_timeout_s
    deadline = time.monotonic() + budget
    failed = f"the image at `{param}` could not be fetched"
    session = requests.Session()
    session.trust_env = False  # no proxy or .netrc from the environment
    try:
        with session.get(url, stream=True, allow_redirects=False, timeout=(min(2.0, budget), budget),
                         headers={"Accept": "image/*"}) as response:
            if response.is_redirect:
                raise invalid(f"{failed}: it answered with a redirect, which is not followed", param=param)
            if response.status_code != 200:
                raise invalid(f"{failed}: it answered HTTP {response.status_code}", param=param)
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > limit:
                raise invalid(f"the image at `{param}` is {declared} bytes; the limit is {limit} bytes", 413,
                              code="image_too_large", param=param)
            data = bytearray()
            for chunk in response.iter_content(_CHUNK):
                data += chunk
                if len(data) > limit:
                    raise invalid(f"the image at `{param}` is over the limit of {limit} bytes", 413,
                                  code="image_too_large", param=param)
                if time.monotonic() > deadline:
                    raise invalid(f"{failed} within {budget:g} s", param=param)
            return bytes(data)
    except requests.Timeout:
        raise invalid(f"{failed} within {budget:g} s", param=param) from None
    except requests.RequestException:
        raise invalid(f"{failed}: the connection failed", param=param) from None
    finally:
        session.close()
