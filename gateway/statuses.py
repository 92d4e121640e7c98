"""The gateway's answer statuses (docs/DESIGN.md pins them) and the one exception that
carries a refusal to the HTTP boundary. Every status has exactly one place here, with
what it means in TABLE."""
from __future__ import annotations

SUCCESS = "SUCCESS"
CACHED = "CACHED"
FALLBACK = "FALLBACK"
VALIDATION_ERROR = "VALIDATION_ERROR"
OVERLOADED = "OVERLOADED"
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
UNAUTHORIZED = "UNAUTHORIZED"
# A bug in the gateway itself (not in the seed's table). Never expected; the log has the cause.
INTERNAL_ERROR = "INTERNAL_ERROR"

# (status, HTTP, when): the native API's table in docs/reference/codes.md (`make docs`).
TABLE = (
    (SUCCESS, "200", "answered by the model"),
    (CACHED, "200", "same image bytes + prompt + parameters + model, asked with the same API key, answered within "
                    "`CACHE_TTL_SECONDS` (usage is the original answer's)"),
    (FALLBACK, "200", "model down, not ready, timed out, failing, or its breaker open; `result` = `FALLBACK_MESSAGE` "
                      "(`FALLBACK_TIMEOUT_MESSAGE` on a timeout)"),
    (VALIDATION_ERROR, "400", "a part missing or out of range; a truncated or corrupt image; the model's "
                              "`context_length_exceeded` (its message is passed on)"),
    (VALIDATION_ERROR, "413", "image over `MAX_UPLOAD_BYTES` or over `MAX_IMAGE_PIXELS` (checked from the header, "
                              "before decoding)"),
    (VALIDATION_ERROR, "415", "not JPEG, PNG, WebP or GIF, judged by the bytes (not the name or Content-Type)"),
    (OVERLOADED, "429 + Retry-After", "the admission line is full (`ADMISSION_QUEUE` requests already waiting in this "
                                      "worker), a request waited `ADMISSION_WAIT_SECONDS` without a model call slot, "
                                      "the model's own queue is full, the worker has no spare thread left, or no "
                                      "image decoding slot (`DECODE_CONCURRENCY`) freed within 10 s"),
    (SERVICE_UNAVAILABLE, "503 + Retry-After", "as FALLBACK, with `FALLBACK_ENABLED=false`; `result` says why"),
    (UNAUTHORIZED, "401", "`API_KEYS` set and no key or a wrong one given"),
    (INTERNAL_ERROR, "500", "a bug in the gateway (not in the seed's table; never expected); the log has the cause "
                            "under the request id"),
)

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
