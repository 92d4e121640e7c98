"""Error codes of the model process's API: one place, one HTTP status each.

Every error leaves the process as OpenAI's shape
`{"error": {"message", "type", "param", "code"}}`; the message says what is wrong
and never carries exception text from inside the process.
"""
from __future__ import annotations

# code -> (HTTP status, OpenAI error type)
CODES = {
    "invalid_request": (400, "invalid_request_error"),
    "invalid_image": (400, "invalid_request_error"),
    "unsupported_image_format": (415, "invalid_request_error"),
    "image_too_large": (413, "invalid_request_error"),
    "request_too_large": (413, "invalid_request_error"),
    "context_length_exceeded": (400, "invalid_request_error"),
    "model_not_found": (404, "invalid_request_error"),
    "not_found": (404, "invalid_request_error"),
    "method_not_allowed": (405, "invalid_request_error"),
    "queue_full": (429, "server_overloaded"),
    "model_loading": (503, "service_unavailable"),
    "shutting_down": (503, "service_unavailable"),
    "out_of_memory": (503, "service_unavailable"),
    "internal_error": (500, "server_error"),
}
# Seconds a client is told to wait before retrying, per retryable code.
RETRY_AFTER = {"queue_full": 1, "model_loading": 10, "shutting_down": 5, "out_of_memory": 2}


class ApiError(Exception):
    """A refusal the client should see: a stable code and a human message."""

    def __init__(self, code: str, message: str, param: str | None = None):
        super().__init__(message)
        if code not in CODES:
            raise ValueError(f"unknown error code {code!r}")
        self.code, self.message, self.param = code, message, param

    @property
    def status(self) -> int:
        return CODES[self.code][0]

    @property
    def retry_after(self) -> int | None:
        return RETRY_AFTER.get(self.code)

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": CODES[self.code][1], "param": self.param, "code": self.code}}


# The refusals more than one module raises, worded once.
def queue_full(limit: int) -> ApiError:
    return ApiError("queue_full", f"the model queue is full ({limit} requests waiting); retry shortly")


def grammar_failed(failure: Exception) -> ApiError:
    """A row whose grammar hit a limit while decoding (grammar.GrammarFailure): the
    schema's fault, a 400, never a 500 (a 5xx would count against the gateway's
    circuit breaker and pause every tenant's calls)."""
    return ApiError("invalid_request", f"{failure}; simplify the schema", "response_format")


def out_of_memory() -> ApiError:
    return ApiError("out_of_memory", "the GPU ran out of memory for this request; retry, or send a smaller image "
                    "or a lower max_tokens")
