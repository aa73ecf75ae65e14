"""A released transformers vision-language model prompted with a pair's two images in one user turn (zero-shot).

Everything model-specific is transformers' own: ``AutoProcessor`` prepares each image from the raw 8-bit file (the
model's image processor: its resize, tiling, normalisation) and renders the prompt (its chat template);
``AutoModelForImageTextToText`` generates. The kit adds only what a pair needs: both images, then the instruction,
in one user turn (the system turn only when ``system_prompt`` is set: the template's own default applies otherwise),
batches padded on the left, greedy decoding unless told otherwise, and each caption cut at the end-of-turn token.

:func:`check_two_images` refuses, in one line, a model whose processor cannot take two images in one prompt, before
its weights are read. Tested on Qwen2-VL, Qwen2.5-VL and Idefics3 twins (tests/test_transformers_vlm.py); SmolVLM
is Idefics3's architecture with its own processor, which needs the ``num2words`` package (in requirements.txt).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

# What MODEL= is known to work with (through this file; LLaVA-OneVision through the kit's own captioner).
TESTED_FAMILIES = "Qwen2-VL, Qwen2.5-VL, Idefics3 / SmolVLM, LLaVA-OneVision"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class UnsupportedModelError(ValueError):
    """A model folder zero-shot captioning cannot use (its processor takes no pair of images, ...): one line."""


def is_image_text_to_text(model_type: str) -> bool:
    """Whether transformers' ``AutoModelForImageTextToText`` has a class for ``model_type`` (config.json)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES


def load_processor(folder: str | Path) -> Any:
    """``AutoProcessor.from_pretrained(folder)``; a processor that cannot be loaded is one line."""
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(str(folder))
    except ImportError as err:  # SmolVLM's processor imports num2words
        raise UnsupportedModelError(
            f"{folder}: its processor needs a package that is not installed: {err}"
        ) from None
    except (OSError, ValueError, KeyError) as err:
        raise UnsupportedModelError(f"{folder}: transformers cannot load its processor ({err})") from None


def pair_messages(instruction: str, system_prompt: str | None = None) -> list[dict[str, Any]]:
    """The conversation of one pair: ``[system,] user(image, image, instruction)``, content typed as every
    multimodal chat template takes it."""
    user = {
        "role": "user",
        "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": instruction}],
    }
    if system_prompt is None:
        return [user]
    return [{"role": "system", "content": [{"type": "text", "text": system_prompt}]}, user]


def check_two_images(processor: Any, folder: str | Path) -> None:
    """Refuse a processor that cannot put two images in one prompt: no image processor, no chat template, a
    template that renders no image, or a processor that rejects two images for one text (it says what it takes)."""
    name = type(processor).__name__
    refuse = f"{folder}: zero-shot captioning needs a processor that takes a pair's two images in one prompt"
    if getattr(processor, "image_processor", None) is None:
        raise UnsupportedModelError(f"{refuse}; its {name} takes no images")
    if not getattr(processor, "chat_template", None):
        raise UnsupportedModelError(f"{refuse}; its {name} has no chat template to lay a user turn out with")
    try:
        two = processor.apply_chat_template(pair_messages("?"), add_generation_prompt=True)
        one = processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "?"}]}],
            add_generation_prompt=True,
        )
    except Exception as err:  # a template error (jinja, a text-only template) is the model's, not a bug here
        raise UnsupportedModelError(f"{refuse}; its chat template cannot render two images ({err})") from None
    if two == one:
        raise UnsupportedModelError(f"{refuse}; its chat template places no image in the user turn")
    probe = Image.fromarray(np.full((48, 64, 3), 127, dtype=np.uint8))
    try:
        processor(text=[two], images=[[probe, probe]], return_tensors="pt")
    except Exception as err:  # the processor's own words on what it takes
        raise UnsupportedModelError(f"{refuse}; {name}: {err}") from None


