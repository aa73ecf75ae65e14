"""Tiny random vision-language models of two families besides LLaVA-OneVision, in HF format, written with
transformers alone (no kit code), for the tests of zero-shot evaluation through transformers' Auto classes.

Each folder has what a released checkpoint has, at toy size: ``config.json`` and ``model.safetensors`` (its own
config classes), ``generation_config.json`` (the end-of-turn token as EOS, as the released ones), a byte-level BPE
tokenizer with the family's special tokens, and the family's processor (image processor + tokenizer + chat
template) saved with ``processor.save_pretrained``:

- :func:`write_qwen2_vl_twin`: Qwen2-VL (``qwen2_vl``) or Qwen2.5-VL (``qwen2_5_vl``): dynamic resolution (each
  image keeps its aspect ratio: a different number of tokens per image), Qwen's chat template.
- :func:`write_idefics3_twin`: Idefics3 (``idefics3``, SmolVLM's architecture): images split into tiles plus a global
  view, its ``User:<image>...<end_of_utterance>`` template.
"""

from __future__ import annotations

from pathlib import Path

import torch

# Qwen2-VL-Instruct's chat template (chat_template.json of the released folders; the default system turn when none
# is sent, each image as <|vision_start|><|image_pad|><|vision_end|>).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN2_VL_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Idefics3-8B-Llama3's (and SmolVLM's) chat template.
IDEFICS3_CHAT_TEMPLATE = (
    "<|begin_of_text|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
IDEFICS3_SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<fake_token_around_image>",
    "<image>",
    "<end_of_utterance>",
    "<global-img>",
    *[f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)],
]
CORPUS = [
    "the red cube on the left is gone. a small blue sphere appears behind the cylinder.",
    "describe the differences between the two images.",
    "you are a helpful assistant. system user assistant",
    "the lighting changed; the camera moved to the right; nothing else changed.",
]


def make_tokenizer(specials: list[str], *, eos: str, pad: str, bos: str | None = None):
    """A byte-level BPE tokenizer trained on a few sentences, ``specials`` as its special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300 + len(specials),
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(CORPUS * 20, trainer=trainer)
    named = {eos, pad, bos}
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=eos,
        pad_token=pad,
        bos_token=bos,
        additional_special_tokens=[s for s in specials if s not in named],
        clean_up_tokenization_spaces=False,
    )


def _text_settings(tokenizer) -> dict:
    """LM settings shared by the twins: a few narrow layers, decisive logits (greedy decoding has no near-ties
    that batching could break differently)."""
    return {
        "vocab_size": len(tokenizer) + 7,  # padded past the tokenizer, as released embeddings are
        "hidden_size": 48,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "initializer_range": 0.2,
    }


def _save(folder: Path, model, processor, *, eos_id: int, pad_id: int) -> Path:
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(eos_token_id=eos_id, pad_token_id=pad_id)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def write_qwen2_vl_twin(folder: Path, *, family: str = "qwen2_vl", seed: int = 0) -> Path:
    """A Qwen2-VL (``family="qwen2_vl"``) or Qwen2.5-VL (``"qwen2_5_vl"``) twin: 14-px patches merged 2x2, images
    resized to between 4 and 16 merged tokens keeping their aspect ratio."""
    import transformers as tf

    tokenizer = make_tokenizer(QWEN2_VL_SPECIALS, eos="<|im_end|>", pad="<|endoftext|>")
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in QWEN2_VL_SPECIALS}
    text = {
        **_text_settings(tokenizer),
        "rope_parameters": {"rope_type": "default", "mrope_section": [2, 2, 2], "rope_theta": 10000.0},
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "bos_token_id": None,
    }
    vision = {"depth": 2, "num_heads": 2, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}
    if family == "qwen2_vl":
        vision.update(embed_dim=32, hidden_size=48, mlp_ratio=2)
        config_cls, model_cls, processor_cls = (
            tf.Qwen2VLConfig,
            tf.Qwen2VLForConditionalGeneration,
            tf.Qwen2VLProcessor,
        )
    else:
        vision.update(hidden_size=32, intermediate_size=64, out_hidden_size=48, window_size=56)
        vision["fullatt_block_indexes"] = [1]
        config_cls, model_cls, processor_cls = (
            tf.Qwen2_5_VLConfig,
            tf.Qwen2_5_VLForConditionalGeneration,
            tf.Qwen2_5_VLProcessor,
        )
    config = config_cls(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    pixels = {"shortest_edge": 4 * 28 * 28, "longest_edge": 16 * 28 * 28}
    image_processor = tf.Qwen2VLImageProcessor(
        size=pixels, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    video_processor = tf.Qwen2VLVideoProcessor(
        size=pixels, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    processor = processor_cls(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    return _save(Path(folder), model, processor, eos_id=ids["<|im_end|>"], pad_id=ids["<|endoftext|>"])


def write_idefics3_twin(folder: Path, *, seed: int = 0) -> Path:
    """An Idefics3 twin: a 32-px SigLIP-style tower with 8-px patches, pixel shuffle by 2 (4 tokens per tile),
    images longer than 64 px resized to 64 and split into 32-px tiles plus the global view."""
    import transformers as tf

    tokenizer = make_tokenizer(
        IDEFICS3_SPECIALS, eos="<end_of_utterance>", pad="<|end_of_text|>", bos="<|begin_of_text|>"
    )
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in IDEFICS3_SPECIALS}
    text = {
        "model_type": "llama",
        **_text_settings(tokenizer),
        "eos_token_id": ids["<end_of_utterance>"],
        "pad_token_id": ids["<|end_of_text|>"],
        "bos_token_id": ids["<|begin_of_text|>"],
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    }
    config = tf.Idefics3Config(
        text_config=text, vision_config=vision, scale_factor=2, image_token_id=ids["<image>"]
    )
    torch.manual_seed(seed)
    model = tf.Idefics3ForConditionalGeneration(config).eval()
    image_processor = tf.Idefics3ImageProcessor(
        size={"longest_edge": 64},
        max_image_size={"longest_edge": 32},
        do_image_splitting=True,
    )
    processor = tf.Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=4,
        chat_template=IDEFICS3_CHAT_TEMPLATE,
    )
    return _save(
        Path(folder), model, processor, eos_id=ids["<end_of_utterance>"], pad_id=ids["<|end_of_text|>"]
    )


def write_one_image_processor(folder: Path) -> Path:
    """A folder whose processor takes one image per prompt (ShieldGemma 2's: an image-text-to-text model_type
    whose processor rejects a second image): ``config.json`` and the processor, no weights (it is refused first)."""
    import json

    import transformers as tf

    specials = ["<pad>", "<eos>", "<bos>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"]
    base = make_tokenizer(specials, eos="<eos>", pad="<pad>", bos="<bos>")
    tokenizer = tf.PreTrainedTokenizerFast(
        tokenizer_object=base.backend_tokenizer,
        eos_token="<eos>",
        pad_token="<pad>",
        bos_token="<bos>",
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    template = (
        "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<start_of_image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}\n"
        "{% endfor %}{% if add_generation_prompt %}model: {% endif %}"
    )
    processor = tf.ShieldGemma2Processor(
        image_processor=tf.Gemma3ImageProcessor(size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
        chat_template=template,
        image_seq_length=4,
    )
    folder = Path(folder)
    processor.save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "shieldgemma2"}))
    return folder
