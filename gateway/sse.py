"""Server-Sent Events of the OpenAI face: a live answer relayed chunk by chunk as
the model generates it (`Relay`), or a cached answer replayed as a short stream
(`replay`). Each event is `data: <chat.completion.chunk>`; the stream ends with
`data: [DONE]`; a failure after the first byte is reported in-band as
`data: {"error": ...}` (the status line is already sent), never as exception text.
"""
from __future__ import annotations

import json
import logging

from .answering import Answer
from .upstream import UpstreamDown

log = logging.getLogger(__name__)


def sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


DONE = sse("[DONE]")


def finish_reason(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


def usage(prompt: int | None, completion: int | None) -> dict:
    prompt, completion = prompt or 0, completion or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def chunk(completion_id: str, created: int, model: str, delta: dict | None, finish: str | None = None,
          used: dict | None = None) -> dict:
    body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None,
                                                  "finish_reason": finish}]}
    if used is not None:
        body["usage"] = used
    return body


def replay(answer: Answer, completion_id: str, created: int, include_usage: bool) -> list[str]:
    """A cached answer as a stream: role, the whole text in one chunk, finish, usage."""
    model = answer.model or ""
    events = [chunk(completion_id, created, model, {"role": "assistant", "content": ""}),
              chunk(completion_id, created, model, {"content": answer.result}),
              chunk(completion_id, created, model, {}, finish_reason(answer.finish_reason))]
    if include_usage:
        events.append(chunk(completion_id, created, model, None,
                            used=usage(answer.prompt_tokens, answer.completion_tokens)))
    return [sse(e) for e in events] + [DONE]


class Relay:
    """The model's chunks passed on one by one as they arrive, under this request's
    id; the usage chunk only when the client asked for it. The WSGI server calls
    `close()` when the response ends or the client goes away: that drops the
    upstream connection (the model cancels the generation) and frees the slot."""

    def __init__(self, streaming, completion_id: str, include_usage: bool):
        self.streaming, self.completion_id, self.include_usage = streaming, completion_id, include_usage

    def __iter__(self):
        try:
            for event in self.streaming.events():
                if "error" in event:
                    yield sse({"error": _stream_error(event["error"])})
                    break
                if not event.get("choices") and "usage" in event and not self.include_usage:
                    continue
                if not self.include_usage:
                    event.pop("usage", None)
                yield sse({**event, "id": self.completion_id})
        except UpstreamDown:
            yield sse({"error": {"message": "the model stopped answering in the middle of the stream; retry",
                                 "type": "service_unavailable", "param": None, "code": "model_unavailable"}})
        except Exception:  # the status line is sent: report in-band, never the exception text
            log.exception("stream relay failed")
            yield sse({"error": {"message": f"an internal error occurred; quote request id {self.completion_id}",
                                 "type": "server_error", "param": None, "code": "internal_error"}})
        yield DONE

    def close(self) -> None:
        self.streaming.close()


def _stream_error(error: object) -> dict:
    """The model's in-band error, kept to OpenAI's four fields (its messages are written for clients)."""
    error = error if isinstance(error, dict) else {}
    return {"message": str(error.get("message") or "the model failed while answering"),
            "type": str(error.get("type") or "server_error"), "param": error.get("param"),
            "code": str(error.get("code") or "internal_error")}
