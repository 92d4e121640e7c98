"""The OpenAI face's requests and answers as pydantic models: they validate chat
requests and produce this face's part of the OpenAPI document (openapi.py), so
the document says exactly what is accepted, what is refused and what is ignored.

- Accepted: text and image_url parts, several turns, max_tokens /
  max_completion_tokens, temperature, top_p, seed, stop, stream,
  stream_options.include_usage, response_format (text, json_object, json_schema:
  the answer's content is JSON that follows the schema, enforced by the model
  process token by token), n = 1, and vLLM's top_k and min_tokens.
- Refused with 400 when set to anything but their empty or default value
  (REFUSED): tools and function calling, logprobs, logit_bias, penalties, audio,
  predicted outputs, web search. A schema the model cannot enforce: 400 naming why.
- Accepted and ignored (they do not change the answer): user, metadata, store,
  service_tier, parallel_tool_calls, reasoning_effort and any other field.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from llava_common import params, schemas

# Discriminator values of messages and content parts (they appear in pydantic's error paths).
TAGS = frozenset({"text", "image_url", "user", "system", "developer", "assistant"})
UNSUPPORTED_PARAMETER, UNSUPPORTED_VALUE = "unsupported_parameter", "unsupported_value"
REFUSED_TEXT = "Not supported: any value but the empty/default one is refused with 400 unsupported_parameter"
# Longest `model` name accepted (a 5 MB one used to be logged and echoed whole).
MODEL_NAME_CHARS = 256
# Values of a refused field that ask for nothing (clients often send empty defaults).
_EMPTY = (None, False, 0, "", "none", "auto", [], {}, ["text"])


class _Open(BaseModel):
    # strict: JSON types as sent ("12" is not 12); unknown fields are accepted and ignored.
    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)


class TextPart(_Open):
    type: Literal["text"]
    text: str


class ImageUrl(_Open):
    url: str = Field(description="data:image/...;base64,<data> or raw base64; http(s) URLs only for hosts on "
                                 "REMOTE_IMAGE_HOSTS")
    detail: Literal["auto", "low", "high"] | None = Field(None, description="Accepted and ignored: LLaVA-1.6 "
                                                                            "tiles every image the same way")


def _url_object(value: object) -> object:
    return {"url": value} if isinstance(value, str) else value  # some clients send the URL itself


class ImagePart(_Open):
    type: Literal["image_url"]
    image_url: Annotated[ImageUrl, BeforeValidator(_url_object, json_schema_input_type=ImageUrl | str)]


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]


def _parts(value: object) -> object:
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    if isinstance(value, list) and value:
        return value
    raise PydanticCustomError("invalid_request", "`{param}` must be a string or a non-empty array of parts")


def _text_parts(value: object) -> object:
    value = _parts(value)
    if any(isinstance(part, dict) and part.get("type") == "image_url" for part in value):
        raise PydanticCustomError("invalid_request", "`{param}`: images are accepted in user messages only")
    return value


def _content(*parts):
    listed = Annotated[list[parts[0] if len(parts) == 1 else Annotated[parts[0] | parts[1],
                                                                      Field(discriminator="type")]],
                       Field(min_length=1)]
    check = _parts if len(parts) > 1 else _text_parts
    return Annotated[listed, BeforeValidator(check, json_schema_input_type=str | listed)]


class UserMessage(_Open):
    role: Literal["user"]
    content: _content(TextPart, ImagePart) = Field(description="A string, or text and image_url parts")


class OtherMessage(_Open):
    role: Literal["system", "developer", "assistant"] = Field(description="developer counts as system")
    content: _content(TextPart) = Field(description="A string, or text parts (images only in user messages)")


Message = Annotated[UserMessage | OtherMessage, Field(discriminator="role")]


class StreamOptions(_Open):
    include_usage: bool | None = Field(None, description="A last chunk with `usage` (and `choices: []`)")


class JsonSchemaFormat(_Open):
    name: str | None = Field(None, max_length=64, description="A name for the schema")
    description: str | None = None
    schema_: dict = Field(alias="schema", description="A JSON Schema (2020-12); at most 16 KiB and 16 levels deep")
    strict: bool | None = Field(None, description="Accepted; the schema is always enforced, token by token")


class ResponseFormat(_Open):
    type: Literal["text", "json_object", "json_schema"] = Field(
        description="text (default); json_object: the answer is a JSON object; json_schema: JSON that follows "
                    "`json_schema.schema`, by construction")
    json_schema: JsonSchemaFormat | None = None
    _output: Any = PrivateAttr(None)

    @model_validator(mode="after")
    def schema_checked(self) -> "ResponseFormat":
        """The same checks the model process makes (llava_common/schemas.py), before anything is queued."""
        try:
            self._output = schemas.parse_response_format(self.model_dump(by_alias=True, exclude_none=True))
        except schemas.SchemaError as error:
            raise PydanticCustomError("invalid_request", "`response_format`: {reason}", {"reason": str(error)})
        return self

    @property
    def output(self) -> "schemas.StructuredOutput | None":
        return self._output


def _stop_list(value: object) -> object:
    if value == []:
        return None
    return [value] if isinstance(value, str) else value


StopText = Annotated[str, Field(min_length=1, max_length=params.MAX_STOP_CHARS)]
StopList = Annotated[list[StopText], Field(max_length=params.MAX_STOP_SEQUENCES)]


def _integral(value: object) -> object:
    """JSON Schema's integer includes 512.0: accept what the document accepts."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def Int(lo: int, hi: int):  # noqa: N802 (a type)
    """A whole number from lo to hi; the validator wraps the constrained int, so the
    document keeps its minimum and maximum."""
    return Annotated[int, Field(ge=lo, le=hi), BeforeValidator(_integral)]


