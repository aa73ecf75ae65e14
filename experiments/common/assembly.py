"""Config -> the run's parts, resolved once: backbone -> DataModule -> tokenizer -> token limits -> captioner.

Some values of a run are decided at its start, not in any file: ``model.init_from`` names the backbone, the LM
and their sizes; ``mdp.identity_init: null`` means "on with ``init_from``"; ``null`` caption token limits are
measured on the training references. :func:`assemble` decides all of them here, in one place, and returns the
**resolved config** with the parts built from it. That config is what ``config.yaml`` in the run folder and
the checkpoint's ``hyper_parameters.config`` hold, so ``load_from_checkpoint``, ``make eval`` and a resumed run
rebuild exactly the model that was trained, reading it back with no further resolution.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

import mdp
from datamodules import build_datamodule
from datamodules.config import ConfigError
from datamodules.errors import DataError
from experiments.common.config import CONF_DIR, to_container
from experiments.common.token_limits import resolve_token_limits
from lightning_modules.captioner import CaptionerModule
from lightning_modules.model.build import build_backbone
from lightning_modules.model.language_model import is_tiny_lm, lora_alpha
from lightning_modules.model.llava_onevision import InitFromError, check_folder, read_config
from lightning_modules.model.prompt import ChatTemplateError, resolve_template_choice
from lightning_modules.model.tokenizer import (
    load_pretrained_tokenizer,
    tokenizer_from_json,
    train_caption_tokenizer,
)

log = logging.getLogger("m3diff")


@dataclass
class Parts:
    """What :func:`assemble` built: the resolved config (save exactly this), the DataModule and the captioner."""

    cfg: DictConfig
    datamodule: L.LightningDataModule
    module: CaptionerModule


def assemble(
    cfg: DictConfig,
    *,
    tokenizer_json: str | None = None,
    device: torch.device | str | None = None,
    check: Any = None,
    read_references: bool = True,
) -> Parts:
    """Build the run's parts from ``cfg``, each from what the one before it produced:

    1. the config-only decisions (:func:`resolve_static`);
    2. the backbone (``backbone.*``; missing weights fail here, first): its ``spec`` is the input size and
       mean/std its weights expect;
    3. the DataModule, preparing images with that spec;
    4. the caption tokenizer of a tiny LM, trained on the training captions (a resumed run passes its
       checkpoint's ``tokenizer_json``: its weights were trained with those token ids);
    5. the caption token limits left ``null``, measured on the training captions in that tokenizer's tokens;
    6. ``check(resolved_cfg)`` if given (a resumed run compares with its checkpoint here, before the model);
    7. the captioner around that backbone (MDP, projector, LM), from the resolved config's values alone.

    ``device``: where parameters are created (random init of billions of weights straight on the GPU).
    ``read_references=False``: steps 4-5 read the training references only if something needs them (a tiny LM's
    tokenizer, a ``null`` limit), not to report what set limits cut (zero-shot evaluation and captioning).
    """
    cfg = resolve_static(cfg)
    config = to_container(cfg)
    with torch.device(device) if device is not None else _no_device():
        backbone = _backbone(config)
    datamodule = make_datamodule(cfg, backbone.spec)
    if read_references or _needs_references(cfg, tokenizer_json):
        captions = training_captions(datamodule, int(cfg.model.lm.tokenizer_captions))
        if not captions:  # what the training DataLoader would stop at, said before the model is built
            raise DataError("no usable pairs in split 'train'", file=datamodule.config.root)
        if tokenizer_json is None:
            tokenizer_json = make_tokenizer(cfg, datamodule, captions)
        config = resolve_token_limits(config, caption_tokenizer(config, tokenizer_json), captions)
    cfg = _as_config(cfg, config)
    if check is not None:
        check(cfg)
    with torch.device(device) if device is not None else _no_device():
        module = CaptionerModule(config=to_container(cfg), tokenizer_json=tokenizer_json, backbone=backbone)
    return Parts(cfg=cfg, datamodule=datamodule, module=module)


def _needs_references(cfg: DictConfig, tokenizer_json: str | None) -> bool:
    """Whether the run cannot be built without its training references: a tiny LM's tokenizer to train, or a
    ``null`` token limit to measure."""
    limits = (cfg.model.max_caption_tokens, cfg.generation.max_new_tokens)
    return (tokenizer_json is None and is_tiny_lm(cfg.model.lm.name)) or any(v is None for v in limits)


def resolve_static(cfg: DictConfig) -> DictConfig:
    """The decisions that need no data (idempotent; ``cfg`` is not modified):

    - ``model.init_from``: the backbone and LM are the folder's, so the config says so (run folder name, saved
      config, TensorBoard hparams): ``backbone.name=hf:<folder>``, its weights (``model.init_weights``) and
      image size, ``model.lm.name=<folder>``; LLaVA-OneVision's multi-image layout feeds every patch token
      (``model.token_pool=1``) with no position signal of the kit's own (``model.image_positions=none``: the
      released projector's outputs go to the LM unchanged, so step 0 is the released model); ``model.chat_template`` says which of the folder's chat templates renders the prompt
      (null: the processor's, else the tokenizer's; lightning_modules/model/prompt.py), and a folder with none is an
      error.
    - ``mdp.identity_init: null`` -> on with ``model.init_from`` (the pretrained projector first sees the
      features it was trained on), off otherwise.
    - ``model.lora.alpha: null`` -> 2 x ``model.lora.r`` (the paper's 256 at r=128; a changed r keeps the scale).
    """
    cfg = cfg.copy()
    folder = cfg.model.get("init_from")
    resolved: dict[str, Any] = {}
    if folder:
        try:  # the folder, its chat template and the tap list, checked before anything is read from its weights
            config = read_config(folder)
            check_folder(config, folder, list(cfg.backbone.layers))
            template = resolve_template_choice(folder, cfg.model.get("chat_template"))
        except (InitFromError, ChatTemplateError) as err:
            raise ConfigError(str(err)) from None
        tower = config.vision_config
        resolved = {
            "backbone.name": f"hf:{folder}",
            "backbone.pretrained": folder if cfg.model.init_weights else None,
            "backbone.image_size": int(tower.image_size),
            "model.lm.name": str(folder),
            "model.token_pool": 1,
            "model.image_positions": "none",
            "model.chat_template": template,
        }
    if cfg.mdp.identity_init is None:
        resolved["mdp.identity_init"] = bool(folder)
    if cfg.model.lora.alpha is None:
        resolved["model.lora.alpha"] = lora_alpha(cfg.model.lora)
    changed = {k: v for k, v in resolved.items() if OmegaConf.select(cfg, k) != v}
    for key, value in changed.items():
        OmegaConf.update(cfg, key, value, merge=False)
    if folder and changed:
        log.info("model.init_from=%s sets %s", folder, ", ".join(f"{k}={v}" for k, v in changed.items()))
    return cfg


def make_datamodule(cfg: DictConfig, spec: mdp.ImageSpec | None = None) -> L.LightningDataModule:
    """The DataModule of ``cfg.data``, preparing images as ``spec`` (the backbone's) says. ``None`` is for
    readers of the data that feed no model (caption statistics, ``make data-info``): ``backbone.image_size``
    pixels, mean/std 0.5."""
    spec = spec or mdp.ImageSpec(size=int(cfg.backbone.image_size), mean=(0.5,) * 3, std=(0.5,) * 3)
    return build_datamodule(
        to_container(cfg.data),
        image_size=spec.size,
        mean=spec.mean,
        std=spec.std,
        pipeline=spec.pipeline,
        seed=int(cfg.seed),
    )


def training_captions(datamodule: Any, limit: int) -> list[str]:
    """References of the training split (the tiny LM's tokenizer and the token limits are measured on them)."""
    return list(datamodule.training_captions(limit))


def make_tokenizer(cfg: DictConfig, datamodule: Any, captions: Sequence[str] | None = None) -> str | None:
    """A tiny LM's caption tokenizer (JSON), trained on the training captions (``captions`` when already read);
    None for a pretrained LM."""
    if not is_tiny_lm(cfg.model.lm.name):
        return None
    if captions is None:
        captions = training_captions(datamodule, int(cfg.model.lm.tokenizer_captions))
    return train_caption_tokenizer(list(captions), vocab_size=int(cfg.model.lm.vocab_size))


def caption_tokenizer(config: dict[str, Any], tokenizer_json: str | None) -> Any:
    """The tokenizer the captioner will use: the tiny LM's trained one, or the pretrained LM's own."""
    if tokenizer_json is not None:
        return tokenizer_from_json(tokenizer_json)
    return load_pretrained_tokenizer(config["model"]["lm"]["name"])


def apply_num_threads(cfg: DictConfig) -> None:
    """``num_threads``: on a machine shared with other jobs one thread beats two (OpenMP barriers stall)."""
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))


def _backbone(config: dict[str, Any]) -> mdp.Backbone:
    """The backbone, a name or setting it refuses (``ValueError`` from mdp / timm / open_clip) a ConfigError
    that also lists the kit's own names: conf/backbone files (BACKBONE=) and mdp's registry (backbone.name). A folder's
    image processor the kit does not reproduce and a tap list the backbone does not have stay what they are."""
    try:
        return build_backbone(config)
    except (mdp.ImageProcessorError, mdp.LayersError):
        raise  # one line as they are: the file / backbone.layers named (experiments/common/cli.py)
    except ValueError as err:
        name = config["backbone"]["name"]
        message = f"backbone.name={name!r}: {err}"
        if name not in mdp.list_backbones():
            groups = sorted(p.stem for p in (CONF_DIR / "backbone").glob("*.yaml") if p.stem != "timm")
            typed = name.split(":", 1)[-1]
            close = difflib.get_close_matches(typed, [*groups, *mdp.list_backbones()], n=3, cutoff=0.5)
            message += (
                f". The kit's own: BACKBONE= {groups} (conf/backbone/), backbone.name= {mdp.list_backbones()}"
                + (f"; did you mean {close}?" if close else "")
            )
        raise ConfigError(message) from None


def _as_config(cfg: DictConfig, config: dict[str, Any]) -> DictConfig:
    """The measured token limits of ``config`` written onto a copy of the structured ``cfg``."""
    out = cfg.copy()
    for key in ("model.max_caption_tokens", "generation.max_new_tokens"):
        OmegaConf.update(out, key, OmegaConf.select(OmegaConf.create(config), key), merge=False)
    return out


class _no_device:
    """A no-op context (``torch.device(None)`` is not one)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
