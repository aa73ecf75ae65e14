"""Config values -> the plain-torch :class:`~lightning_modules.model.m3diff.M3Diff` (no Lightning here)."""

from __future__ import annotations

import math
from typing import Any

import mdp
from lightning_modules.model.language_model import (
    apply_lora,
    build_language_model,
    freeze,
    lm_kwargs_from_config,
)
from lightning_modules.model.m3diff import M3Diff, build_mdp


def build_backbone(config: dict[str, Any]) -> mdp.Backbone:
    """The ``backbone`` section -> :class:`mdp.Backbone` (pretrained weights loaded; not frozen yet)."""
    bb_cfg = config["backbone"]
    return mdp.build_backbone(
        bb_cfg["name"],
        layers=list(bb_cfg["layers"]),
        pretrained=bb_cfg["pretrained"],
        image_size=bb_cfg["image_size"],
    )


def build_model(config: dict[str, Any], tokenizer: Any, *, backbone: mdp.Backbone | None = None) -> M3Diff:
    """Config values + tokenizer -> :class:`M3Diff` (backbone, MDP, projector, LM; LoRA and freezing).

    ``backbone``: the one :func:`build_backbone` already made from this config (None: built here).
    """
    bb_cfg, model_cfg = config["backbone"], config["model"]
    backbone = build_backbone(config) if backbone is None else backbone
    difference = build_mdp(config["mdp"], width=backbone.width, num_layers=len(backbone.layers))
    prompt_ids = (
        tokenizer(model_cfg["prompt"], add_special_tokens=False)["input_ids"] if model_cfg["prompt"] else []
    )
    # Pooling uses ceil_mode, so a 7x7 grid pooled by 2 gives 4x4 tokens, not 49 // 4.
    pool = model_cfg["token_pool"]
    grid_tokens = math.ceil(backbone.grid[0] / pool) * math.ceil(backbone.grid[1] / pool)
    max_positions = (
        2 * grid_tokens
        + len(prompt_ids)
        + model_cfg["max_caption_tokens"]
        + config["generation"]["max_new_tokens"]
    )
    lm = build_language_model(**lm_kwargs_from_config(model_cfg["lm"], tokenizer, max_positions))
    if model_cfg["freeze_lm"]:
        freeze(lm)
    lora = model_cfg["lora"]
    if lora["enabled"]:
        lm = apply_lora(
            lm,
            r=lora["r"],
            alpha=lora["alpha"],
            dropout=lora["dropout"],
            target_modules=lora["target_modules"],
        )
    if bb_cfg["freeze"]:
        freeze(backbone)
    return M3Diff(
        backbone=backbone,
        difference=difference,
        lm=lm,
        prompt_ids=prompt_ids,
        token_pool=model_cfg["token_pool"],
        projector_hidden=model_cfg["projector_hidden"],
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
