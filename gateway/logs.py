"""Gateway logging: llava_common's one-line format plus the request id on every
line written while a request is being handled."""
from __future__ import annotations

import logging

from flask import g, has_request_context

from llava_common import logs

FORMAT = "%(asctime)s %(levelname)s gateway %(name)s: %(message)s [%(request_id)s]"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


def configure(level: str) -> None:
    logs.configure("gateway", level)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())
        handler.setFormatter(logging.Formatter(FORMAT))
