"""The language model's forward over KV slots, on the transformers model's own modules.

Why not the model's `forward`: it attends over a cache it grows or pads itself and
decides masks on the host, so rows at different positions cannot share a step and
the step cannot be replayed as one CUDA graph. Here each decoder layer is run from
its submodules (norms, q/k/v/o projections, MLP: the checkpoint's weights, nothing
copied), keys and values are written in place into the rows' slots, and attention
reads each row's slot up to a given length with a mask of the positions it holds.
The arithmetic is the Llama layer's (transformers' modeling_llama), so greedy
answers match `generate` token for token (tested).

Every layer runs as `project_layer` (norm, q/k/v, rotary), the KV write, attention,
and `finish_layer` (o_proj, residual, norm, MLP); for a decode step (`decode`: one
new token per row) the runner may hand in `torch.compile`d versions of the two
parts (fused kernels; one compile serves every layer and every rows count). Its attention is
either the Triton kernel over each row's length (decode_attention.py, CUDA) or
SDPA over the first `attend` positions with a mask (the CPU, and the fallback).

`prompt_embeddings` is LLaVA-NeXT's own input side: token embeddings with the
vision tower's projected, packed image features scattered into the <image> places.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import decode_attention
from .kv_slots import KVSlots

# rope_type values whose cos/sin depend on the position alone (not on the length of
# the sequence seen so far), so one table serves every row at every step.
STATIC_ROPE = ("default", "linear", "llama3", "yarn")
_LAYER_PARTS = ("input_layernorm", "post_attention_layernorm", "mlp", "self_attn")
_ATTENTION_PARTS = ("q_proj", "k_proj", "v_proj", "o_proj")


def unsupported_reason(model) -> str | None:
    """Why this checkpoint's language model cannot run here (None when it can)."""
    text = model.config.get_text_config()
    rope = (getattr(text, "rope_parameters", None) or {}).get("rope_type", "default")
    if rope not in STATIC_ROPE:
        return f"its RoPE type {rope!r} depends on the sequence length"
    if getattr(text, "sliding_window", None):
        return "it uses sliding-window attention"
    language = model.model.language_model
    for layer in language.layers:
        if not all(hasattr(layer, p) for p in _LAYER_PARTS) or \
                not all(hasattr(layer.self_attn, p) for p in _ATTENTION_PARTS):
            return f"its decoder layer {type(layer).__name__} is not Llama-shaped"
    return None


