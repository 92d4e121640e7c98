"""Gateway logging: llava_common's one-line format plus, on every line written while
a request is being handled, its request id, the caller's tenant tag (a prefix of the
hash of its API key, never the key) and the client's own request id when it sent one.

Every message is made safe on its way out: control characters escaped (a path
with %0d%0a cannot forge a second log line) and long messages truncated (a 5 MB
field cannot flood the log). `printable()` does the same for client-supplied
text that goes into a message or a response."""
from __future__ import annotations

import logging
import re

from flask import g, has_request_context

from llava_common import logs, request_ids

FORMAT = "%(asctime)s %(levelname)s gateway %(name)s: %(message)s [%(request_id)s%(request_context)s]"
# Longest log message kept (the rest is cut and counted); one request's line is ~200 characters.
MAX_MESSAGE_CHARS = 2000
# Control characters, DEL, C1 controls and the Unicode line and paragraph separators.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: object, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` with control characters escaped (\\r -> \\x0d) and cut to `limit` characters."""
    text = _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256
                            else f"\\u{ord(m.group()):04x}", str(text))
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text) - limit} more characters)"
    return text


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id, record.request_context = "-", ""
        if has_request_context():
            record.request_id = g.get("request_id", "-")
            record.request_context = request_ids.log_context(g.get("tenant_tag", "-"), g.get("client_request_id"))
        return True


class SafeFormatter(logging.Formatter):
    """One line per message, whatever a client put in it (a traceback keeps its lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = printable(record.message)
        return super().formatMessage(record)


def configure(level: str) -> None:
    logs.configure("gateway", level)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())
        handler.setFormatter(SafeFormatter(FORMAT))
