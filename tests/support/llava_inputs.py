"""The two sides the LLaVA-OneVision equality tests compare on a twin (:mod:`support.llava_twin`): the kit's
config for a fine-tune from the folder (:func:`twin_config`), and transformers' own processor inputs for the same
instruction (:func:`hf_inputs`)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from experiments.common.assembly import resolve_static
from experiments.common.config import load_config

INSTRUCTION = "Describe the differences between the two images."


def twin_config(folder, *overrides, groups=None):
    cfg = load_config(
        groups=groups,
        overrides=[
            f"model.init_from={folder}",
            f"model.prompt={INSTRUCTION}",
            "model.lora.enabled=true",
            "model.lora.r=4",
            "model.lora.alpha=8",
            "model.max_caption_tokens=32",  # built here, not by the run assembly: no limits measured on data
            "generation.max_new_tokens=12",
            *overrides,
        ],
    )
    return resolve_static(cfg)


def hf_processor(folder):
    """LLaVA-OneVision's processor around the folder's tokenizer and image processor (the twin has no processor
    files of its own; tests/support/llava_twin.py's save_processor writes them)."""
    from transformers import (
        AutoImageProcessor,
        AutoTokenizer,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    return LlavaOnevisionProcessor(
        image_processor=AutoImageProcessor.from_pretrained(folder),
        tokenizer=AutoTokenizer.from_pretrained(folder),
        video_processor=LlavaOnevisionVideoProcessor(),
        num_image_tokens=16,
        vision_feature_select_strategy="full",
    )


def hf_inputs(folder, instruction: str, seed: int, text: str | None = None) -> dict:
    """Two random 32 px images and ``instruction`` (or the rendered prompt ``text``) through LLaVA-OneVision's own
    processor."""
    processor = hf_processor(folder)
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(2)]
    if text is None:
        user = {"role": "user", "content": f"<image>\n<image>\n{instruction}"}
        text = processor.tokenizer.apply_chat_template([user], tokenize=False, add_generation_prompt=True)
    return processor(text=[text], images=[images], return_tensors="pt")
