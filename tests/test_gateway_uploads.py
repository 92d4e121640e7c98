"""Hostile and odd uploads, table-driven, through real HTTP: every refusal says
what is wrong with the right status and code; every accepted oddity reaches the
model as a sane RGB JPEG."""
from __future__ import annotations

import base64
import io
import struct
import zlib

import pytest
import requests
from PIL import Image

from tests.gateway_support import ANALYZE, FakeUpstream, gateway

MAX_UPLOAD = 2 * 1024 * 1024


def save(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def rgb(w=64, h=48, color=(200, 30, 30)):
    return Image.new("RGB", (w, h), color)


def png_bomb(side: int = 20000) -> bytes:
    """A real, complete 1-bit PNG of side x side pixels that compresses to ~100 KB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    compressor, row = zlib.compressobj(9), b"\x00" * (1 + side // 8)
    idat = b"".join(compressor.compress(row * 1000) for _ in range(side // 1000)) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def gif_bomb() -> bytes:
    data = bytearray(save(rgb(8, 8).convert("P"), "GIF"))
    data[6:10] = struct.pack("<HH", 65535, 65535)  # logical screen: 4.3 billion pixels
    return bytes(data)


def cmyk_jpeg() -> bytes:
    return save(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG")  # pure red in CMYK


def png16() -> bytes:
    return save(Image.new("I;16", (30, 20), 40000), "PNG")


def animated_gif() -> bytes:
    frames = [rgb(20, 20, (255, 0, 0)).convert("P"), rgb(20, 20, (0, 0, 255)).convert("P")]
    return save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    return save(rgb(40, 20), "JPEG", exif=exif)


def transparent_png() -> bytes:
    return save(Image.new("RGBA", (10, 10), (0, 0, 0, 0)), "PNG")


def palette_transparency() -> bytes:
    image = Image.new("P", (10, 10), 0)
    image.putpalette([0, 0, 0] * 256)
    return save(image, "PNG", transparency=0)


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[:int(len(data) * keep)]


def corrupt_png() -> bytes:
    data = bytearray(save(Image.effect_noise((64, 64), 50).convert("RGB"), "PNG"))
    data[60:90] = b"\xff" * 30  # inside IDAT: a broken zlib stream / bad CRC
    return bytes(data)


NOISE_JPEG = save(Image.effect_noise((320, 240), 60).convert("RGB"), "JPEG", quality=95)


def upstream_image(fake: FakeUpstream) -> Image.Image:
    url = fake.payloads[-1]["messages"][0]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert image.format == "JPEG" and image.mode == "RGB"
    return image


def near(pixel, expected, tolerance=12):
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected))


# (case id, filename, bytes, content type, HTTP code, status, text the result must contain, check of the model's image)
REFUSED = [
    ("empty file", "photo.jpg", b"", "image/jpeg", 400, "the image is empty"),
    ("text named .jpg", "photo.jpg", b"hello, I am not an image\n" * 10, "image/jpeg", 415, "not a recognised image"),
    ("html as png", "x.png", b"<html><body>hi</body></html>", "image/png", 415, "not a recognised image"),
    ("bmp", "photo.bmp", save(rgb(), "BMP"), "image/bmp", 415, "BMP file"),
    ("tiff", "photo.tiff", save(rgb(), "TIFF"), "image/tiff", 415, "TIFF file"),
    ("tiff named .jpg", "photo.jpg", save(rgb(), "TIFF"), "image/jpeg", 415, "TIFF file"),
    ("pdf", "doc.pdf", b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", "application/pdf", 415, "PDF file"),
    ("svg", "logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml", 415, "SVG file"),
    ("ico", "favicon.ico", save(rgb(16, 16), "ICO"), "image/x-icon", 415, "ICO file"),
    ("jpeg cut in half", "photo.jpg", truncated(NOISE_JPEG), "image/jpeg", 400, "truncated or corrupt"),
    ("jpeg header only", "photo.jpg", NOISE_JPEG[:12], "image/jpeg", 400, "truncated or corrupt"),
    ("png cut in half", "photo.png", truncated(save(Image.effect_noise((64, 64), 50), "PNG")), "image/png", 400,
     "truncated or corrupt"),
    ("png corrupt data", "photo.png", corrupt_png(), "image/png", 400, "truncated or corrupt"),
    ("gif cut short", "a.gif", animated_gif()[:30], "image/gif", 400, "truncated or corrupt"),
    ("png decompression bomb", "bomb.png", png_bomb(), "image/png", 413, "the limit is 16,777,216"),
    ("png 8000x8000 bomb", "bomb8k.png", png_bomb(8000), "image/png", 413, "8000x8000 = 64,000,000 pixels"),
    ("gif 65535x65535 screen", "bomb.gif", gif_bomb(), "image/gif", 413, "the limit is 16,777,216"),
    ("over the upload limit", "big.jpg", b"\xff\xd8\xff" + b"\0" * (MAX_UPLOAD + 10), "image/jpeg", 413, "limit"),
]


def check_cmyk(image):
    assert near(image.getpixel((20, 15)), (255, 0, 0), 40)


def check_png16(image):
    assert near(image.getpixel((5, 5)), (156, 156, 156), 3)  # 40000 / 256


def check_first_frame(image):
    assert near(image.getpixel((10, 10)), (255, 0, 0), 30)


def check_rotated(image):
    assert image.size == (20, 40)


def check_white(image):
    assert near(image.getpixel((5, 5)), (255, 255, 255), 3)


def check_size(size):
    def check(image):
        assert image.size == size
    return check


ACCEPTED = [
    ("cmyk jpeg", "photo.jpg", cmyk_jpeg(), "image/jpeg", check_cmyk),
    ("16-bit grey png", "depth.png", png16(), "image/png", check_png16),
    ("animated gif: first frame", "anim.gif", animated_gif(), "image/gif", check_first_frame),
    ("exif orientation 6", "rotated.jpg", exif_rotated(), "image/jpeg", check_rotated),
    ("1x1 pixel", "dot.png", save(rgb(1, 1), "PNG"), "image/png", check_size((1, 1))),
    ("huge 6000x4000", "huge.jpg", save(rgb(6000, 4000), "JPEG"), "image/jpeg", check_size((1008, 672))),
    ("5000x2 sliver", "sliver.png", save(rgb(5000, 2), "PNG"), "image/png", lambda im: im.width == 1008),
    ("png named .jpg, text/plain", "photo.jpg", save(rgb(30, 30), "PNG"), "text/plain", check_size((30, 30))),
    ("no extension, octet-stream", "upload", save(rgb(31, 30), "WEBP"), "application/octet-stream",
     check_size((31, 30))),
    ("transparent rgba png", "alpha.png", transparent_png(), "image/png", check_white),
    ("palette with transparency", "p.png", palette_transparency(), "image/png", check_white),
    ("grey + alpha png", "la.png", save(Image.new("LA", (12, 12), (0, 0)), "PNG"), "image/png", check_white),
    ("greyscale jpeg", "grey.jpg", save(Image.new("L", (20, 20), 128), "JPEG"), "image/jpeg",
     lambda im: near(im.getpixel((5, 5)), (128, 128, 128), 3)),
    ("progressive jpeg", "prog.jpg", save(rgb(50, 40), "JPEG", progressive=True), "image/jpeg", check_size((50, 40))),
    ("webp", "photo.webp", save(rgb(33, 22), "WEBP"), "image/webp", check_size((33, 22))),
]


@pytest.fixture(scope="module")
def stack():
    fake = FakeUpstream()
    with gateway(fake.url, MAX_UPLOAD_BYTES=MAX_UPLOAD) as (url, _app):
        yield url, fake
    fake.close()


def post(url, filename, data, content_type, prompt="What is in this picture?", params=None):
    return requests.post(url + ANALYZE, files={"image": (filename, data, content_type)}, data={"prompt": prompt},
                         params=params, timeout=30)


@pytest.mark.parametrize("case, filename, data, content_type, http, text", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_upload(stack, case, filename, data, content_type, http, text):
    url, fake = stack
    calls = fake.calls
    response = post(url, filename, data, content_type)
    body = response.json()
    assert (response.status_code, body["status"]) == (http, "VALIDATION_ERROR"), body
    assert text in body["result"]
    assert body["requestId"] and body["usage"] is None
    assert fake.calls == calls, "a refused upload must not reach the model"


@pytest.mark.parametrize("case, filename, data, content_type, check", ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_accepted_oddity(stack, case, filename, data, content_type, check):
    url, fake = stack
    response = post(url, filename, data, content_type)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "SUCCESS"
    image = upstream_image(fake)
    assert max(image.size) <= 1008
    assert check(image) is not False


FIELDS = [
    ("missing prompt", {"data": {}}, "`prompt` part is missing"),
    ("blank prompt", {"data": {"prompt": " \n\t "}}, "`prompt` is empty"),
    ("prompt of 1001 characters", {"data": {"prompt": "x" * 1001}}, "1001 characters"),
    ("missing image", {"files": None}, "`image` part is missing"),
    ("image as a text field", {"files": None, "data": {"prompt": "hi", "image": "abc"}}, "must be a file upload"),
]
# The seed's parameters, refused alike from the query string and from form fields.
PARAMS = [
    ("max-tokens 0", {"max-tokens": "0"}, "`max-tokens` must be a whole number from 1 to 1024; got '0'"),
    ("max-tokens 1025", {"max-tokens": "1025"}, "got '1025'"),
    ("max-tokens not a number", {"max-tokens": "lots"}, "must be a whole number"),
    ("max-tokens fractional", {"max-tokens": "1.5"}, "must be a whole number"),
    ("max-tokens empty", {"max-tokens": ""}, "must be a whole number"),
    ("temperature NaN", {"temperature": "nan"}, "`temperature` must be a number from 0 to 2; got 'nan'"),
    ("temperature infinity", {"temperature": "inf"}, "got 'inf'"),
    ("temperature negative", {"temperature": "-0.1"}, "from 0 to 2; got '-0.1'"),
    ("temperature 2.5", {"temperature": "2.5"}, "got '2.5'"),
    ("temperature not a number", {"temperature": "warm"}, "must be a number"),
]


@pytest.mark.parametrize("case, request_parts, text", FIELDS, ids=[c[0] for c in FIELDS])
def test_refused_fields(stack, case, request_parts, text):
    url, fake = stack
    calls = fake.calls
    files = request_parts.get("files", {"image": ("p.jpg", save(rgb(), "JPEG"), "image/jpeg")})
    data = request_parts.get("data", {"prompt": "What is this?"})
    response = requests.post(url + ANALYZE, files=files, data=data, params=request_parts.get("params"), timeout=30)
    body = response.json()
    assert (response.status_code, body["status"]) == (400, "VALIDATION_ERROR"), body
    assert text in body["result"], body["result"]
    assert fake.calls == calls


@pytest.mark.parametrize("where", ["query", "form"])
@pytest.mark.parametrize("case, values, text", PARAMS, ids=[c[0] for c in PARAMS])
def test_refused_parameters_from_query_or_form(stack, where, case, values, text):
    url, fake = stack
    calls = fake.calls
    files = {"image": ("p.jpg", save(rgb(), "JPEG"), "image/jpeg")}
    data = {"prompt": "What is this?", **(values if where == "form" else {})}
    response = requests.post(url + ANALYZE, files=files, data=data, params=values if where == "query" else None,
                             timeout=30)
    body = response.json()
    assert (response.status_code, body["status"]) == (400, "VALIDATION_ERROR"), body
    assert text in body["result"], body["result"]
    assert fake.calls == calls


def test_parameters_as_form_fields_reach_the_model(stack):
    """Spring's @RequestParam binds query parameters and form fields alike; the seed's
    clients may send either. Before: form fields were silently ignored."""
    url, fake = stack
    image = {"image": ("p.jpg", save(rgb(9, 9), "JPEG"), "image/jpeg")}
    form = requests.post(url + ANALYZE, files=image, data={"prompt": "Form?", "max-tokens": "7", "temperature": "0"},
                         timeout=30)
    assert form.json()["status"] == "SUCCESS", form.text
    assert (fake.payloads[-1]["max_tokens"], fake.payloads[-1]["temperature"]) == (7, 0.0)
    both = requests.post(url + ANALYZE, files=image, data={"prompt": "Both?", "max-tokens": "9"},
                         params={"max-tokens": "9", "temperature": "1.5"}, timeout=30)
    assert both.json()["status"] == "SUCCESS", both.text
    assert (fake.payloads[-1]["max_tokens"], fake.payloads[-1]["temperature"]) == (9, 1.5)
    calls = fake.calls
    clash = requests.post(url + ANALYZE, files=image, data={"prompt": "Clash?", "max-tokens": "9"},
                          params={"max-tokens": "10"}, timeout=30)
    assert clash.status_code == 400 and "sent twice with different values" in clash.json()["result"]
    assert fake.calls == calls


def test_prompt_is_trimmed_and_limits_are_inclusive(stack):
    url, fake = stack
    response = post(url, "p.jpg", save(rgb(7, 7), "JPEG"), "image/jpeg", prompt="  " + "y" * 1000 + "\n",
                    params={"max-tokens": "1024", "temperature": "2"})
    assert response.json()["status"] == "SUCCESS", response.text
    sent = fake.payloads[-1]
    assert sent["messages"][0]["content"][1]["text"] == "y" * 1000
    assert (sent["max_tokens"], sent["temperature"]) == (1024, 2.0)


@pytest.mark.parametrize("case, values, param", [
    ("max-tokens 1025", {"max-tokens": "1025"}, "max-tokens"),
    ("temperature 2.5", {"temperature": "2.5"}, "temperature"),
    ("unknown preset", {"preset": "no-such-preset"}, "preset"),
    ("prompt of 1001 characters", {"prompt": "x" * 1001}, "prompt"),
], ids=lambda v: v if isinstance(v, str) and " " in v else None)
def test_problem_details_name_the_field_at_fault(stack, case, values, param):
    """A client that asks for problem details (the Java client does) learns which part to
    fix: `param`, as the OpenAI face's errors carry it."""
    url, _ = stack
    files = {"image": ("p.jpg", save(rgb(), "JPEG"), "image/jpeg")}
    response = requests.post(url + ANALYZE, files=files, data={"prompt": "What is this?", **values}, timeout=30,
                             headers={"Accept": "application/problem+json, application/json;q=0.9"})
    body = response.json()
    assert response.status_code == 400 and response.headers["Content-Type"] == "application/problem+json", body
    assert body["code"] == "VALIDATION_ERROR" and body["param"] == param, body