MaxTokens = Int(*params.MAX_TOKENS_RANGE)
Nothing = Annotated[None, Field(description=REFUSED_TEXT)]


class ChatCompletionRequest(_Open):
    model: str | None = Field(None, max_length=MODEL_NAME_CHARS,
                              description="A name from GET /v1/models or OPENAI_MODEL_ALIASES")
    messages: list[Message] = Field(min_length=1, description="The last one from the user")
    max_tokens: MaxTokens | None = Field(None, description=f"Default {params.MAX_TOKENS_DEFAULT}")
    max_completion_tokens: MaxTokens | None = Field(None, description="Same as max_tokens; wins when both are sent")
    temperature: float | None = Field(None, ge=params.TEMPERATURE_RANGE[0], le=params.TEMPERATURE_RANGE[1],
                                      description=f"Default {params.CHAT_TEMPERATURE_DEFAULT:g}; 0 = greedy. "
                                                  "An answer sampled (> 0) without a seed is not cached")
    top_p: float | None = Field(None, gt=0, le=1, description=f"Default {params.TOP_P_DEFAULT:g}")
    seed: Int(*params.SEED_RANGE) | None = Field(None, description="Sampling seed: the same seed, request and "
                                                               "model give the same answer (part of the cache key)")
    stop: Annotated[StopList | None, BeforeValidator(_stop_list, json_schema_input_type=StopText | StopList | None)] \
        = Field(None, description="Up to 4 sequences that end the answer (not included in it)")
    n: Int(1, 1) | None = Field(None, description="Only 1")
    stream: bool | None = Field(None, description="Server-Sent Events, one chunk per token")
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    top_k: Int(*params.TOP_K_RANGE) | None = Field(None, description="vLLM's extension: sample from the k most "
                                                                 "likely tokens (0 or -1: all)")
    min_tokens: Int(0, params.MAX_TOKENS_RANGE[1]) | None = Field(None, description="vLLM's extension: no end of "
                                                                                "answer before this many tokens")
    # Refused unless empty (see the module docstring).
    tools: Annotated[list[Any] | None, Field(max_length=0, description=REFUSED_TEXT)] = None
    tool_choice: Annotated[Literal["none", "auto"] | None, Field(description=REFUSED_TEXT)] = None
    functions: Annotated[list[Any] | None, Field(max_length=0, description=REFUSED_TEXT)] = None
    function_call: Annotated[Literal["none", "auto"] | None, Field(description=REFUSED_TEXT)] = None
    logprobs: Annotated[Literal[False] | None, Field(description=REFUSED_TEXT)] = None
    top_logprobs: Annotated[Int(0, 0) | None, Field(description=REFUSED_TEXT)] = None
    logit_bias: Annotated[dict[str, Any] | None, Field(max_length=0, description=REFUSED_TEXT)] = None
    presence_penalty: Annotated[float | None, Field(ge=0, le=0, description=REFUSED_TEXT)] = None
    frequency_penalty: Annotated[float | None, Field(ge=0, le=0, description=REFUSED_TEXT)] = None
    modalities: Annotated[list[Literal["text"]] | None, Field(description=REFUSED_TEXT)] = None
    audio: Nothing = None
    prediction: Nothing = None
    web_search_options: Nothing = None

    @field_validator("tools", "tool_choice", "functions", "function_call", "logprobs", "top_logprobs", "logit_bias",
                     "presence_penalty", "frequency_penalty", "modalities", "audio", "prediction",
                     "web_search_options", mode="before")
    @classmethod
    def refused(cls, value: object, info: ValidationInfo) -> object:
        if not any(value == empty and type(value) is type(empty) for empty in _EMPTY) and not _zero(value):
            raise PydanticCustomError(UNSUPPORTED_PARAMETER, "`{name}` is not supported by this service",
                                      {"name": info.field_name})
        return value

    @field_validator("n", mode="before")
    @classmethod
    def one_choice(cls, value: object) -> object:
        if value not in (None, 1) or isinstance(value, bool):
            raise PydanticCustomError(UNSUPPORTED_VALUE, "only n=1 is supported")
        return value

    @field_validator("messages")
    @classmethod
    def user_last(cls, messages: list) -> list:
        if messages[-1].role != "user":
            raise PydanticCustomError("invalid_request", "the last message must come from the user")
        return messages


def _zero(value: object) -> bool:
    return isinstance(value, float) and value == 0.0


REFUSED = ("tools", "tool_choice", "functions", "function_call", "logprobs", "top_logprobs", "logit_bias",
           "presence_penalty", "frequency_penalty", "modalities", "audio", "prediction", "web_search_options")


# --------------------------------------------------------------------- answers

class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length"]


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice] = Field(min_length=1, max_length=1)
    usage: CompletionUsage


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None


class ChatCompletionChunk(BaseModel):
    """One `data:` event of a stream (then `data: [DONE]`)."""
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice] = Field(description="Empty in the usage chunk")
    usage: CompletionUsage | None = Field(None, description="Only in the last chunk, with "
                                                            "stream_options.include_usage")


class Model(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[Model]


class ErrorDetail(BaseModel):
    message: str = Field(description="What is wrong, for a person; never exception text")
    type: str = Field(description="invalid_request_error, authentication_error, rate_limit_error, "
                                  "service_unavailable, server_error")
    param: str | None = Field(description="The field at fault, e.g. messages[0].content[1].image_url")
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail
