"""Config values -> the plain-torch :class:`~lightning_modules.model.m3diff.M3Diff` (no Lightning here)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

import mdp
from lightning_modules.model.language_model import (
    apply_lora,
    build_language_model,
    freeze,
    keep_trainable_in_float32,
    lm_kwargs_from_config,
    lora_alpha,
    set_grad_checkpointing,
    torch_dtype,
)
from lightning_modules.model.llava_onevision import LlavaParts, copy_projector, load_llava_onevision
from lightning_modules.model.m3diff import M3Diff, build_mdp
from lightning_modules.model.prompt import PromptLayout, build_layout, prompt_for

KIT_ROOT = Path(__file__).resolve().parents[2]  # the checkout: lightning_modules/model/build.py -> ../..


def build_backbone(config: dict[str, Any]) -> mdp.Backbone:
    """The ``backbone`` section -> :class:`mdp.Backbone` (pretrained weights loaded; not frozen yet).

    ``config`` is a resolved run config (``experiments/common/assembly.py``): with ``model.init_from`` its
    backbone section already names the folder's tower (``hf:<folder>``), its weights and image size.
    """
    bb_cfg = config["backbone"]
    return mdp.build_backbone(
        bb_cfg["name"],
        layers=list(bb_cfg["layers"]),
        pretrained=checkout_path(bb_cfg["pretrained"]),
        image_size=bb_cfg["image_size"],
    )


def checkout_path(pretrained: Any) -> Any:
    """A relative weights path that is not there from the current folder but is in this checkout (the default
    backbone's ``experiments/weights/...``) -> that file; anything else unchanged. So a run, ``make eval`` or
    ``load_from_checkpoint`` started from another folder finds the weights the config names."""
    if isinstance(pretrained, str) and pretrained and not Path(pretrained).is_absolute():
        here, there = Path(pretrained), KIT_ROOT / pretrained
        if not here.exists() and there.exists():
            return str(there)
    return pretrained


def build_model(config: dict[str, Any], tokenizer: Any, *, backbone: mdp.Backbone | None = None) -> M3Diff:
    """Resolved config values + tokenizer -> :class:`M3Diff` (backbone, MDP, projector, LM; LoRA and freezing).

    ``backbone``: the one :func:`build_backbone` already made from this config (None: built here). With
    ``model.init_from`` the projector, image_newline and LM come from that LLaVA-OneVision folder (its tokenizer
    is ``tokenizer``): the one place the folder is read beyond what the resolved config names; otherwise the LM
    is ``model.lm.name``.
    """
    bb_cfg, model_cfg, lm_cfg = config["backbone"], config["model"], config["model"]["lm"]
    backbone = build_backbone(config) if backbone is None else backbone
    layout = build_layout(tokenizer, model_cfg["prompt"], prompt_for(config, tokenizer))
    init_from = model_cfg.get("init_from")
    if init_from:
        parts = _llava_parts(config, backbone)
        lm = parts.lm
    else:
        parts = None
        lm = _fresh_language_model(config, tokenizer, backbone, layout)
    # identity_init only decides the initial weights (a resolved config has true / false; null, in a checkpoint of
    # an older kit, changes nothing: its trained weights are loaded over them).
    difference = build_mdp(
        {**config["mdp"], "identity_init": bool(config["mdp"].get("identity_init"))},
        width=backbone.width,
        num_layers=len(backbone.layers),
    )
    lm = _trainable_language_model(lm, model_cfg)
    if bb_cfg["freeze"]:
        freeze(backbone)
    model = M3Diff(
        backbone=backbone,
        difference=difference,
        lm=lm,
        text_segments=layout.segments,
        token_pool=model_cfg["token_pool"],
        projector_hidden=model_cfg["projector_hidden"],
        projector_act=parts.projector_act if parts else "gelu",
        segment_embeddings=parts is None,
        image_newline=parts is not None,
        image_positions=model_cfg.get("image_positions", "none"),
        grid=getattr(backbone, "grid", None),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=layout.end_token_id,
    )
    if parts is not None:
        copy_projector(parts.projector, model.projector)
        with torch.no_grad():
            model.image_newline.copy_(parts.image_newline)
    # Every trained tensor in float32, whatever a folder stored (float16 / bfloat16 releases): AdamW's master
    # weights. mdp builds towers in float32 already; this also covers any other part read in half precision.
    keep_trainable_in_float32(model)
    if bb_cfg.get("grad_checkpointing"):
        backbone.set_grad_checkpointing(True)
    if lm_cfg.get("grad_checkpointing"):
        set_grad_checkpointing(lm, True)
    # from_pretrained hands models over in eval mode; Lightning keeps submodules' modes, so without this LoRA
    # dropout would be off and transformers' checkpointing (active in training mode only) never run.
    return model.train()


def _llava_parts(config: dict[str, Any], backbone: mdp.Backbone) -> LlavaParts:
    """``model.init_from``'s LLaVA-OneVision LM, projector and image_newline (the tower is ``backbone``)."""
    model_cfg = config["model"]
    if model_cfg["token_pool"] != 1:
        raise ValueError(
            "model.init_from lays the images out as LLaVA-OneVision does, every patch token: model.token_pool=1"
        )
    return load_llava_onevision(
        model_cfg["init_from"],
        layers=list(config["backbone"]["layers"]),
        load_weights=model_cfg.get("init_weights", True),
        lm_dtype=torch_dtype(model_cfg["lm"].get("dtype", "float32")),
        backbone=backbone,
    )


def _fresh_language_model(
    config: dict[str, Any], tokenizer: Any, backbone: mdp.Backbone, layout: PromptLayout
) -> nn.Module:
    """``model.lm.name`` with room for both images' tokens, the prompt, the caption and generated tokens."""
    model_cfg, lm_cfg = config["model"], config["model"]["lm"]
    # Pooling uses ceil_mode, so a 7x7 grid pooled by 2 gives 4x4 tokens, not 49 // 4.
    pool = model_cfg["token_pool"]
    grid_tokens = math.ceil(backbone.grid[0] / pool) * math.ceil(backbone.grid[1] / pool)
    caption_tokens, new_tokens = model_cfg["max_caption_tokens"], config["generation"]["max_new_tokens"]
    if caption_tokens is None or new_tokens is None:
        raise ValueError(
            "a tiny LM's position table needs model.max_caption_tokens and generation.max_new_tokens: the "
            "run assembly sets them from the training captions (experiments/common/assembly.py); set both when "
            "building the model yourself"
        )
    max_positions = 2 * grid_tokens + sum(len(s) for s in layout.segments) + caption_tokens + new_tokens
    lm_dtype = torch_dtype(lm_cfg.get("dtype", "float32"))
    return build_language_model(**lm_kwargs_from_config(lm_cfg, tokenizer, max_positions), dtype=lm_dtype)


def _trainable_language_model(lm: nn.Module, model_cfg: dict[str, Any]) -> nn.Module:
    """``model.freeze_lm`` and ``model.lora`` applied; what stays trainable kept in float32."""
    if model_cfg["freeze_lm"]:
        freeze(lm)
    lora = model_cfg["lora"]
    if lora["enabled"]:
        lm = apply_lora(
            lm,
            r=lora["r"],
            alpha=lora_alpha(lora),
            dropout=lora["dropout"],
            target_modules=lora["target_modules"],
        )
    keep_trainable_in_float32(lm)
    return lm
