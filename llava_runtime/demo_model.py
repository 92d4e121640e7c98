"""The demo model: a tiny, randomly initialised LLaVA-NeXT with the real geometry.

Built locally (nothing is downloaded), seeded so every build is identical, and saved
in the llava-hf checkpoint format so it loads through exactly the same code path as
`llava-hf/llava-v1.6-vicuna-7b-hf`. Image tiles (336 px), patches (14 px) and grid
pinpoints are the 7B model's, so a request costs the same number of image tokens;
the answers are random tokens.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from filelock import FileLock

log = logging.getLogger(__name__)

SEED = 0
MARKER = "llava-demo-complete"  # written last: a directory without it is half-built
GRID_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
# The llava-hf vicuna template (as on the hub for llava-v1.6-vicuna-7b-hf).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
# Enough varied English for a byte-level BPE with a few hundred merges.
_CORPUS = """A chat between a curious human and an artificial intelligence assistant.
The assistant gives helpful, detailed, and polite answers to the human's questions.
What is in this picture? Describe the image in detail. What colour is the product?
Is there any damage visible on the item? How many people are in the photo?
The photo shows a red bicycle leaning against a brick wall next to a wooden door.
There is a cat sitting on a table, a cup of coffee and a laptop computer.
The product appears new, in its original packaging, with no visible scratches.
Read the text on the label. The receipt lists three items and a total of 42 euros.
""" * 4


def ensure_demo_model(target: Path) -> Path:
    """Build the demo model into `target` unless a complete build is already there.

    Safe when several processes start at once: one builds under a file lock into a
    temporary directory and renames it into place; the others wait and reuse it.
    """
    target = Path(target)
    if (target / MARKER).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / MARKER).exists():
            return target
        started = time.monotonic()
        log.info("building the demo model into %s (tiny, random weights, real LLaVA-1.6 geometry)", target)
        staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
        os.chmod(staging, 0o755)  # mkdtemp makes it 0700; other users (containers) must read it
        try:
            _build(staging)
            (staging / MARKER).write_text("ok\n")
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("demo model built in %.1fs", time.monotonic() - started)
    return target


def _build(out: Path) -> None:
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessorPil,
        LlavaNextProcessor,
    )

    tokenizer = _build_tokenizer()
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=336, patch_size=14, projection_dim=32, hidden_act="quick_gelu")
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id)
    config = LlavaNextConfig(vision_config=vision.to_dict(), text_config=text.to_dict(),
                             image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                             image_grid_pinpoints=GRID_PINPOINTS, vision_feature_layer=-2,
                             vision_feature_select_strategy="default", image_seq_length=576,
                             tie_word_embeddings=False)
    torch.manual_seed(SEED)
    model = LlavaNextForConditionalGeneration(config).eval()
    _prefer_words(model, tokenizer)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)

    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
        image_grid_pinpoints=GRID_PINPOINTS, do_pad=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711])
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                                   vision_feature_select_strategy="default", chat_template=CHAT_TEMPLATE,
                                   num_additional_image_tokens=1)
    processor.save_pretrained(out)


def _prefer_words(model, tokenizer) -> None:
    """Zero the output rows of tokens that are not printable word pieces (lone bytes,
    control characters, <image>, <pad>) and scale the others up: their logit is then 0
    while word pieces get random logits of a few units, so answers, greedy or sampled,
    are random words instead of mojibake. EOS is scaled like a word, so answers still
    end on their own now and then."""
    import torch

    keep = {tokenizer.eos_token_id}
    for token_id in range(len(tokenizer)):
        piece = tokenizer.decode([token_id])
        if len(piece.strip()) >= 2 and piece.isprintable() and piece.isascii():
            keep.add(token_id)
    with torch.no_grad():
        weight = model.get_output_embeddings().weight
        for token_id in range(weight.shape[0]):
            weight[token_id].mul_(30.0 if token_id in keep else 0.0)


def _build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>", padding_side="left")
    # Two calls on purpose: one call would give <pad> the lower id (notes/llava-offline.md).
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tokenizer.add_special_tokens({"pad_token": "<pad>"})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
