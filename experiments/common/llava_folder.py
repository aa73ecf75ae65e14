"""LLaVA-OneVision folders in HF format written here, nothing downloaded: ``make gpu-check`` (config only, real
7B sizes) and ``make real-width`` (random weights at LLaVA-OneVision-0.5B's sizes, stored in float16 as released).

A folder has ``config.json`` (a SigLIP tower and a Qwen2 LM of the given sizes), a byte-level BPE tokenizer
trained on the given captions with Qwen2's special tokens and Qwen2-Instruct's chat template, and a
``preprocessor_config.json``; with ``weights_dtype`` also ``model.safetensors``: random weights built and stored as
transformers' LLaVA-OneVision conversion script builds and stores the released ones (default dtype float16 while
the model is built, every tensor float16, ``save_pretrained``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

CHAT_TEMPLATE = (  # Qwen2-Instruct's, which LLaVA-OneVision's tokenizer carries
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]


def write_tokenizer(folder: Path, captions: list[str]) -> Any:
    """A small byte-level BPE on ``captions`` with Qwen2's special tokens and chat template, saved to ``folder``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        [*captions, "You are a helpful assistant. Describe the differences between the two images. system user"],
        trainers.BpeTrainer(vocab_size=1000, special_tokens=SPECIALS, show_progress=False,
                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )  # fmt: skip
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=["<image>", "<video>"], chat_template=CHAT_TEMPLATE,
    )  # fmt: skip
    tokenizer.save_pretrained(folder)
    return tokenizer


def write_llava_folder(
    folder: Path,
    captions: list[str],
    *,
    tower: dict[str, Any],
    text: dict[str, Any],
    weights_dtype: torch.dtype | None = None,
    image_processor: bool = False,
    seed: int = 0,
) -> Path:
    """Write a LLaVA-OneVision folder (see the module docstring) and return it.

    ``tower`` / ``text``: ``SiglipVisionConfig`` / ``Qwen2Config`` keyword arguments. ``weights_dtype``: None writes
    no weights (``model.init_weights=false`` builds them); else random weights stored in that dtype.
    ``image_processor``: the preprocessor config names ``LlavaOnevisionImageProcessor`` with its released settings
    (square padding in the mean colour for several images); else only size, mean and std.
    """
    from transformers import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = write_tokenizer(folder, captions)
    config = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(**tower),
        text_config=Qwen2Config(**text, eos_token_id=tokenizer.eos_token_id),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
    )
    if weights_dtype is None:
        config.save_pretrained(folder)
    else:
        _write_weights(folder, config, weights_dtype, seed)
    size = tower["image_size"]
    pre: dict[str, Any] = {
        "image_mean": [0.5] * 3,
        "image_std": [0.5] * 3,
        "size": {"height": size, "width": size},
    }
    if image_processor:
        pre.update(image_processor_type="LlavaOnevisionImageProcessor", do_resize=True, resample=3,
                   do_rescale=True, rescale_factor=1 / 255, do_normalize=True, do_convert_rgb=True, do_pad=True)  # fmt: skip
    (folder / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    return folder


def _write_weights(folder: Path, config: Any, dtype: torch.dtype, seed: int) -> None:
    """Random weights built under ``dtype`` as the default dtype and saved in it (the conversion script's way)."""
    from transformers import LlavaOnevisionForConditionalGeneration

    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        model = LlavaOnevisionForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(previous)
    model.to(dtype).save_pretrained(folder)
