"""Parse and validate the analyze request's parts and query parameters. Every
refusal names the part and says exactly what is wrong."""
from __future__ import annotations

import functools
import math

from .analyze import AnalyzeRequest
from .images import normalise
from .statuses import invalid

PROMPT_MAX_CHARS = 1000
MAX_TOKENS_DEFAULT, MAX_TOKENS_RANGE = 512, (1, 1024)
TEMPERATURE_DEFAULT, TEMPERATURE_RANGE = 0.2, (0.0, 2.0)


def parse_analyze(form, files, args, settings) -> AnalyzeRequest:
    upload = files.get("image")
    if upload is None:
        if "image" in form:
            raise invalid("the `image` part must be a file upload (curl -F image=@photo.jpg), not a text field")
        raise invalid("the `image` part is missing (multipart/form-data file field `image`)")
    prompt = _prompt(form.get("prompt"))
    max_tokens = _max_tokens(args.get("max-tokens"))
    temperature = _temperature(args.get("temperature"))
    # Read one byte past the limit: enough to know it is too large without holding more.
    data = upload.stream.read(settings.max_upload_bytes + 1)
    return AnalyzeRequest(image=data, prompt=prompt, max_tokens=max_tokens, temperature=temperature,
                          normalise=functools.partial(normalise, data, settings.max_upload_bytes,
                                                      settings.max_image_pixels, settings.max_image_side))


def _prompt(raw: str | None) -> str:
    if raw is None:
        raise invalid("the `prompt` part is missing (multipart/form-data text field `prompt`)")
    prompt = raw.strip()
    if not prompt:
        raise invalid("`prompt` is empty; it must hold 1 to 1000 characters")
    if len(prompt) > PROMPT_MAX_CHARS:
        raise invalid(f"`prompt` is {len(prompt)} characters after trimming; the limit is {PROMPT_MAX_CHARS}")
    return prompt


def _max_tokens(raw: str | None) -> int:
    if raw is None:
        return MAX_TOKENS_DEFAULT
    lo, hi = MAX_TOKENS_RANGE
    try:
        value = int(raw.strip())
    except ValueError:
        raise invalid(f"`max-tokens` must be a whole number from {lo} to {hi}; got {raw[:40]!r}") from None
    if not lo <= value <= hi:
        raise invalid(f"`max-tokens` must be from {lo} to {hi}; got {value}")
    return value


def _temperature(raw: str | None) -> float:
    if raw is None:
        return TEMPERATURE_DEFAULT
    lo, hi = TEMPERATURE_RANGE
    try:
        value = float(raw.strip())
    except ValueError:
        raise invalid(f"`temperature` must be a number from {lo:g} to {hi:g}; got {raw[:40]!r}") from None
    if not math.isfinite(value):
        raise invalid(f"`temperature` must be a finite number from {lo:g} to {hi:g}; got {raw[:40]!r}")
    if not lo <= value <= hi:
        raise invalid(f"`temperature` must be from {lo:g} to {hi:g}; got {value:g}")
    return value