class SlotDecoder:
    def __init__(self, model, length: int):
        text = model.config.get_text_config()
        language = model.model.language_model
        self.model = model
        self.layers = list(language.layers)
        self.norm, self.embed, self.lm_head = language.norm, language.embed_tokens, model.lm_head
        self.heads = text.num_attention_heads
        self.kv_heads = getattr(text, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(text, "head_dim", None) or text.hidden_size // self.heads
        self.scaling = self.layers[0].self_attn.scaling
        self.device, self.dtype = model.device, model.dtype
        # cos/sin for every position a slot holds, plus the scratch position (kv_slots.py).
        with torch.inference_mode():
            positions = torch.arange(length + 1, device=self.device).unsqueeze(0)
            probe = torch.zeros(1, dtype=self.dtype, device=self.device)
            cos, sin = language.rotary_emb(probe, positions)
        self.cos, self.sin = cos[0], sin[0]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits from the last position of each row: (rows, vocab)."""
        return self.lm_head(self.norm(hidden[:, -1]))

    def forward(self, hidden: torch.Tensor, positions: torch.Tensor, kv: KVSlots, first_row: int, attend: int,
                causal_from_zero: bool = False) -> torch.Tensor:
        """Run every layer for `rows` = hidden.shape[0] consecutive slots from `first_row`.

        hidden (rows, tokens, width) at `positions` (rows, tokens): keys and values are
        written at those positions of each row's slot, then each query attends to the
        first `attend` positions of its slot that are at or before its own position.
        `causal_from_zero`: the tokens are a whole prompt from position 0 and `attend`
        equals their count, so the plain causal kernel (flash) applies, no mask.
        """
        rows, tokens = positions.shape
        slots = torch.arange(first_row, first_row + rows, device=positions.device).unsqueeze(1)
        cos, sin = self.cos[positions].unsqueeze(2), self.sin[positions].unsqueeze(2)   # (rows, tokens, 1, dim)
        mask = None
        if not causal_from_zero:
            key_positions = torch.arange(attend, device=positions.device)
            mask = (key_positions <= positions.unsqueeze(-1)).unsqueeze(1)             # (rows, 1, tokens, attend)
        for index, layer in enumerate(self.layers):
            q, k, v = project_layer(layer, hidden, cos, sin, self.head_dim)             # (rows, tokens, heads, dim)
            keys, values = kv.keys(index), kv.values(index)
            keys[slots, :, positions] = k
            values[slots, :, positions] = v
            out = F.scaled_dot_product_attention(
                q.transpose(1, 2), keys[first_row:first_row + rows, :, :attend],
                values[first_row:first_row + rows, :, :attend], attn_mask=mask, is_causal=causal_from_zero,
                scale=self.scaling, enable_gqa=self.kv_heads != self.heads)
            hidden = finish_layer(layer, hidden, out.transpose(1, 2))
        return hidden

    def decode(self, hidden: torch.Tensor, positions: torch.Tensor, kv: KVSlots, attend: int,
               lengths: torch.Tensor | None = None, project=None, finish=None) -> torch.Tensor:
        """One token for each of rows [0, rows): hidden (rows, 1, width) at `positions`
        (rows,). Each row's key and value are written at its position of its slot, then
        it attends to its slot's positions [0, lengths[row]) with the Triton kernel, or,
        without `lengths`, to the first `attend` positions up to its own with SDPA.
        `project` and `finish` replace the plain layer parts (compiled versions)."""
        project, finish = project or project_layer, finish or finish_layer
        rows = hidden.shape[0]
        slots = torch.arange(rows, device=positions.device)
        cos, sin = self.cos[positions][:, None, None], self.sin[positions][:, None, None]  # (rows, 1, 1, dim)
        mask = None
        if lengths is None:
            key_positions = torch.arange(attend, device=positions.device)
            mask = (key_positions <= positions.unsqueeze(-1)).view(rows, 1, 1, attend)
        for index, layer in enumerate(self.layers):
            q, k, v = project(layer, hidden, cos, sin, self.head_dim)                     # (rows, 1, heads, dim)
            keys, values = kv.keys(index), kv.values(index)
            keys[slots, :, positions] = k[:, 0]
            values[slots, :, positions] = v[:, 0]
            if lengths is not None:
                out = decode_attention.attend(q[:, 0], keys, values, lengths, self.scaling)
            else:
                out = F.scaled_dot_product_attention(
                    q.transpose(1, 2), keys[:rows, :, :attend], values[:rows, :, :attend], attn_mask=mask,
                    scale=self.scaling, enable_gqa=self.kv_heads != self.heads)
            hidden = finish(layer, hidden, out)   # (rows, heads, [1,] dim): one token, so no transpose
        return hidden

    def prompt_embeddings(self, prepared) -> torch.Tensor:
        """(1, prompt tokens, width): the prompt's embeddings with its images in place."""
        ids = prepared.input_ids.to(self.device)
        embeds = self.embed(ids)
        if prepared.pixel_values is not None:
            llava = self.model.model
            # image_sizes stays on the host: LLaVA-NeXT reads it for shapes, and a device
            # copy would make each read a sync with the decode step in flight.
            features = llava.get_image_features(prepared.pixel_values.to(self.device, self.dtype),
                                                prepared.image_sizes, return_dict=True).pooler_output
            features = torch.cat(features, dim=0).to(embeds.dtype)
            places = (ids == llava.config.image_token_id).unsqueeze(-1)
            embeds = embeds.masked_scatter(places, features)
        return embeds


def project_layer(layer, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, head_dim: int):
    """A layer's attention input: q (rows, tokens, heads, dim) and k, v (rows, tokens,
    kv heads, dim), q and k rotated; hidden (rows, tokens, width), cos/sin (rows,
    tokens, 1, dim)."""
    attention = layer.self_attn
    rows, tokens = hidden.shape[:2]
    normed = layer.input_layernorm(hidden)
    q = attention.q_proj(normed).view(rows, tokens, -1, head_dim)
    k = attention.k_proj(normed).view(rows, tokens, -1, head_dim)
    v = attention.v_proj(normed).view(rows, tokens, -1, head_dim)
    return _rotate(q, cos, sin), _rotate(k, cos, sin), v


def finish_layer(layer, hidden: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
    """The rest of the layer: output projection and residual, then norm, MLP and
    residual; `attended` (rows, tokens, heads, dim), or any layout of one token's."""
    hidden = hidden + layer.self_attn.o_proj(attended.reshape(hidden.shape))
    return hidden + layer.mlp(layer.post_attention_layernorm(hidden))


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding (transformers' apply_rotary_pos_emb, rotate_half form)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin
