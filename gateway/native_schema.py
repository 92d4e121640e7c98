"""The native API's request and answer, as pydantic models: they validate the
upload's fields and produce its part of the OpenAPI document (openapi.py).

`max-tokens` and `temperature` come from the query string or from multipart form
fields (the seed's Spring controller binds them with @RequestParam, which accepts
both); the same model validates them either way.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from llava_common import params, schemas

from . import statuses

PROMPT_MAX_CHARS = 1000
MaxTokens = Annotated[int, Field(alias="max-tokens", ge=params.MAX_TOKENS_RANGE[0], le=params.MAX_TOKENS_RANGE[1],
                                 description="Most tokens in the answer")]
Temperature = Annotated[float, Field(ge=params.TEMPERATURE_RANGE[0], le=params.TEMPERATURE_RANGE[1],
                                     description="Sampling temperature; 0 = greedy (the same answer every time)")]


class AnalyzeParams(BaseModel):
    """The generation parameters, as query parameters (or form fields: AnalyzeForm)."""
    model_config = ConfigDict(allow_inf_nan=False, extra="ignore", populate_by_name=True)

    max_tokens: MaxTokens = params.MAX_TOKENS_DEFAULT
    temperature: Temperature = params.ANALYZE_TEMPERATURE_DEFAULT


class AnalyzeForm(AnalyzeParams):
    """The multipart/form-data body of POST /api/v1/multimodal/analyze."""
    model_config = ConfigDict(title="AnalyzeForm")

    image: bytes = Field(description="JPEG, PNG, WebP or GIF (first frame), judged by its bytes, not its name "
                                     "or Content-Type; at most MAX_UPLOAD_BYTES and MAX_IMAGE_PIXELS")
    prompt: str | None = Field(None, min_length=1, max_length=PROMPT_MAX_CHARS,
                               description=f"The question, 1 to {PROMPT_MAX_CHARS} characters after trimming; "
                                           "required unless `preset` is given (then it adds to the preset's)")
    preset: str | None = Field(None, max_length=64, description="A ready-made task (GET /api/v1/multimodal/presets): "
                                                               "its question, and `data` following its schema")
    json_schema: str | None = Field(None, alias="schema", max_length=schemas.MAX_SCHEMA_BYTES,
                                    description="A JSON Schema (as JSON text, a field or a file part): the answer is "
                                                "JSON that follows it, parsed into `data`. Not with `preset`")

    @field_validator("prompt", mode="before")
    @classmethod
    def trimmed(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        prompt = value.strip()
        if not prompt:
            raise PydanticCustomError("invalid_request", f"`prompt` is empty; it must hold 1 to {PROMPT_MAX_CHARS} "
                                                         "characters")
        if len(prompt) > PROMPT_MAX_CHARS:
            raise PydanticCustomError("invalid_request", f"`prompt` is {len(prompt)} characters after trimming; "
                                                         f"the limit is {PROMPT_MAX_CHARS}")
        return prompt


class Usage(BaseModel):
    promptTokens: int
    completionTokens: int


class AnalysisResult(BaseModel):
    """Every answer of the native API, errors included (the seed's AnalysisResult)."""
    status: Literal[statuses.SUCCESS, statuses.CACHED, statuses.FALLBACK, statuses.VALIDATION_ERROR,
                    statuses.OVERLOADED, statuses.SERVICE_UNAVAILABLE, statuses.UNAUTHORIZED,
                    statuses.INTERNAL_ERROR]
    result: str = Field(description="The answer, the fallback message, or what is wrong")
    requestId: str
    model: str | None
    usage: Usage | None = Field(description="null when the model did not answer")
    latencyMs: int = Field(ge=0)
    data: Any = Field(None, description="With `preset` or `schema`: the answer as parsed JSON, following the "
                                        "schema; null otherwise, and when the answer was cut at max-tokens")


class PresetInfo(BaseModel):
    name: str
    description: str
    prompt: str = Field(description="The question the preset asks (the client's `prompt` follows it)")
    schema_: dict = Field(alias="schema", description="The JSON Schema `data` follows")
    maxTokens: int = Field(description="The default max-tokens with this preset: its longest complete answer")


class PresetList(BaseModel):
    presets: list[PresetInfo]


class Problem(BaseModel):
    """An error as RFC 9457 problem details, for clients whose Accept header asks for
    application/problem+json (Spring's ProblemDetail); the answer status is `code`."""
    type: str = Field("about:blank", description="about:blank: the HTTP status says what kind of problem")
    title: str = Field(description="The HTTP status's reason phrase")
    status: int = Field(description="The HTTP status code")
    detail: str = Field(description="What is wrong, for a person")
    instance: str = Field(description="The request path")
    code: str = Field(description="The answer status: VALIDATION_ERROR, OVERLOADED, ...")
    requestId: str
    param: str | None = Field(None, description="The request part at fault (prompt, preset, schema, max-tokens, "
                                                "temperature, image), when the refusal names one")
