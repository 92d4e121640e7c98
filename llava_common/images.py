"""Image acceptance rules, written once for the gateway and the model process.

An image is judged by its bytes, never by a file name or a Content-Type. Only
JPEG, PNG, WebP and GIF (first frame) are decoded: every other Pillow plugin is
decoder attack surface the model does not need. The pixel count comes from the
header and is checked before any pixel is decoded, which stops decompression
bombs. A decoded image leaves as RGB: EXIF orientation applied, alpha flattened
onto white, 16-bit grey scaled to 8 bits.

Refusals raise `ImageRejected` with one of three codes; each role maps them onto
its own error contract (the gateway's statuses, the model process's ApiError).
"""
from __future__ import annotations

import base64
import binascii
import io
import math
import re
import struct
import warnings
import zlib
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

ACCEPTED = ("JPEG", "PNG", "WEBP", "GIF")
ACCEPTED_TEXT = "JPEG, PNG, WebP or GIF"

# Refusal codes: the same names in the gateway's and the model process's errors.
INVALID_IMAGE = "invalid_image"                 # corrupt, truncated, empty, not base64
UNSUPPORTED_FORMAT = "unsupported_image_format"  # not one of ACCEPTED
TOO_LARGE = "image_too_large"                   # over the byte or pixel limit

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
# What Pillow's decoders raise on truncated or corrupt data.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError)
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[^,;]*)*?;base64,(?P<data>.*)$", re.S | re.I)
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_SCALABLE_MODES = ("RGB", "RGBA", "L", "LA")  # resized as they are, alpha premultiplied
_ORIENTATION_TAG = 0x0112
_ORIENTATIONS = range(2, 9)  # EXIF orientations that transpose the image
_TURNED = (5, 6, 7, 8)      # those that swap width and height


class ImageRejected(ValueError):
    """An image refused, with a code (above) and a message written for the client."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Decoded:
    image: Image.Image    # RGB, oriented, first frame
    kind: str             # one of ACCEPTED


def sniff(data: bytes) -> str | None:
    """The format named by the file's own signature, accepted or not; None if unknown."""
    for offset, magic, name in _SIGNATURES:
        if data[offset:offset + len(magic)] == magic and (name != "WEBP" or data[:4] == b"RIFF"):
            return name
    return None


@dataclass(frozen=True)
class Header:
    """What an image's header says, before any pixel is decoded."""
    kind: str             # one of ACCEPTED
    width: int            # as shown: EXIF orientation applied when the header carries it
    height: int


def probe(data: bytes, max_bytes: int, max_pixels: int, fit_side: int | None = None) -> Header:
    """Judge an image by its header alone (format, size, pixel limit) exactly as
    `decode()` with the same arguments would: cheap, so a request's images can all
    be judged, and their token cost counted, before any of them is decoded."""
    kind, image, size = _open(data, max_bytes, max_pixels, fit_side)
    return Header(kind, *_oriented(size, _orientation(image)))


def fit(width: int, height: int, side: int) -> tuple[int, int]:
    """The size an image is scaled to so that its long side fits `side`: Pillow's
    thumbnail rounding (the aspect ratio kept as closely as whole pixels allow)."""
    if width <= side and height <= side:
        return width, height
    aspect = width / height
    if aspect >= 1:
        return side, _round_aspect(side / aspect, lambda n: 0 if n == 0 else abs(aspect - side / n))
    return _round_aspect(side * aspect, lambda n: abs(aspect - n / side)), side


def decode(data: bytes, max_bytes: int, max_pixels: int, fit_side: int | None = None) -> Decoded:
    """Judge and decode one image. With `fit_side` the image leaves scaled to
    `fit(width, height, fit_side)` of its header size: a JPEG decodes at 1/2, 1/4 or
    1/8 scale when that still covers it (much faster, and `max_pixels` counts the
    pixels it decodes), and scaling comes before the conversion to RGB, so a large
    RGBA image is flattened small."""
    kind, image, (width, height) = _open(data, max_bytes, max_pixels, fit_side)
    too_many = f"the image has far more pixels than allowed; the limit is {max_pixels:,}"
    try:
        image.load()  # first frame only (GIF, animated WebP)
        orientation = _orientation(image, loaded=True)  # a PNG's late eXIf chunk too
        full = _oriented((width, height), orientation)
        if orientation in _ORIENTATIONS:  # (exif_transpose copies even an upright image: 64 MB for a large RGBA one)
            image = ImageOps.exif_transpose(image)
        if fit_side and max(full) > fit_side:
            return Decoded(_scaled(image, fit(*full, fit_side)), kind)
        return Decoded(to_rgb(image), kind)
    except Image.DecompressionBombError:
        raise ImageRejected(TOO_LARGE, too_many) from None
    except _DECODE_ERRORS:
        raise ImageRejected(INVALID_IMAGE, f"the {kind} image is truncated or corrupt; it cannot be decoded") \
            from None


