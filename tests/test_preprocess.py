"""The fused image processor must give the stock processor's pixel values and tokens."""
import pytest
import torch
from transformers import AutoProcessor, LlavaNextImageProcessorPil

from llava_runtime.preprocess import FastLlavaNextImageProcessor, speed_up
from tests import images

TEXT = "USER: <image>\nWhat is this? ASSISTANT:"


@pytest.fixture(scope="module")
def processors(demo_model_dir):
    stock = AutoProcessor.from_pretrained(demo_model_dir)
    fast = AutoProcessor.from_pretrained(demo_model_dir)
    assert type(stock.image_processor) is LlavaNextImageProcessorPil
    assert speed_up(fast) and isinstance(fast.image_processor, FastLlavaNextImageProcessor)
    assert not speed_up(fast)  # only the stock class is replaced
    return stock, fast


@pytest.mark.parametrize("size", [(640, 480), (1, 1), (2000, 600), (300, 900), (336, 336), (1008, 336), (17, 999),
                                  (672, 673)])
def test_same_pixels_and_tokens_as_the_stock_processor(processors, size):
    stock, fast = processors
    image = images.noise(*size, seed=sum(size))
    a = stock(images=[image], text=[TEXT], return_tensors="pt")
    b = fast(images=[image], text=[TEXT], return_tensors="pt")
    assert a["pixel_values"].shape == b["pixel_values"].shape
    assert torch.allclose(a["pixel_values"], b["pixel_values"], atol=1e-5)
    assert torch.equal(a["input_ids"], b["input_ids"])
    assert torch.equal(a["image_sizes"], b["image_sizes"])


def test_several_images_of_different_sizes_pad_alike(processors):
    stock, fast = processors
    pictures = [images.noise(640, 480), images.noise(336, 336, seed=2)]
    text = "USER: <image>\n<image>\ncompare ASSISTANT:"
    a = stock(images=pictures, text=[text], return_tensors="pt")
    b = fast(images=pictures, text=[text], return_tensors="pt")
    assert torch.allclose(a["pixel_values"], b["pixel_values"], atol=1e-5)
    assert torch.equal(a["input_ids"], b["input_ids"])
