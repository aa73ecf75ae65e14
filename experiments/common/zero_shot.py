"""``MODEL=<folder or cached hub id>``: a released vision-language model scored or run as it is (zero-shot), with no
checkpoint.

:func:`zero_shot_parts` returns what ``make eval MODEL=`` and ``make caption MODEL=`` run: the run config, the
DataModule and the LightningModule. The kind of model is read from the folder's ``config.json`` (``model_type``):

* a family in :data:`CONFIGS` (LLaVA-OneVision) runs through the kit's own captioner, built by the run assembly
  (:func:`~experiments.common.assembly.assemble`) from a config that starts from the folder (MDP at the identity),
  so everything the kit resolves from it (tower, image pipeline, chat template, prompt, token limits) is what a
  fine-tune from the same folder starts with;
* any other transformers image-text-to-text model runs through transformers' own classes
  (:class:`~lightning_modules.transformers_captioner.TransformersCaptionerModule`): its processor prepares the raw
  images and renders the prompt with its chat template. A model whose processor cannot take a pair's two images in
  one prompt is refused in one line (:func:`~lightning_modules.model.transformers_vlm.check_two_images`), before
  its weights are read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import mdp
from experiments.common import assembly
from experiments.common.cli import UsageError
from experiments.common.config import load_config, to_container
from experiments.common.token_limits import resolve_token_limits
from lightning_modules.model import transformers_vlm

EXPERIMENT = "zero_shot"  # run folders: logs/zero_shot/<backbone>/..., e.g. make eval's default OUT


def llava_onevision_config(folder: Path, *, data: str, overrides: Sequence[str]) -> DictConfig:
    """A LLaVA-OneVision folder as released: ``model.init_from`` with the paper recipe's model settings
    (``conf/model/llava_onevision_lora.yaml``: instruction, caption limits, tapped layers, LM dtype) and nothing
    to train: MDP at the identity (``mdp.identity_init``, on with ``init_from``) and no LoRA adapters, so the
    captioner is the base model at step 0 (checked against transformers in tests/test_zero_shot.py)."""
    return load_config(
        groups={"model": "llava_onevision_lora", "data": data},
        overrides=[
            f"experiment={EXPERIMENT}",
            f"model.init_from={json.dumps(str(folder))}",
            "model.lora.enabled=false",
            *overrides,
        ],
    )


# config.json's model_type -> the run config that starts from such a folder (keyword arguments: data, overrides).
CONFIGS: dict[str, Callable[..., DictConfig]] = {"llava_onevision": llava_onevision_config}


def transformers_config(folder: Path, *, data: str, overrides: Sequence[str]) -> DictConfig:
    """Any other image-text-to-text folder: ``conf/model/zero_shot.yaml`` (instruction, caption limits, dtype), the
    folder as ``model.lm.name`` and, so that its run folder is named after it, ``backbone.name=hf:<folder>``."""
    return load_config(
        groups={"model": "zero_shot", "data": data},
        overrides=[
            f"experiment={EXPERIMENT}",
            f"model.lm.name={json.dumps(str(folder))}",
            f"backbone.name={json.dumps(f'hf:{folder}')}",
            "backbone.pretrained=null",
            *overrides,
        ],
    )


def resolve_model(model: str | Path) -> Path:
    """MODEL= as a folder: a local folder, or a hub id (``Qwen/Qwen2.5-VL-7B-Instruct``) already in the Hugging Face
    cache (nothing is downloaded: a usage error says how to get it)."""
    path = Path(model).expanduser()
    if path.is_dir() or path.is_absolute() or str(model).startswith(".") or str(model).count("/") != 1:
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(str(model), local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, OSError):
        raise UsageError(
            f"MODEL={model}: no such folder, and no such model in the Hugging Face cache; download it first, e.g. "
            f"huggingface-cli download {model}, or give its folder"
        ) from None


def model_type(folder: str | Path) -> str:
    """The ``model_type`` of a transformers folder's ``config.json`` (a usage error where there is none)."""
    path = Path(folder).expanduser() / "config.json"
    if not path.is_file():
        raise UsageError(
            f"MODEL={folder}: no config.json there; MODEL= is a model folder in Hugging Face format"
        )
    try:
        return str(json.loads(path.read_text(encoding="utf-8")).get("model_type", ""))
    except (json.JSONDecodeError, AttributeError) as err:
        raise UsageError(f"MODEL={folder}: {path.name} is not a JSON object ({err})") from None