def to_pil(image: torch.Tensor | Image.Image) -> Image.Image:
    """An 8-bit ``(3, H, W)`` tensor (the ``processor`` image pipeline) or a PIL image -> an RGB PIL image."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(
            f"a transformers model's processor takes the raw 8-bit image, got a {tuple(image.shape)} {image.dtype} "
            "tensor: build the DataModule with the image pipeline 'processor'"
        )
    return Image.fromarray(image.permute(1, 2, 0).cpu().numpy())


class TransformersCaptioner(nn.Module):
    """A transformers image-text-to-text model and its processor, captioning pairs zero-shot.

    Args:
        folder: the model folder (``config.json``, weights, processor files).
        dtype: the weights' dtype for the whole model (nothing is trained): ``float32`` / ``bfloat16`` / ``float16``.
        system_prompt: the system turn; ``None`` sends none (the chat template's own default applies).
        processor: an already loaded (and checked) processor of ``folder``; ``None`` loads and checks it.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        dtype: str = "float32",
        system_prompt: str | None = None,
        processor: Any = None,
    ) -> None:
        super().__init__()
        from transformers import AutoModelForImageTextToText

        if dtype not in DTYPES:
            raise ValueError(f"model.lm.dtype must be one of {sorted(DTYPES)} for MODEL=, got {dtype!r}")
        if processor is None:
            processor = load_processor(folder)
            check_two_images(processor, folder)
        self.processor = processor
        # Left padding: every prompt of a batch ends where its generation starts.
        self.processor.tokenizer.padding_side = "left"
        self.system_prompt = system_prompt
        self.model = AutoModelForImageTextToText.from_pretrained(str(folder), dtype=DTYPES[dtype]).eval()
        self.model.requires_grad_(False)
        tokenizer, generation = self.processor.tokenizer, self.model.generation_config
        ends = generation.eos_token_id if generation.eos_token_id is not None else tokenizer.eos_token_id
        # The released generation_config.json names the end of turn (Qwen2-VL: <|im_end|> and <|endoftext|>).
        self.end_ids: list[int] = [int(i) for i in (ends if isinstance(ends, (list, tuple)) else [ends])]
        pad = generation.pad_token_id if generation.pad_token_id is not None else tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.end_ids[0])
        if (
            tokenizer.pad_token_id is None
        ):  # a batch of prompts needs one; generate never reads it (attention mask)
            tokenizer.pad_token_id = self.pad_id

    def prompt(self, instruction: str) -> str:
        """The prompt text of one pair, rendered by the processor's chat template (generation prompt included)."""
        return self.processor.apply_chat_template(
            pair_messages(instruction, self.system_prompt), add_generation_prompt=True
        )

    def inputs(
        self, pairs: Sequence[tuple[Image.Image, Image.Image]], instructions: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """The processor's tensors for a batch of pairs (before, after), each with its instruction."""
        texts = [self.prompt(instruction) for instruction in instructions]
        return self.processor(
            text=texts, images=[[before, after] for before, after in pairs], padding=True, return_tensors="pt"
        )

    @torch.no_grad()
    def generate(
        self,
        pairs: Sequence[tuple[Image.Image, Image.Image]],
        instructions: Sequence[str],
        *,
        max_new_tokens: int,
        num_beams: int = 1,
        length_penalty: float = 1.0,
        use_cache: bool = True,
    ) -> tuple[list[list[int]], list[bool]]:
        """Caption token ids per pair (cut before the first end token) and whether each ran out of
        ``max_new_tokens`` without one. Greedy (``num_beams=1``) or beam search; never sampled; the folder's
        ``generation_config.json`` decides everything else (a repetition penalty, ...), as for ``model.generate``."""
        inputs = self.inputs(pairs, instructions)
        dtype = next(self.model.parameters()).dtype
        inputs = {
            k: v.to(self.model.device, dtype=dtype if v.is_floating_point() else None)
            for k, v in inputs.items()
        }
        out = self.model.generate(
            **inputs,
            do_sample=False,
            num_beams=num_beams,
            length_penalty=length_penalty,
            use_cache=use_cache,
            max_new_tokens=max_new_tokens,
            eos_token_id=self.end_ids,
            pad_token_id=self.pad_id,
        )
        sequences, cut = [], []
        for row in out[:, inputs["input_ids"].shape[1] :].tolist():
            end = next((i for i, token in enumerate(row) if token in self.end_ids), None)
            sequences.append(row if end is None else row[:end])
            cut.append(end is None and len(row) >= max_new_tokens)
        return sequences, cut

    def decode(self, sequences: Sequence[Sequence[int]]) -> list[str]:
        """Token ids -> caption text (special tokens dropped, surrounding space stripped)."""
        texts = self.processor.tokenizer.batch_decode(list(sequences), skip_special_tokens=True)
        return [text.strip() for text in texts]
