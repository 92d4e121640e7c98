"""A faster LLaVA-NeXT image processor giving the stock processor's pixel values.

Why this exists: the stock Pillow backend (`LlavaNextImageProcessorPil`; the
torchvision one cannot be used with this torch) converts every tile between numpy
and PIL and makes separate float passes to rescale and normalise: about 35 ms of
CPU per 640x480 image on a 2-core machine, about as long as generating for it. Here
each image is resized once per target with PIL and the tiles are rescaled and
normalised in one fused pass over uint8 data. The processor around it (image-token
expansion, image_sizes) is untouched, and a test pins the output to the stock one.
Configurations outside the llava-hf layout fall back to the stock code.
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from transformers import LlavaNextImageProcessorPil
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import get_patch_output_size, select_best_resolution
from transformers.image_utils import ChannelDimension


class FastLlavaNextImageProcessor(LlavaNextImageProcessorPil):
    def _preprocess(self, images, do_resize, size, image_grid_pinpoints, resample, do_center_crop, crop_size,
                    do_rescale, rescale_factor, do_normalize, image_mean, image_std, do_pad, return_tensors, **kwargs):
        tile = crop_size.height if crop_size and crop_size.height else None
        usable = (do_resize and do_center_crop and do_rescale and do_normalize and do_pad and tile
                  and crop_size.width == tile and size.shortest_edge == tile
                  and all(isinstance(im, np.ndarray) and im.dtype == np.uint8 and im.ndim == 3 and im.shape[0] == 3
                          for im in images))
        if not usable:
            return super()._preprocess(images, do_resize, size, image_grid_pinpoints, resample, do_center_crop,
                                       crop_size, do_rescale, rescale_factor, do_normalize, image_mean, image_std,
                                       do_pad, return_tensors, **kwargs)
        # (x * rescale - mean) / std == x * scale + offset, per channel, written in place
        # into the zero-padded batch array. numpy, not torch: torch ops in request
        # threads start an OpenMP team per thread, and those teams spin on the cores
        # the generation thread needs (measured: 79 -> 132 ms per request).
        std = np.asarray(image_std, dtype=np.float32)
        scale = (np.float32(rescale_factor) / std).reshape(3, 1, 1)
        offset = (-np.asarray(image_mean, dtype=np.float32) / std).reshape(3, 1, 1)
        stacks = [self._tiles(image, image_grid_pinpoints, tile, resample) for image in images]
        pixel_values = np.zeros((len(stacks), max(len(t) for t in stacks), 3, tile, tile), dtype=np.float32)
        for row, tiles in enumerate(stacks):
            out = pixel_values[row, :len(tiles)]
            np.multiply(tiles, scale, out=out)
            out += offset
        image_sizes = [list(image.shape[-2:]) for image in images]
        if return_tensors == "pt":
            import torch  # zero-copy views, no parallel copy in this thread

            return BatchFeature(data={"pixel_values": torch.from_numpy(pixel_values),
                                      "image_sizes": torch.from_numpy(np.asarray(image_sizes, dtype=np.int64))})
        return BatchFeature(data={"pixel_values": list(pixel_values), "image_sizes": image_sizes},
                            tensor_type=return_tensors)

    @staticmethod
    def _tiles(image: np.ndarray, pinpoints, tile: int, resample) -> np.ndarray:
        """uint8 (1 + n, 3, tile, tile): the whole image squeezed to one tile, then the
        grid tiles of the image resized into its best pinpoint (aspect kept, black pad)."""
        pil = Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)))
        target_h, target_w = select_best_resolution(image.shape[-2:], pinpoints)
        new_h, new_w = get_patch_output_size(image, (target_h, target_w), input_data_format=ChannelDimension.FIRST)
        canvas = np.zeros((target_h, target_w, 3), dtype=np.uint8)
        top, left = (target_h - new_h) // 2, (target_w - new_w) // 2
        canvas[top:top + new_h, left:left + new_w] = np.asarray(pil.resize((new_w, new_h), resample=resample))
        base = np.asarray(pil.resize((tile, tile), resample=resample))
        grid = [canvas[i:i + tile, j:j + tile] for i in range(0, target_h, tile) for j in range(0, target_w, tile)]
        return np.stack([base, *grid]).transpose(0, 3, 1, 2)


def speed_up(processor) -> bool:
    """Swap in the fast image processor where the stock Pillow one is used."""
    if type(processor.image_processor) is LlavaNextImageProcessorPil:
        processor.image_processor = FastLlavaNextImageProcessor(**processor.image_processor.to_dict())
        return True
    return False