def check_model(model: str | Path) -> tuple[Path, str, Any]:
    """MODEL= checked before anything heavy: its folder, its ``model_type``, and (transformers path) its processor,
    which must take two images in one prompt (``None`` for a :data:`CONFIGS` family). Refusals are one line."""
    folder = resolve_model(model)
    kind = model_type(folder)
    if kind in CONFIGS:
        return folder, kind, None
    if not transformers_vlm.is_image_text_to_text(kind):
        raise UsageError(
            f"MODEL={model}: model_type {kind!r} is not an image-text-to-text model of transformers; zero-shot "
            f"evaluation takes one whose processor puts two images in one prompt ({transformers_vlm.TESTED_FAMILIES})"
        )
    processor = transformers_vlm.load_processor(folder)
    transformers_vlm.check_two_images(processor, folder)
    return folder, kind, processor


def zero_shot_config(folder: str | Path, *, data: str = "", overrides: Sequence[str] = ()) -> DictConfig:
    """The run config of ``MODEL=<folder>`` (DATA= and ARGS= applied), before resolution."""
    path = resolve_model(folder)
    kind = model_type(path)
    make = CONFIGS.get(kind, transformers_config)
    return make(path, data=data, overrides=list(overrides))


def zero_shot_parts(folder: str | Path, *, data: str = "", overrides: Sequence[str] = ()) -> assembly.Parts:
    """The resolved config, DataModule and captioner (in eval mode) of ``MODEL=<folder>``."""
    path, kind, processor = check_model(folder)
    if kind not in CONFIGS:
        return transformers_parts(path, processor, data=data, overrides=overrides)
    cfg = zero_shot_config(path, data=data, overrides=overrides)
    assembly.apply_num_threads(cfg)
    parts = assembly.assemble(cfg, read_references=False)
    parts.module.eval()
    return parts


def transformers_parts(
    folder: Path, processor: Any, *, data: str, overrides: Sequence[str]
) -> assembly.Parts:
    """A transformers image-text-to-text model's parts: the DataModule hands the images as loaded (the ``processor``
    pipeline; the embedded benchmark renders at ``backbone.image_size``), null caption limits are measured on the
    training references in the model's own tokens, and the module is transformers' model with its processor."""
    from lightning_modules.transformers_captioner import TransformersCaptionerModule

    cfg = transformers_config(folder, data=data, overrides=overrides)
    assembly.apply_num_threads(cfg)
    spec = mdp.ImageSpec(
        size=int(cfg.backbone.image_size), mean=(0.5,) * 3, std=(0.5,) * 3, pipeline="processor"
    )
    datamodule = assembly.make_datamodule(cfg, spec)
    if cfg.model.max_caption_tokens is None or cfg.generation.max_new_tokens is None:
        captions = assembly.training_captions(datamodule, int(cfg.model.lm.tokenizer_captions))
        limits = resolve_token_limits(to_container(cfg), processor.tokenizer, captions)
        for key in ("model.max_caption_tokens", "generation.max_new_tokens"):
            OmegaConf.update(cfg, key, OmegaConf.select(OmegaConf.create(limits), key), merge=False)
    module = TransformersCaptionerModule(config=to_container(cfg), processor=processor)
    return assembly.Parts(cfg=cfg, datamodule=datamodule, module=module.eval())


def checkpoint_or_model(ckpt: str, model: str, usage: str) -> None:
    """Exactly one of CKPT= and MODEL= (a usage error otherwise)."""
    if ckpt and model:
        raise UsageError(
            f"CKPT= and MODEL= together: give one (a trained checkpoint or a released model): {usage}"
        )
    if not ckpt and not model:
        raise UsageError(f"CKPT= or MODEL= required: {usage}")
