"""What the gateway and the supervisor rely on from a model process, written once:
the checks that tests/test_model_contract.py runs against the real llava_server.py
and against every fake that stands in for it, and the bodies the fakes answer
with. Values are the documented ones (docs/model-api.md: /health; the error table with
its Retry-After column), written here, not imported from the code under test."""
from __future__ import annotations

# docs/model-api.md: code -> (HTTP status, Retry-After) for the codes the gateway acts on.
REFUSALS = {"queue_full": (429, "1"), "model_loading": (503, "10"), "shutting_down": (503, "5"),
            "out_of_memory": (503, "2"), "context_length_exceeded": (400, None)}
ERROR_FIELDS = {"message", "type", "param", "code"}
# GET /health: 200 once ready, with at least these fields; 503 while loading, with a
# `progress` object that changes only on real progress (the supervisor's stall check).
HEALTHY_FIELDS = {"status", "model", "device", "dtype", "contextLength", "engine", "maxModelLen", "decode",
                  "running", "waiting"}
LOADING_FIELDS = {"status", "phase", "progress", "elapsedSeconds"}
PROGRESS_FIELDS = {"step", "detail", "bars"}


# ---------------------------------------------------------------- bodies for the fakes

def healthy(model: str) -> dict:
    return {"status": "healthy", "model": model, "device": "cpu", "dtype": "float32", "contextLength": 4096,
            "engine": "continuous", "maxModelLen": 4096, "rows": 8, "cudaGraphs": "off", "decode": "eager",
            "running": 0, "waiting": 0}


def loading(model: str, step: int = 1, phase: str = "loading weights", elapsed_s: float = 0.0) -> dict:
    return {"status": "loading", "model": model, "phase": phase,
            "progress": {"step": step, "detail": "", "bars": []}, "elapsedSeconds": round(elapsed_s, 1)}


def error(code: str, message: str, type_: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def refusal(code: str, message: str) -> tuple[dict, int, dict]:
    """A Flask view's return value for a refusal: body, status, Retry-After header."""
    status, retry_after = REFUSALS[code]
    return error(code, message), status, ({"Retry-After": retry_after} if retry_after else {})


# ---------------------------------------------------------------- checks

def check_healthy(response) -> dict:
    body = response.json()
    assert response.status_code == 200 and body["status"] == "healthy", (response.status_code, body)
    assert HEALTHY_FIELDS <= set(body), f"missing {HEALTHY_FIELDS - set(body)}"
    return body


def check_loading(response) -> dict:
    body = response.json()
    assert response.status_code == 503 and body["status"] == "loading", (response.status_code, body)
    assert LOADING_FIELDS <= set(body), f"missing {LOADING_FIELDS - set(body)}"
    assert PROGRESS_FIELDS <= set(body["progress"]) and isinstance(body["progress"]["step"], int)
    return body


def check_refusal(response, code: str) -> dict:
    status, retry_after = REFUSALS[code]
    body = response.json()
    assert response.status_code == status and set(body["error"]) == ERROR_FIELDS, (response.status_code, body)
    assert body["error"]["code"] == code and body["error"]["message"]
    assert response.headers.get("Retry-After") == retry_after, (code, response.headers.get("Retry-After"))
    return body


def check_answer(response) -> dict:
    body = response.json()
    assert response.status_code == 200 and body["object"] == "chat.completion", body
    choice = body["choices"][0]
    assert isinstance(choice["message"]["content"], str) and choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    return body


def check_models(response) -> list[str]:
    body = response.json()
    assert response.status_code == 200 and body["object"] == "list"
    return [m["id"] for m in body["data"]]
