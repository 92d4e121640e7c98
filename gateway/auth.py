"""API keys: off unless API_KEYS is set; then `Authorization: Bearer <key>` or
`X-API-Key: <key>`, compared in constant time against every configured key.

The key a caller presented also names its tenant: a hash of it is part of every
cache and single-flight key (cache.py), so one key never gets an answer to a
request made with another (unless CACHE_SHARED_ACROSS_KEYS says so)."""
from __future__ import annotations

import hashlib
import hmac

from .statuses import UNAUTHORIZED, Refusal

ANONYMOUS = ""  # the tenant of every caller when API_KEYS is empty
TAG_CHARS = 16  # hex characters of the hash in a tenant's tag (64 bits)


def presented_key(headers) -> str | None:
    authorization = headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("X-API-Key") or None


def check(headers, keys: tuple[str, ...]) -> str:
    """The caller's tenant (a hash of its key; ANONYMOUS without API_KEYS), or a 401 Refusal."""
    if not keys:
        return ANONYMOUS
    given = presented_key(headers)
    if given is None:
        raise Refusal(UNAUTHORIZED, 401, "an API key is required: send `Authorization: Bearer <key>` or `X-API-Key`")
    matched = False
    for key in keys:  # no early exit: the time taken does not depend on which key matched
        matched |= hmac.compare_digest(given.encode(), key.encode())
    if not matched:
        raise Refusal(UNAUTHORIZED, 401, "the API key is not valid")
    return tenant(given)


def tenant(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def tag(tenant_hash: str) -> str:
    """The tenant as log lines and the model process see it: a prefix of its hash (the key
    never appears), "-" for the anonymous tenant."""
    return tenant_hash[:TAG_CHARS] if tenant_hash else "-"
