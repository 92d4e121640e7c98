"""API keys: off unless API_KEYS is set; then `Authorization: Bearer <key>` or
`X-API-Key: <key>`, compared in constant time against every configured key."""
from __future__ import annotations

import hmac

from .statuses import UNAUTHORIZED, Refusal


def presented_key(headers) -> str | None:
    authorization = headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("X-API-Key") or None


def check(headers, keys: tuple[str, ...]) -> None:
    if not keys:
        return
    given = presented_key(headers)
    if given is None:
        raise Refusal(UNAUTHORIZED, 401, "an API key is required: send `Authorization: Bearer <key>` or `X-API-Key`")
    matched = False
    for key in keys:  # no early exit: the time taken does not depend on which key matched
        matched |= hmac.compare_digest(given.encode(), key.encode())
    if not matched:
        raise Refusal(UNAUTHORIZED, 401, "the API key is not valid")
