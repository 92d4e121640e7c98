"""What identifies a request in both processes' logs, written once for the gateway and
the model process: ids reach log lines, so nothing outside the rule may forge one.

The gateway makes every request id itself (a client could otherwise reuse another
tenant's id and have both requests logged, and answered, under one id). An id the
client sent in X-Request-ID is kept beside it, as the client's own, in
CLIENT_REQUEST_ID_HEADER: echoed to the client, logged, sent to the model process.
The gateway also sends TENANT_HEADER, a tag of the caller's API key (never the key),
which the model process logs and scopes its grammar cache by.
"""
from __future__ import annotations

import re
import uuid

REQUEST_ID_HEADER = "X-Request-ID"
CLIENT_REQUEST_ID_HEADER = "X-Client-Request-ID"
TENANT_HEADER = "X-Tenant-ID"
MAX_LENGTH = 128
_CHARS = "A-Za-z0-9._:-"
VALID = re.compile(rf"^[{_CHARS}]{{1,{MAX_LENGTH}}}$")
UNSAFE = re.compile(rf"[^{_CHARS}]")


def new() -> str:
    return uuid.uuid4().hex


def cleaned(value: str | None) -> str:
    """A header value reduced to the allowed characters and length ('' if nothing is left)."""
    return UNSAFE.sub("", value or "")[:MAX_LENGTH]


def log_context(tenant: str | None, client_request_id: str | None) -> str:
    """What follows the request id on a log line, in both processes."""
    return f" tenant={tenant or '-'}" + (f" client_request_id={client_request_id}" if client_request_id else "")
