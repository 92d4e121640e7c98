"""Turn a request body into model inputs, refusing bad input with a precise reason.

Two request shapes arrive here: the seed's `/v1/analyze` JSON and OpenAI's chat
completions. Both become a `ChatRequest` (chat-template messages + decoded images +
sampling parameters); `prepare()` then runs the processor (image tiling, prompt
tokens) in the caller's thread, so preprocessing overlaps with generation of the
batch already running, and checks the result against the model's context.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

from llava_common import images as image_rules
from llava_common import params
from llava_common.schemas import SchemaError, StructuredOutput, parse_response_format

from .errors import ApiError

# Vicuna v1's system prompt (llava-v1.6-vicuna), used when a request brings none.
DEFAULT_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
                  "The assistant gives helpful, detailed, and polite answers to the human's questions.")


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float                 # 0 = greedy
    top_p: float = params.TOP_P_DEFAULT
    min_tokens: int = 0
    top_k: int = params.TOP_K_DEFAULT  # 0 or -1 = off
    seed: int | None = None            # the same seed gives the same answer, alone or in a batch
    stop: tuple[str, ...] = ()         # the answer ends before the first of these strings
    response_format: StructuredOutput | None = None   # JSON that follows a schema (grammar.py)


@dataclass
class ChatRequest:
    messages: list            # chat-template messages: {"role", "content": [{"type": "text"|"image", ...}]}
    images: list              # PIL RGB images, in the order of their {"type": "image"} parts
    params: SamplingParams
    stream: bool = False
    include_usage: bool = False
    model: str | None = None


@dataclass
class Prepared:
    """Processor output for one request: tensors with a batch dimension of 1."""
    input_ids: object
    attention_mask: object
    pixel_values: object | None
    image_sizes: object | None
    prompt_tokens: int
    image_tokens: int


class Limits:
    """The request limits a parser enforces (taken from ModelSettings)."""

    def __init__(self, settings):
        self.max_new_tokens = settings.max_new_tokens
        self.max_prompt_chars = settings.max_prompt_chars
        self.max_images = settings.max_images
        self.max_image_bytes = settings.max_image_bytes
        self.max_image_pixels = settings.max_image_pixels


# ---------------------------------------------------------------- images
# The acceptance rules (formats, signatures, 16-bit images, pixel limits) are
# llava_common.images', shared with the gateway; here they become ApiErrors.

def decode_image(data: bytes, limits: Limits, param: str) -> Image.Image:
    """Bytes -> an RGB PIL image, refusing bombs before their pixels are decoded."""
    try:
        return image_rules.decode(data, limits.max_image_bytes, limits.max_image_pixels).image
    except image_rules.ImageRejected as refused:
        raise ApiError(refused.code, refused.message, param) from None


def image_from_url(url: str, limits: Limits, param: str) -> Image.Image:
    """A `data:` URL, or raw base64 (clients disagree on which to send)."""
    if not isinstance(url, str) or not url:
        raise ApiError("invalid_request", "image_url.url must be a non-empty string", param)
    if url.startswith(("http://", "https://")):
        raise ApiError("invalid_image", "the model process does not fetch remote images; "
                       "send the image inline as a data:image/...;base64, URL", param)
    try:
        payload = image_rules.base64_payload(url)
    except image_rules.ImageRejected as refused:
        raise ApiError(refused.code, refused.message, param) from None
    return decode_image(b64decode(payload, param, limits), limits, param)


def b64decode(payload: str, param: str, limits: Limits) -> bytes:
    try:
        return image_rules.b64decode(payload, limits.max_image_bytes)
    except image_rules.ImageRejected as refused:
        raise ApiError(refused.code, refused.message, param) from None


# ---------------------------------------------------------------- parameters

def _int(body: dict, name: str, default: int, lo: int, hi: int) -> int:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ApiError("invalid_request", f"{name} must be an integer", name)
    if not lo <= value <= hi:
        raise ApiError("invalid_request", f"{name} must be between {lo} and {hi} (got {value})", name)
    return value


def _float(body: dict, name: str, default: float, lo: float, hi: float, lo_open: bool = False) -> float:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ApiError("invalid_request", f"{name} must be a finite number", name)
    if value < lo or value > hi or (lo_open and value == lo):
        bound = f"greater than {lo}" if lo_open else f"at least {lo}"
        raise ApiError("invalid_request", f"{name} must be {bound} and at most {hi} (got {value})", name)
    return float(value)


def _params(body: dict, limits: Limits, default_temperature: float) -> SamplingParams:
    max_tokens = body.get("max_completion_tokens")
    name = "max_completion_tokens" if max_tokens is not None else "max_tokens"
    max_tokens = _int(body, name, params.MAX_TOKENS_DEFAULT, params.MAX_TOKENS_RANGE[0], limits.max_new_tokens)
    min_tokens = _int(body, "min_tokens", 0, 0, limits.max_new_tokens)
    if min_tokens > max_tokens:
        raise ApiError("invalid_request", f"min_tokens ({min_tokens}) must not exceed {name} ({max_tokens})",
                       "min_tokens")
    seed = body.get("seed")
    response_format = _response_format(body.get("response_format"))
    if response_format is not None and min_tokens:
        raise ApiError("invalid_request", "min_tokens cannot be combined with a JSON response_format (the schema "
                       "decides where the answer ends)", "min_tokens")
    return SamplingParams(max_tokens=max_tokens, min_tokens=min_tokens, response_format=response_format,
                          temperature=_float(body, "temperature", default_temperature, *params.TEMPERATURE_RANGE),
                          top_p=_float(body, "top_p", params.TOP_P_DEFAULT, 0.0, 1.0, lo_open=True),
                          top_k=_int(body, "top_k", params.TOP_K_DEFAULT, *params.TOP_K_RANGE),
                          seed=None if seed is None else _int(body, "seed", 0, *params.SEED_RANGE),
                          stop=_stop(body.get("stop")))


def _stop(value: object) -> tuple[str, ...]:
    """OpenAI's `stop`: a string or an array of up to 4 strings."""
    if value is None or value == [] or value == "":
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise ApiError("invalid_request", "stop must be a non-empty string or an array of non-empty strings", "stop")
    if len(values) > params.MAX_STOP_SEQUENCES:
        raise ApiError("invalid_request", f"stop holds {len(values)} strings; at most {params.MAX_STOP_SEQUENCES} are "
                       "allowed", "stop")
    if any(len(v) > params.MAX_STOP_CHARS for v in values):
        raise ApiError("invalid_request", f"each stop string may hold at most {params.MAX_STOP_CHARS} characters",
                       "stop")
    return tuple(dict.fromkeys(values))