def _open(data: bytes, max_bytes: int, max_pixels: int,
          fit_side: int | None) -> tuple[str, Image.Image, tuple[int, int]]:
    """(format, the image with only its header read, its size in the file), or
    ImageRejected. A JPEG to be fitted is set to decode at the smallest 1/2, 1/4 or
    1/8 scale that still covers the fit (Pillow's draft mode): the pixel limit
    counts what will be decoded."""
    if not data:
        raise ImageRejected(INVALID_IMAGE, "the image is empty")
    if len(data) > max_bytes:
        raise ImageRejected(TOO_LARGE, f"the image is {len(data)} bytes; the limit is {max_bytes} bytes")
    kind = sniff(data)
    if kind not in ACCEPTED:
        what = f"a {kind} file" if kind else "not a recognised image"
        raise ImageRejected(UNSUPPORTED_FORMAT, f"the image is {what}; accepted formats are {ACCEPTED_TEXT}")
    too_many = f"the image has far more pixels than allowed; the limit is {max_pixels:,}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[kind])  # reads the header only
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(TOO_LARGE, too_many) from None
    except (UnidentifiedImageError, *_DECODE_ERRORS):
        raise ImageRejected(INVALID_IMAGE, f"the image looks like {kind} but its header is truncated or corrupt") \
            from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageRejected(INVALID_IMAGE, f"the image has no pixels ({width}x{height})")
    if kind == "JPEG" and fit_side:
        image.draft("RGB", fit(width, height, fit_side))  # sets the decoded size; decodes nothing
    decoded_w, decoded_h = image.size
    if decoded_w * decoded_h > max_pixels:
        scaled = "" if image.size == (width, height) else f" (decoded at {decoded_w}x{decoded_h})"
        raise ImageRejected(TOO_LARGE, f"the image is {width}x{height}{scaled} = {decoded_w * decoded_h:,} "
                                       f"pixels; the limit is {max_pixels:,}")
    return kind, image, (width, height)


def _orientation(image: Image.Image, loaded: bool = False) -> int:
    """The EXIF (or XMP) orientation the image carries, as exif_transpose reads it;
    before a PNG is loaded only what its header had (its getexif() would decode it)."""
    try:
        if image.format == "PNG" and not loaded and "exif" not in image.info:
            return 1
        return image.getexif().get(_ORIENTATION_TAG, 1)
    except _DECODE_ERRORS:
        return 1


def _oriented(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation in _TURNED else size


def _round_aspect(number: float, key) -> int:
    return max(min(math.floor(number), math.ceil(number), key=key), 1)


def _scaled(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image` scaled to `size` and converted to RGB; modes that scale as they are
    (alpha premultiplied) are scaled first, so the conversion works on few pixels."""
    if image.mode not in _SCALABLE_MODES:
        image = to_rgb(image)
    return to_rgb(image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0))


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in _SIXTEEN_BIT_MODES:
        # 16-bit grey: keep the high byte, as viewers show it. A plain convert would clip
        # everything above 255 to white; stretching min..max would turn a flat grey black.
        image = image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))  # transparent areas read as white
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image if image.mode == "RGB" else image.convert("RGB")


def base64_payload(url: str) -> str:
    """The base64 text of a `data:image/...;base64,` URL, or `url` itself (raw base64:
    clients disagree on which to send). Remote URLs are each role's own business."""
    if url[:5].lower() != "data:":
        return url
    match = _DATA_URL.match(url)
    if not match:
        raise ImageRejected(INVALID_IMAGE, "a data URL must look like data:image/png;base64,<data>")
    return match.group("data")


def b64decode(payload: str, max_bytes: int) -> bytes:
    """Base64 (whitespace allowed) to bytes, refusing what would decode past `max_bytes`."""
    if len(payload) > max_bytes * 4 // 3 + 16:
        raise ImageRejected(TOO_LARGE, f"the image is over the limit of {max_bytes} bytes")
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ImageRejected(INVALID_IMAGE, "the image is not valid base64") from None
