"""The gateway's answer statuses (the table in docs/DESIGN.md) and the one exception that
carries a refusal to the HTTP boundary. Every status has exactly one place here."""
from __future__ import annotations

SUCCESS = "SUCCESS"                          # 200: answered by the model
CACHED = "CACHED"                            # 200: the same request was answered recently
FALLBACK = "FALLBACK"                        # 200: model unavailable; result = configured friendly message
VALIDATION_ERROR = "VALIDATION_ERROR"        # 400 / 413 / 415: bad input, result says what
OVERLOADED = "OVERLOADED"                    # 429 + Retry-After: admission limit reached
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"  # 503 + Retry-After: model unavailable, fallback off
UNAUTHORIZED = "UNAUTHORIZED"                # 401: API keys configured, none or a wrong one given
# A bug in the gateway itself (not in the seed's table). Never expected; the log has the cause.
INTERNAL_ERROR = "INTERNAL_ERROR"            # 500

ANSWERED = (SUCCESS, CACHED, FALLBACK)


class Refusal(Exception):
    """A request the gateway answers with an error status. `message` is written for
    the client; it never carries exception text."""

    def __init__(self, status: str, http: int, message: str, retry_after: int | None = None,
                 code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.http, self.message, self.retry_after = status, http, message, retry_after
        # For the OpenAI face (openai_api.py): a specific error code and the field at fault.
        self.code, self.param = code, param


def invalid(message: str, http: int = 400, code: str | None = None, param: str | None = None) -> Refusal:
    return Refusal(VALIDATION_ERROR, http, message, code=code, param=param)
