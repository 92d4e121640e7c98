"""The context budget of a chat request, checked before the model is called.

LLaVA-1.6 turns each image into a fixed number of tokens that depends only on the
image's size: one 336-px base tile (24 x 24 = 576 tokens) plus the tiles of the
best-fitting grid from `image_grid_pinpoints`, with the padding rows/columns
removed and one newline token per row. That is LLaVA-NeXT's tiling rule as
transformers' `LlavaNextProcessor` computes it (`_get_number_of_features`, with
the CLS token dropped by the "default" feature strategy); tests compare it with
the real processor. The images leave the gateway normalised, so the count is
exact for what the model will see: 64x48 costs 1,368 tokens, 1008x336 2,328, 672x672 2,928
(the ~2.9k worst case).

The text's tokens are not counted here (that needs the tokenizer), so this check
refuses only requests that cannot fit whatever their text; the model process
then checks the exact total and answers `context_length_exceeded` itself.
"""
from __future__ import annotations

from .statuses import invalid

TILE_PX = 336                       # CLIP ViT-L/14-336 input
PATCH_PX = 14
GRID_PINPOINTS = ((336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008))  # (height, width)


def image_tokens(width: int, height: int) -> int:
    """Tokens one image of this size costs LLaVA-1.6."""
    best_h, best_w = _best_resolution(height, width)
    patches = TILE_PX // PATCH_PX
    current_h, current_w = patches * (best_h // TILE_PX), patches * (best_w // TILE_PX)
    if width / height > current_w / current_h:
        new_h = int(round(height * (current_w / width), 7))
        current_h -= (current_h - new_h) // 2 * 2
    else:
        new_w = int(round(width * (current_h / height), 7))
        current_w -= (current_w - new_w) // 2 * 2
    return current_h * current_w + current_h + patches * patches


def _best_resolution(height: int, width: int) -> tuple[int, int]:
    best, best_effective, best_wasted = GRID_PINPOINTS[0], 0, float("inf")
    for h, w in GRID_PINPOINTS:
        scale = min(w / width, h / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        wasted = w * h - effective
        if effective > best_effective or (effective == best_effective and wasted < best_wasted):
            best, best_effective, best_wasted = (h, w), effective, wasted
    return best


def check(sizes: list[tuple[int, int]], max_tokens: int, context: int) -> None:
    """Refuse (400 context_length_exceeded) images + max_tokens over the context."""
    if not context or not sizes:
        return
    costs = [image_tokens(w, h) for w, h in sizes]
    needed = sum(costs) + max_tokens
    if needed > context:
        each = ", ".join(f"{w}x{h}: {c}" for (w, h), c in zip(sizes, costs))
        raise invalid(f"{len(sizes)} image(s) cost {sum(costs)} tokens ({each}) + max_tokens {max_tokens} = "
                      f"{needed}, over the model's context of {context} tokens; send fewer or smaller images "
                      "or lower max_tokens", code="context_length_exceeded", param="messages")
