"""A tiny random LLaVA-OneVision in HF format, written with transformers alone (no kit code), for the tests that
check the kit against ``LlavaOnevisionForConditionalGeneration``.

The folder has what ``llava-hf/llava-onevision-qwen2-7b-ov-hf`` has, at toy size: ``config.json`` (a few-layer
SigLIP tower, a Qwen2 LM), ``model.safetensors``, a byte-level BPE tokenizer with Qwen2's special tokens and chat
template, and ``preprocessor_config.json``. :func:`save_processor` adds LLaVA-OneVision's processor with the
conversion script's chat template, as ``processor.save_pretrained`` writes it (or as folders released with
transformers 4 hold it: ``chat_template.json``, the tokenizer's own template in ``tokenizer_config.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

# Qwen2-Instruct's chat template (the one LLaVA-OneVision's tokenizer carries).
QWEN2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# The processor chat template of transformers' LLaVA-OneVision conversion script
# (models/llava_onevision/convert_llava_onevision_weights_to_hf.py): typed content, images first, no system turn.
PROCESSOR_CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}"
    "{{ content['text'] }}{% endgeneration %}{% endfor %}{% endif %}{{'<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
CORPUS = [
    "the red cube on the left is gone. a small blue sphere appears behind the cylinder.",
    "describe the differences between the two images.",
    "you are a helpful assistant. system user assistant",
    "the lighting changed; the camera moved to the right; nothing else changed.",
]


def make_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(CORPUS * 20, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<image>", "<video>"],
        chat_template=QWEN2_CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
    )


def write_llava_twin(
    folder: Path,
    *,
    vision_layers: int = 6,
    text_layers: int = 2,
    image_size: int = 32,
    patch_size: int = 8,
    seed: int = 0,
    dtype: str = "float32",
) -> Path:
    """Write the twin to ``folder`` and return it (a 4x4 patch grid at the defaults: 16 + 1 tokens per image).

    ``dtype``: the weights' storage dtype; ``"float16"`` as released LLaVA-OneVision folders are written (transformers'
    conversion script casts every tensor to float16 before ``save_pretrained``), the float32 twin's values rounded.
    """
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        Qwen2Config,
        SiglipVisionConfig,
    )

    tokenizer = make_tokenizer()
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=vision_layers,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
        vision_use_head=False,
    )
    text = Qwen2Config(
        vocab_size=len(tokenizer) + 11,  # padded past the tokenizer, as Qwen2's 152064 rows are
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=text_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
        initializer_range=0.2,  # decisive logits: greedy decoding has no near-ties to break differently
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = LlavaOnevisionConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
    )
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    with torch.no_grad():  # HF initialises image_newline to zeros-ish; a distinct vector catches misplacement
        model.model.image_newline.normal_()
    store_as(model, dtype)
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor_config(image_size), indent=2))
    return folder


def store_as(model, dtype: str) -> None:
    """Weights cast to ``dtype`` and every (sub-)config saying so, as a model loaded in that dtype saves itself."""
    if dtype != "float32":
        model.to(getattr(torch, dtype))
        for part in (model.config, *(getattr(model.config, key) for key in model.config.sub_configs)):
            part.dtype = getattr(torch, dtype)


def preprocessor_config(image_size: int) -> dict:
    """The image processor's settings: a plain resize to the tower's size, SigLIP's 0.5 mean and std."""
    return {
        "image_processor_type": "LlavaOnevisionImageProcessor",
        "do_resize": True,
        "size": {"height": image_size, "width": image_size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }


def save_processor(folder: Path, *, legacy: bool = False, num_image_tokens: int = 16) -> Path:
    """Save LLaVA-OneVision's processor (the folder's tokenizer and image processor, the conversion script's chat
    template) into ``folder``.

    ``legacy=False``: ``processor.save_pretrained`` of this transformers: ``chat_template.jinja`` (the processor's
    template, over the tokenizer's own) and ``processor_config.json`` with the image processor inside it, no
    ``preprocessor_config.json``. ``legacy=True``: the layout of folders released with transformers 4: the
    tokenizer's own (Qwen2) template in ``tokenizer_config.json``, the processor's in ``chat_template.json``,
    ``preprocessor_config.json`` kept.
    """
    from transformers import (
        AutoImageProcessor,
        AutoTokenizer,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    folder = Path(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    processor = LlavaOnevisionProcessor(
        image_processor=AutoImageProcessor.from_pretrained(folder),
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(),
        num_image_tokens=num_image_tokens,
        vision_feature_select_strategy="full",
        chat_template=PROCESSOR_CHAT_TEMPLATE,
    )
    if not legacy:
        (folder / "preprocessor_config.json").unlink()
        processor.save_pretrained(folder)
        return folder
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    tokenizer.save_pretrained(folder, save_jinja_files=False)  # the template into tokenizer_config.json
    (folder / "chat_template.json").write_text(
        json.dumps({"chat_template": PROCESSOR_CHAT_TEMPLATE}, indent=2)
    )
    settings = {
        k: v for k, v in processor.to_dict().items() if k not in ("image_processor", "video_processor")
    }
    (folder / "processor_config.json").write_text(json.dumps(settings, indent=2))
    return folder
