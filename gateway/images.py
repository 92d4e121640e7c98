"""Judge an upload by its bytes and normalise it for the model.

The format is read from the file's own signature, never from its name or
Content-Type. Only JPEG, PNG, WebP and GIF (first frame) are decoded: every other
Pillow plugin is attack surface the model does not need. The pixel count comes from
the header and is checked before any pixel is decoded, which stops decompression
bombs. Accepted images leave as RGB JPEG: EXIF orientation applied, alpha flattened
onto white, 16-bit scaled to 8-bit, long side scaled to fit the model.
"""
from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from .statuses import invalid

ACCEPTED = ("JPEG", "PNG", "WEBP", "GIF")
UPSTREAM_MIME = "image/jpeg"
# Quality of the JPEG sent upstream: visually lossless; the model sees 336-px tiles.
UPSTREAM_JPEG_QUALITY = 90
# What Pillow's decoders raise on truncated or corrupt data.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError)

# Hand-written (Pillow cannot name a format it is not allowed to open, and opening
# with every plugin is what the allow-list avoids): signatures of the accepted
# formats and of the common refused ones, so a refusal can say what was sent.
_SIGNATURES = (
    (0, b"\xff\xd8\xff", "JPEG"), (0, b"\x89PNG\r\n\x1a\n", "PNG"), (0, b"GIF87a", "GIF"), (0, b"GIF89a", "GIF"),
    (8, b"WEBP", "WEBP"), (0, b"BM", "BMP"), (0, b"II*\x00", "TIFF"), (0, b"MM\x00*", "TIFF"),
    (4, b"ftypheic", "HEIC"), (4, b"ftypheix", "HEIC"), (4, b"ftypmif1", "HEIF"), (4, b"ftypavif", "AVIF"),
    (0, b"%PDF", "PDF"), (0, b"\x00\x00\x01\x00", "ICO"), (0, b"8BPS", "PSD"), (0, b"<svg", "SVG"),
    (0, b"<?xml", "XML/SVG"), (0, b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (0, b"qoif", "QOI"),
)


@dataclass(frozen=True)
class Normalised:
    data: bytes            # what goes upstream
    mime: str
    width: int
    height: int
    source_format: str


def sniff(data: bytes) -> str | None:
    for offset, magic, name in _SIGNATURES:
        if data[offset:offset + len(magic)] == magic and (name != "WEBP" or data[:4] == b"RIFF"):
            return name
    return None


def normalise(data: bytes, max_bytes: int, max_pixels: int, max_side: int) -> Normalised:
    if not data:
        raise invalid("the image part is empty")
    if len(data) > max_bytes:
        raise invalid(f"the image is {len(data)} bytes; the limit is {max_bytes} bytes", 413)
    kind = sniff(data)
    if kind not in ACCEPTED:
        what = f"a {kind} file" if kind else "not a recognised image"
        raise invalid(f"the image is {what}; accepted formats are {', '.join(ACCEPTED)}", 415)
    try:
        image = Image.open(io.BytesIO(data), formats=[kind])
    except Image.DecompressionBombError:  # Pillow's own header check (over 2 x its limit) came first
        raise invalid(f"the image has far more pixels than allowed; the limit is {max_pixels:,}", 413) from None
    except (UnidentifiedImageError, *_DECODE_ERRORS):
        raise invalid(f"the image looks like {kind} but its header is truncated or corrupt") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise invalid(f"the image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise invalid(f"the image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}", 413)
    try:
        if kind == "JPEG":  # decode at 1/2, 1/4 or 1/8 scale when that still covers max_side
            scale = min(1.0, max_side / max(width, height))
            image.draft("RGB", (max(1, int(width * scale)), max(1, int(height * scale))))
        image.load()  # first frame only (GIF, animated WebP)
        image = _to_rgb(ImageOps.exif_transpose(image))
    except Image.DecompressionBombError:
        raise invalid(f"the image is {width}x{height} pixels, over the decoder's limit", 413) from None
    except _DECODE_ERRORS:
        raise invalid(f"the {kind} image is truncated or corrupt; it cannot be decoded") from None
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=UPSTREAM_JPEG_QUALITY)
    return Normalised(out.getvalue(), UPSTREAM_MIME, image.width, image.height, kind)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I;16") or image.mode == "I":
        # 16-bit grey: scale to 8 bits (a plain convert would clip everything above 255 to white).
        image = image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image if image.mode == "RGB" else image.convert("RGB")
