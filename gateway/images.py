"""Judge an upload by its bytes and normalise it for the model.

The acceptance rules (formats, signatures, 16-bit images, pixel limits) are
llava_common.images', shared with the model process. `judge()` reads only the
header: the format, the pixel limit and the size the image will have once scaled
(what its token cost depends on), so a request is refused before any pixel is
decoded. `normalise()` then decodes it, scales it so its long side fits the model
and re-encodes it as an RGB JPEG. A refused image becomes a VALIDATION_ERROR with
the status its code calls for.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from llava_common import images as rules

from .statuses import Refusal, invalid

UPSTREAM_MIME = "image/jpeg"
# Quality of the JPEG sent upstream: visually lossless; the model sees 336-px tiles.
UPSTREAM_JPEG_QUALITY = 90
# HTTP status of each refusal code on the native API (the OpenAI face answers 400).
HTTP_STATUS = {rules.INVALID_IMAGE: 400, rules.UNSUPPORTED_FORMAT: 415, rules.TOO_LARGE: 413}


@dataclass(frozen=True)
class Normalised:
    data: bytes            # what goes upstream
    mime: str
    width: int
    height: int
    source_format: str


def refusal(rejected: rules.ImageRejected) -> Refusal:
    return invalid(rejected.message, HTTP_STATUS[rejected.code], code=rejected.code)


def judge(data: bytes, max_bytes: int, max_pixels: int, max_side: int) -> tuple[int, int]:
    """The size `normalise()` will give the image (width, height), from its header alone."""
    try:
        header = rules.probe(data, max_bytes, max_pixels, fit_side=max_side)
    except rules.ImageRejected as rejected:
        raise refusal(rejected) from None
    return rules.fit(header.width, header.height, max_side)


def normalise(data: bytes, max_bytes: int, max_pixels: int, max_side: int) -> Normalised:
    try:
        decoded = rules.decode(data, max_bytes, max_pixels, fit_side=max_side)
    except rules.ImageRejected as rejected:
        raise refusal(rejected) from None
    image = decoded.image
    if max(image.size) > max_side:  # never: decode() scales to fit
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=UPSTREAM_JPEG_QUALITY)
    return Normalised(out.getvalue(), UPSTREAM_MIME, image.width, image.height, decoded.kind)
