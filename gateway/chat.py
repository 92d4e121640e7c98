"""A validated chat request (openai_schema.ChatCompletionRequest) becomes a model
call: the cache key, whether an answer may be reused, and the upstream request.

Images are fetched or base64-decoded here (remote_images.py) and hashed for the
key; they are judged and normalised (images.py, exactly as uploads are) and the
image token budget is checked (budget.py) only when the upstream request is
built, on a cache miss. A bad image is the client's error: 400
invalid_request_error naming the part, as OpenAI answers it.

An answer sampled (temperature > 0) without a seed is not reused unless
OPENAI_CACHE_SAMPLED says so: a client that samples twice expects two samples.
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Callable

from llava_common import params, schemas

from . import budget
from .cache import chat_cache_key
from .images import normalise
from .openai_schema import ChatCompletionRequest, ImagePart
from .remote_images import image_bytes
from .statuses import VALIDATION_ERROR, Refusal, invalid

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass(frozen=True)
class ChatCall:
    key: str              # the cache key (images as hashes of their original bytes)
    stream: bool
    include_usage: bool
    reuse: bool           # may be answered from the cache and shared with an identical call in flight
    payload: Callable[[], dict]


def plan(request: ChatCompletionRequest, settings, served: tuple[str, ...]) -> ChatCall:
    check_model(request.model, settings, served)
    sampling = _sampling(request)
    messages, keyed, images = _messages(request, settings)
    stream = bool(request.stream)

    def payload() -> dict:
        sizes = []
        for original, param, part in images:
            image = _judged(lambda: normalise(original, settings.max_upload_bytes, settings.max_image_pixels,
                                              settings.max_image_side), param)
            sizes.append((image.width, image.height))
            part["image_url"] = {"url": f"data:{image.mime};base64," + base64.b64encode(image.data).decode("ascii")}
        budget.check(sizes, sampling["max_tokens"], settings.context_tokens)
        built = {"messages": messages, **sampling, "stream": stream}
        if stream:
            built["stream_options"] = {"include_usage": True}  # the gateway needs usage to cache the answer
        if output is not None:  # the schema as checked (llava_common/schemas.py)
            built["response_format"] = ({"type": "json_object"} if output.kind == schemas.JSON_OBJECT else
                                        {"type": "json_schema", "json_schema": {"name": output.name or "answer",
                                                                                "schema": output.schema,
                                                                                "strict": output.strict}})
        if settings.upstream_model:
            built["model"] = settings.upstream_model
        return built

    output = request.response_format.output if request.response_format is not None else None
    keyed_params = {**sampling, "response_format": output.key} if output is not None else sampling
    key = chat_cache_key(keyed, keyed_params, settings.upstream_model)
    reuse = sampling["temperature"] == 0 or request.seed is not None or settings.cache_sampled
    include_usage = bool(request.stream_options and request.stream_options.include_usage)
    return ChatCall(key, stream, include_usage, reuse, payload)


def check_model(model: str | None, settings, served: tuple[str, ...]) -> None:
    if model is None:
        return
    accepted = served + settings.model_aliases
    if not served or "*" in settings.model_aliases or model in accepted:
        return  # with no served name known (upstream down) the call itself will say so
    raise Refusal(VALIDATION_ERROR, 404, f"the model `{model}` does not exist here; this service serves "
                  f"{', '.join(f'`{m}`' for m in accepted)} (GET /v1/models). Set your client's model to it, "
                  "or add the name to OPENAI_MODEL_ALIASES", code="model_not_found", param="model")


def _sampling(request: ChatCompletionRequest) -> dict:
    """Every parameter that changes the answer: sent upstream and part of the key."""
    name = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
    max_tokens = getattr(request, name) or params.MAX_TOKENS_DEFAULT
    sampling = {
        "max_tokens": max_tokens,
        "temperature": params.CHAT_TEMPERATURE_DEFAULT if request.temperature is None else request.temperature,
        "top_p": params.TOP_P_DEFAULT if request.top_p is None else request.top_p,
    }
    for optional in ("seed", "stop", "top_k", "min_tokens"):
        if getattr(request, optional) is not None:
            sampling[optional] = getattr(request, optional)
    if sampling.get("min_tokens", 0) > max_tokens:
        raise invalid(f"`min_tokens` ({sampling['min_tokens']}) must not exceed `{name}` ({max_tokens})",
                      param="min_tokens")
    return sampling


def _messages(request: ChatCompletionRequest, settings) -> tuple[list, list, list]:
    """(upstream messages, the same with images as hashes for the cache key, and
    (original bytes, param, upstream part) per image: the parts are filled on a miss)."""
    messages, keyed, images = [], [], []
    for i, message in enumerate(request.messages):
        role = ROLES[message.role]
        content, key_content = [], []
        for j, part in enumerate(message.content):
            if isinstance(part, ImagePart):
                param = f"messages[{i}].content[{j}].image_url"
                if len(images) >= settings.max_images:
                    raise invalid(f"at most {settings.max_images} images per request", param=param)
                original = _judged(lambda: image_bytes(part.image_url.url, settings, param), param)
                content.append({"type": "image_url"})
                images.append((original, param, content[-1]))
                key_content.append({"image": hashlib.sha256(original).hexdigest()})
            else:
                content.append({"type": "text", "text": part.text})
                key_content.append(content[-1])
        messages.append({"role": role, "content": content})
        keyed.append({"role": role, "content": key_content})
    return messages, keyed, images


def _judged(get, param: str):
    """`get()`, with an image refusal as OpenAI answers bad image content: 400
    invalid_request_error naming the part (the code and the message stay)."""
    try:
        return get()
    except Refusal as refusal:
        refusal.http = 400
        refusal.param = param
        if f"`{param}`" not in refusal.message:
            refusal.message = f"`{param}`: {refusal.message}"
        raise
