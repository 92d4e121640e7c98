"""A validated chat request (openai_schema.ChatCompletionRequest) becomes a model
call: the cache key, whether an answer may be reused, and the upstream request.

Before anything is decoded: the request's size is checked against its caps
(MAX_MESSAGES, MAX_CONTENT_PARTS, MAX_PROMPT_CHARS), its images are fetched or
base64-decoded (remote_images.py) and hashed for the key, each image is judged
from its header alone (format, pixel limit, the size it will be scaled to), and
the image token budget is checked from those sizes (budget.py): four oversized
images are refused before one of them is decoded. Images are decoded and
normalised (images.py, exactly as uploads are) only when the upstream request is
built, on a cache miss; the original bytes are dropped once they are, so a request
waiting for the model holds only the small normalised JPEGs. Getting and decoding
images happens in an intake slot (intake.py). A bad image is the client's error:
400 invalid_request_error naming the part, as OpenAI answers it; for a remote
image, always the same words (remote_images.unavailable).

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
from .images import judge, normalise
from .logs import printable
from .openai_schema import ChatCompletionRequest, ImagePart
from .remote_images import image_bytes, unavailable
from .statuses import VALIDATION_ERROR, Refusal, invalid

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
# A model name quoted back in an answer is cut to this many characters.
QUOTED_MODEL_CHARS = 80


@dataclass(frozen=True)
class ChatCall:
    key: str              # the cache key (images as hashes of their original bytes)
    stream: bool
    include_usage: bool
    reuse: bool           # may be answered from the cache and shared with an identical call in flight
    payload: Callable[[], dict]


@dataclass
class _Image:
    original: bytes | None    # dropped once normalised
    param: str
    remote: bool
    size: tuple[int, int]     # after scaling, judged from the header
    part: dict                # the upstream content part, filled on a miss


def plan(request: ChatCompletionRequest, settings, served: tuple[str, ...], tenant: str = "",
         intake=None) -> ChatCall:
    """`tenant` scopes the cache key (auth.py); `intake` is the request's intake slot,
    taken before the first image is read."""
    check_model(request.model, settings, served)
    check_size(request, settings)
    sampling = _sampling(request)
    messages, keyed, images = _messages(request, settings, intake)
    budget.check([image.size for image in images], sampling["max_tokens"], settings.context_tokens)
    stream = bool(request.stream)
    output = request.response_format.output if request.response_format is not None else None  # (schemas.py)

    def payload() -> dict:
        sizes = []
        for image in images:
            normalised = _judged(lambda: normalise(image.original, settings.max_upload_bytes,
                                                   settings.max_image_pixels, settings.max_image_side),
                                 image.param, image.remote)
            image.original = None
            sizes.append((normalised.width, normalised.height))
            image.part["image_url"] = {
                "url": f"data:{normalised.mime};base64," + base64.b64encode(normalised.data).decode("ascii")}
        budget.check(sizes, sampling["max_tokens"], settings.context_tokens)  # the same sizes, unless EXIF hid late
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

    keyed_params = {**sampling, "response_format": output.key} if output is not None else sampling
    key = chat_cache_key(keyed, keyed_params, settings.upstream_model, tenant)
    reuse = sampling["temperature"] == 0 or request.seed is not None or settings.cache_sampled
    include_usage = bool(request.stream_options and request.stream_options.include_usage)
    return ChatCall(key, stream, include_usage, reuse, payload)


def check_model(model: str | None, settings, served: tuple[str, ...]) -> None:
    if model is None:
        return
    accepted = served + settings.model_aliases
    if not served or "*" in settings.model_aliases or model in accepted:
        return  # with no served name known (upstream down) the call itself will say so
    raise Refusal(VALIDATION_ERROR, 404, f"the model `{printable(model, QUOTED_MODEL_CHARS)}` does not exist here; "
                  f"this service serves {', '.join(f'`{m}`' for m in accepted)} (GET /v1/models). Set your client's "
                  "model to it, or add the name to OPENAI_MODEL_ALIASES", code="model_not_found", param="model")


def check_size(request: ChatCompletionRequest, settings) -> None:
    """The request caps: messages, content parts and characters of text, over the whole request."""
    if len(request.messages) > settings.max_messages:
        raise invalid(f"the request has {len(request.messages)} messages; at most {settings.max_messages} are "
                      "accepted (MAX_MESSAGES)", param="messages")
    count = sum(len(message.content) for message in request.messages)
    if count > settings.max_parts:
        raise invalid(f"the request has {count} content parts; at most {settings.max_parts} are accepted "
                      "(MAX_CONTENT_PARTS)", param="messages")
    chars = sum(len(part.text) for message in request.messages for part in message.content
                if not isinstance(part, ImagePart))
    if chars > settings.max_prompt_chars:
        raise invalid(f"the messages hold {chars} characters of text; at most {settings.max_prompt_chars} are "
                      "accepted (MAX_PROMPT_CHARS)", param="messages")


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


def _messages(request: ChatCompletionRequest, settings, intake) -> tuple[list, list, list[_Image]]:
    """(upstream messages, the same with images as hashes for the cache key, and the
    images, judged from their headers: their parts are filled on a miss)."""
    messages, keyed, images = [], [], []
    for i, message in enumerate(request.messages):
        role = ROLES[message.role]
        content, key_content = [], []
        for j, part in enumerate(message.content):
            if isinstance(part, ImagePart):
                param = f"messages[{i}].content[{j}].image_url"
                if len(images) >= settings.max_images:
                    raise invalid(f"at most {settings.max_images} images per request", param=param)
                if intake is not None:
                    intake.take()
                original, remote = _judged(lambda: image_bytes(part.image_url.url, settings, param), param)
                size = _judged(lambda: judge(original, settings.max_upload_bytes, settings.max_image_pixels,
                                             settings.max_image_side), param, remote)
                content.append({"type": "image_url"})
                images.append(_Image(original, param, remote, size, content[-1]))
                key_content.append({"image": hashlib.sha256(original).hexdigest()})
            else:
                content.append({"type": "text", "text": part.text})
                key_content.append(content[-1])
        messages.append({"role": role, "content": content})
        keyed.append({"role": role, "content": key_content})
    return messages, keyed, images


def _judged(get, param: str, remote: bool = False):
    """`get()`, with an image refusal as OpenAI answers bad image content: 400
    invalid_request_error naming the part (the code and the message stay; for a
    remote image, the one message that does not say what answered)."""
    try:
        return get()
    except Refusal as refusal:
        if remote:
            raise unavailable(param) from None
        refusal.http = 400
        refusal.param = param
        if f"`{param}`" not in refusal.message:
            refusal.message = f"`{param}`: {refusal.message}"
        raise
