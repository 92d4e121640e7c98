"""What the card allows for the benchmark's work, from two numbers measured on it
(bench/card.py: copy bandwidth, matrix throughput) and the model's own shapes.

- A decode step reads the language model's weights once and every running row's
  KV cache once: (weights + rows x KV bytes held) / bandwidth.
- A prefill is matrix work: 2 FLOPs per parameter per token for the language
  model (prompt tokens) and the vision tower (its patches), plus causal attention
  (2 x 2 x layers x width x tokens^2 / 2), at the measured matrix rate.
The ideal latency of one request among `rows` served together: every row's
prefill, then its new tokens at the step time of `rows` rows.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shapes:
    """What the ceilings need of a checkpoint, counted from its config (no weights)."""
    weight_bytes: float        # read by every decode step: decoder layers, final norm, lm_head
    kv_bytes_per_token: float  # one token of one row, all layers, keys and values
    language_parameters: float
    vision_parameters: float
    layers: int
    width: int

    @classmethod
    def of(cls, config) -> "Shapes":
        import torch
        from transformers import LlavaNextForConditionalGeneration

        with torch.device("meta"):
            model = LlavaNextForConditionalGeneration(config)
        text = config.get_text_config()

        def count(module) -> int:
            return sum(p.numel() for p in module.parameters())

        language = model.model.language_model
        decoder = count(language) - count(language.embed_tokens)
        itemsize = torch.bfloat16.itemsize
        heads = text.num_attention_heads
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
        kv_heads = getattr(text, "num_key_value_heads", None) or heads
        return cls(weight_bytes=(decoder + count(model.lm_head)) * itemsize,
                   kv_bytes_per_token=2 * text.num_hidden_layers * kv_heads * head_dim * itemsize,
                   language_parameters=decoder + count(model.lm_head),
                   vision_parameters=count(model.model.vision_tower) + count(model.model.multi_modal_projector),
                   layers=text.num_hidden_layers, width=text.hidden_size)


@dataclass(frozen=True)
class Ceiling:
    bandwidth: float        # bytes/s: a device-to-device copy's reads + writes
    matmul_flops: float     # FLOP/s of a large bf16 matrix product
    shapes: Shapes
    prompt: int             # prompt tokens of the benchmark's request
    vision_tokens: int      # patches the vision tower sees for it (tiles x (patches + 1))
    new: int                # new tokens per request

    def step_s(self, rows: int) -> float:
        held = self.prompt + self.new / 2  # on average over the answer
        return (self.shapes.weight_bytes + rows * held * self.shapes.kv_bytes_per_token) / self.bandwidth

    @property
    def prefill_flop(self) -> float:
        s = self.shapes
        attention = 2 * s.layers * s.width * self.prompt ** 2  # QK^T and PV, causal half of 2 x 2 x L x d x n^2
        return 2 * s.language_parameters * self.prompt + 2 * s.vision_parameters * self.vision_tokens + attention

    @property
    def prefill_s(self) -> float:
        return self.prefill_flop / self.matmul_flops

    @property
    def batch1(self) -> float:
        return 1 / self.step_s(1)

    def aggregate(self, rows: int) -> float:
        """tokens/s of `rows` requests served together, their prefills counted."""
        return rows * self.new / self.latency(rows)

    def latency(self, rows: int) -> float:
        return rows * self.prefill_s + self.new * self.step_s(rows)
