"""Request parsing and image decoding of the model process: every refusal says what
is wrong with a stable code; valid oddities are accepted and normalised."""
import math
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from llava_common.settings import SettingsError
from llava_runtime.errors import ApiError
from llava_runtime.inputs import Limits, decode_image, parse_analyze, parse_chat, prepare
from llava_runtime.settings import ModelSettings
from tests import images

LIMITS = Limits(ModelSettings.from_env({"MAX_IMAGE_PIXELS": "40000000", "MAX_IMAGE_BYTES": "2000000"}))
JPEG = images.jpeg(64, 48)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims huge dimensions: a decompression bomb's header."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def chat(content, **extra):
    return {"messages": [{"role": "user", "content": content}], **extra}


def image_part(url):
    return {"type": "image_url", "image_url": {"url": url}}


BAD_ANALYZE = [
    ("not an object", [1, 2], "invalid_request", "JSON object"),
    ("no prompt", {"image": images.b64(JPEG)}, "invalid_request", "prompt is required"),
    ("blank prompt", {"image": images.b64(JPEG), "prompt": "   "}, "invalid_request", "prompt is required"),
    ("prompt too long", {"image": images.b64(JPEG), "prompt": "x" * 8001}, "invalid_request", "8001 characters"),
    ("no image", {"prompt": "hi"}, "invalid_request", "image is required"),
    ("not base64", {"image": "@@@not-base64@@@", "prompt": "hi"}, "invalid_image", "not valid base64"),
    ("not an image", {"image": images.b64(b"hello world, no image here"), "prompt": "hi"}, "unsupported_image_format",
     "not a recognised image"),
    ("BMP is not accepted", {"image": images.b64(images.encode(images.noise(10, 10), "BMP")), "prompt": "hi"},
     "unsupported_image_format", "a BMP file"),
    ("truncated jpeg", {"image": images.b64(images.jpeg(256, 256)[:800]), "prompt": "hi"},
     "invalid_image", "truncated"),
    ("decompression bomb", {"image": images.b64(png_header_only(50_000, 50_000)), "prompt": "hi"},
     "image_too_large", "pixels"),
    ("too many bytes", {"image": images.b64(b"\xff" * 2_100_000), "prompt": "hi"}, "image_too_large", "limit"),
    ("ICO is not accepted", {"image": images.b64(images.encode(images.noise(32, 32), "ICO")), "prompt": "hi"},
     "unsupported_image_format", "ICO"),
    ("max_tokens zero", {"image": images.b64(JPEG), "prompt": "hi", "max_tokens": 0},
     "invalid_request", "between 1 and 1024"),
    ("max_tokens too big", {"image": images.b64(JPEG), "prompt": "hi", "max_tokens": 5000},
     "invalid_request", "between 1 and 1024"),
    ("max_tokens string", {"image": images.b64(JPEG), "prompt": "hi", "max_tokens": "12"},
     "invalid_request", "integer"),
    ("max_tokens bool", {"image": images.b64(JPEG), "prompt": "hi", "max_tokens": True}, "invalid_request", "integer"),
    ("temperature NaN", {"image": images.b64(JPEG), "prompt": "hi", "temperature": math.nan},
     "invalid_request", "finite"),
    ("temperature negative", {"image": images.b64(JPEG), "prompt": "hi", "temperature": -0.1},
     "invalid_request", "at least 0"),
    ("temperature too hot", {"image": images.b64(JPEG), "prompt": "hi", "temperature": 2.5},
     "invalid_request", "at most 2"),
    ("min over max", {"image": images.b64(JPEG), "prompt": "hi", "max_tokens": 4, "min_tokens": 5},
     "invalid_request", "min_tokens"),
]


@pytest.mark.parametrize("body,code,words", [c[1:] for c in BAD_ANALYZE], ids=[c[0] for c in BAD_ANALYZE])
def test_analyze_refusals(body, code, words):
    with pytest.raises(ApiError) as refused:
        parse_analyze(body, LIMITS)
    assert refused.value.code == code
    assert words in refused.value.message


BAD_CHAT = [
    ("no messages", {}, "messages must be a non-empty array"),
    ("empty messages", {"messages": []}, "messages must be a non-empty array"),
    ("bad role", {"messages": [{"role": "robot", "content": "hi"}]}, "role must be"),
    ("last not user", {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
     "last message"),
    ("n=2", chat("hi", n=2), "only n=1"),
    ("too many stops", chat("hi", stop=["a", "b", "c", "d", "e"]), "at most 4 are allowed"),
    ("empty stop string", chat("hi", stop=["a", ""]), "stop must be a non-empty string"),
    ("stop of the wrong type", chat("hi", stop=7), "stop must be a non-empty string"),
    ("unknown response format", chat("hi", response_format={"type": "xml"}),
     "must be text, json_object or json_schema"),
    ("schema that is not a schema", chat("hi", response_format={"type": "json_schema", "json_schema": {
        "schema": {"type": 5}}}), "not valid JSON Schema"),
    ("seed not an integer", chat("hi", seed="lucky"), "seed must be an integer"),
    ("seed out of range", chat("hi", seed=2 ** 64), "seed must be between"),
    ("top_k out of range", chat("hi", top_k=-2), "top_k must be between"),
    ("remote url", chat([image_part("http://10.0.0.1/cat.jpg"), {"type": "text", "text": "hi"}]),
     "does not fetch remote"),
    ("bad data url", chat([image_part("data:image/png,rawbytes")]), "data URL"),
    ("unknown part", chat([{"type": "audio", "audio": "..."}]), "must be text or image_url"),
    ("image in assistant turn", {"messages": [{"role": "assistant", "content": [image_part(images.data_url(JPEG))]},
                                              {"role": "user", "content": "hi"}]}, "images only in user"),
    ("no text no image", chat([{"type": "text", "text": "  "}]), "no text and no image"),
    ("stream not bool", chat("hi", stream="yes"), "stream must be"),
    ("top_p zero", chat("hi", top_p=0), "top_p must be greater than 0"),
    ("too many images", chat([image_part(images.data_url(JPEG))] * 5), "at most 4 images"),
    ("content not list", {"messages": [{"role": "user", "content": 42}]}, "content must be"),
]


@pytest.mark.parametrize("body,words", [c[1:] for c in BAD_CHAT], ids=[c[0] for c in BAD_CHAT])
def test_chat_refusals(body, words):
    with pytest.raises(ApiError) as refused:
        parse_chat(body, LIMITS)
    assert 400 <= refused.value.status < 500
    assert words in refused.value.message


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise
    return images.encode(images.noise(80, 40), "JPEG", exif=exif.tobytes())


ODD_BUT_VALID = [
    ("cmyk jpeg", images.encode(images.noise(40, 30, mode="CMYK"), "JPEG"), (40, 30)),
    ("16-bit png", images.encode(Image.linear_gradient("L").resize((50, 20)).convert("I;16"), "PNG"), (50, 20)),
    ("palette png with transparency", images.encode(images.noise(30, 30).convert("P"), "PNG", transparency=0),
     (30, 30)),
    ("rgba png", images.encode(images.noise(30, 20, mode="RGBA"), "PNG"), (30, 20)),
    ("grey webp", images.encode(images.noise(30, 20, mode="L"), "WEBP"), (30, 20)),
    ("animated gif", images.encode(images.noise(20, 20).convert("P"), "GIF", save_all=True,
                                   append_images=[images.noise(20, 20, seed=1).convert("P")]), (20, 20)),
    ("1x1", images.encode(images.noise(1, 1), "PNG"), (1, 1)),
    ("exif rotated", exif_rotated_jpeg(), (40, 80)),
]


@pytest.mark.parametrize("data,size", [c[1:] for c in ODD_BUT_VALID], ids=[c[0] for c in ODD_BUT_VALID])
def test_odd_images_become_rgb(data, size):
    image = decode_image(data, LIMITS, "image")
    assert image.mode == "RGB"
    assert image.size == size


def test_sixteen_bit_grey_keeps_its_contrast_and_its_brightness():
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (4, 1))
    image = decode_image(images.encode(Image.fromarray(ramp), "PNG"), LIMITS, "image")
    lo, hi = image.convert("L").getextrema()
    assert lo < 10 and hi > 245  # not clipped to white
    flat = decode_image(images.encode(Image.new("I;16", (8, 8), 40000), "PNG"), LIMITS, "image")
    assert flat.getpixel((4, 4)) == (156, 156, 156)  # 40000 / 256, as the gateway sends it (shared rule)


def test_raw_base64_and_data_urls_both_work():
    for url in (images.data_url(JPEG), images.b64(JPEG)):
        request = parse_chat(chat([image_part(url), {"type": "text", "text": "what?"}]), LIMITS)
        assert len(request.images) == 1
    assert request.messages[0]["role"] == "system"  # vicuna's system prompt is added


def test_the_context_budget_is_checked_with_real_token_counts(loaded_demo):
    four_big = chat([image_part(images.data_url(images.jpeg(672, 672, seed=i))) for i in range(4)]
                    + [{"type": "text", "text": "compare"}], max_tokens=100)
    request = parse_chat(four_big, LIMITS)
    with pytest.raises(ApiError) as refused:
        prepare(request, loaded_demo.processor, loaded_demo.context_length, loaded_demo.image_token_id)
    assert refused.value.code == "context_length_exceeded"
    assert "4 image(s)" in refused.value.message and "4096" in refused.value.message

    one = parse_chat(chat([image_part(images.data_url(images.jpeg(500, 500))), {"type": "text", "text": "hi"}],
                          max_tokens=1024), LIMITS)
    prepared = prepare(one, loaded_demo.processor, loaded_demo.context_length, loaded_demo.image_token_id)
    assert prepared.image_tokens == 2928  # the 7B model's count for a 500x500 image (672x672 grid)


def test_settings_report_every_bad_value_at_once():
    with pytest.raises(SettingsError) as bad:
        ModelSettings.from_env({"MAX_BATCH_SIZE": "0", "MODEL_PORT": "http", "DEVICE": "tpu",
                                "MAX_BATCH_WAIT_MS": "nan"})
    message = str(bad.value)
    for fragment in ("MAX_BATCH_SIZE='0': must be >= 1", "MODEL_PORT='http': expected a whole number",
                     "DEVICE='tpu': expected one of auto, cuda, cpu",
                     "MAX_BATCH_WAIT_MS='nan': expected a finite number"):
        assert fragment in message
    assert ModelSettings.from_env({}).max_batch_size == 32


def test_settings_that_contradict_each_other_are_refused():
    with pytest.raises(SettingsError) as bad:
        ModelSettings.from_env({"MAX_QUEUE": "500", "HTTP_THREADS": "100"})
    assert "HTTP_THREADS (100) must be at least MAX_QUEUE + MAX_BATCH_SIZE + 4 (536)" in str(bad.value)