def _response_format(value: object) -> StructuredOutput | None:
    """OpenAI's response_format: text (None), json_object or json_schema (llava_common/schemas.py)."""
    try:
        return parse_response_format(value)
    except SchemaError as error:
        raise ApiError("invalid_request", str(error), error.param) from None


def _check_text_budget(texts: list[str], limits: Limits) -> None:
    chars = sum(len(t) for t in texts)
    if chars > limits.max_prompt_chars:
        raise ApiError("invalid_request", f"the text is {chars} characters; the limit is {limits.max_prompt_chars}",
                       "messages")


def _system_message(text: str) -> dict:
    return {"role": "system", "content": [{"type": "text", "text": text}]}


# ---------------------------------------------------------------- request shapes

def parse_analyze(body: object, limits: Limits) -> ChatRequest:
    """The seed's call: {"image": base64, "prompt": str, "max_tokens", "temperature"}."""
    if not isinstance(body, dict):
        raise ApiError("invalid_request", "the body must be a JSON object")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ApiError("invalid_request", "prompt is required and must be a non-empty string", "prompt")
    prompt = prompt.strip()
    _check_text_budget([prompt], limits)
    image = body.get("image")
    if not isinstance(image, str) or not image:
        raise ApiError("invalid_request", "image is required: the image file as a base64 string", "image")
    pil = image_from_url(image, limits, "image")
    messages = [_system_message(DEFAULT_SYSTEM),
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    return ChatRequest(messages, [pil], _params(body, limits, params.ANALYZE_TEMPERATURE_DEFAULT),
                       model=body.get("model"))


def parse_chat(body: object, limits: Limits) -> ChatRequest:
    """OpenAI chat completions: text and image_url content parts, several turns."""
    if not isinstance(body, dict):
        raise ApiError("invalid_request", "the body must be a JSON object")
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise ApiError("invalid_request", "messages must be a non-empty array", "messages")
    if body.get("n", 1) not in (1, None):
        raise ApiError("invalid_request", "only n=1 is supported", "n")
    for unsupported in ("tools", "functions", "logprobs"):
        if body.get(unsupported) not in (None, False, [], ""):
            raise ApiError("invalid_request", f"{unsupported} is not supported by this server", unsupported)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError("invalid_request", "stream must be true or false", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise ApiError("invalid_request", "stream_options must be an object", "stream_options")

    messages, images, texts = [], [], []
    for i, message in enumerate(raw_messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise ApiError("invalid_request", f"{where} must be an object", where)
        role = message.get("role")
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant"):
            raise ApiError("invalid_request", f"{where}.role must be system, user or assistant", f"{where}.role")
        parts = _content_parts(message.get("content"), where)
        content = []
        for j, part in enumerate(parts):
            kind = part.get("type")
            if kind == "text":
                if not isinstance(part.get("text"), str):
                    raise ApiError("invalid_request", f"{where}.content[{j}].text must be a string", f"{where}.content")
                texts.append(part["text"])
                content.append({"type": "text", "text": part["text"]})
            elif kind == "image_url" and role == "user":
                ref = part.get("image_url")
                url = ref.get("url") if isinstance(ref, dict) else ref
                if len(images) >= limits.max_images:
                    raise ApiError("invalid_request", f"at most {limits.max_images} images per request",
                                   f"{where}.content")
                images.append(image_from_url(url, limits, f"{where}.content[{j}].image_url"))
                content.append({"type": "image"})
            else:
                raise ApiError("invalid_request", f"{where}.content[{j}].type must be text or image_url "
                               "(images only in user messages)", f"{where}.content")
        messages.append({"role": role, "content": content})
    if messages[-1]["role"] != "user":
        raise ApiError("invalid_request", "the last message must come from the user", "messages")
    if not any(t.strip() for t in texts) and not images:
        raise ApiError("invalid_request", "the messages carry no text and no image", "messages")
    _check_text_budget(texts, limits)
    if messages[0]["role"] != "system":
        messages.insert(0, _system_message(DEFAULT_SYSTEM))
    return ChatRequest(messages, images, _params(body, limits, params.CHAT_TEMPERATURE_DEFAULT), stream=stream,
                       include_usage=bool(options.get("include_usage")), model=body.get("model"))


def _content_parts(content: object, where: str) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and content and all(isinstance(p, dict) for p in content):
        return content
    raise ApiError("invalid_request", f"{where}.content must be a string or a non-empty array of parts",
                   f"{where}.content")


# ---------------------------------------------------------------- processor

def prepare(request: ChatRequest, processor, context_length: int, image_token_id: int) -> Prepared:
    """Chat template + image tiling + tokens, then the context-budget check."""
    text = processor.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(images=request.images or None, text=[text], return_tensors="pt")
    input_ids = inputs["input_ids"]
    prompt_tokens = int(input_ids.shape[1])
    image_tokens = int((input_ids == image_token_id).sum())
    needed = prompt_tokens + request.params.max_tokens
    if needed > context_length:
        detail = f" ({image_tokens} of them for {len(request.images)} image(s))" if request.images else ""
        raise ApiError("context_length_exceeded",
                       f"this request needs {prompt_tokens} prompt tokens{detail} + max_tokens "
                       f"{request.params.max_tokens} = {needed} tokens, over the model's context of {context_length}; "
                       "lower max_tokens, shorten the text or send fewer or smaller images", "max_tokens")
    return Prepared(input_ids=input_ids, attention_mask=inputs["attention_mask"],
                    pixel_values=inputs.get("pixel_values"), image_sizes=inputs.get("image_sizes"),
                    prompt_tokens=prompt_tokens, image_tokens=image_tokens)
