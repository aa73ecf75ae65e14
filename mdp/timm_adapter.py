"""timm ViTs as :class:`~mdp.Backbone`: taps through ``forward_intermediates`` (timm is imported lazily)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from torch import Tensor

from ._optional import require
from .backbone import Backbone, ImageSpec, resolve_layers
from .weights import resolve_timm, wants_weights

_VIT_ONLY = "mdp taps the blocks of ViT-style models (vit_*, deit_*, eva_*, *_siglip_*, ...)"


class TimmBackbone(Backbone):
    """A timm ViT-style model (``.blocks`` + ``.patch_embed``); prefix tokens are dropped by timm."""

    def forward_taps(self, images: Tensor, indices: list[int]) -> list[Tensor]:
        return self.model.forward_intermediates(
            images, indices=indices, output_fmt="NLC", intermediates_only=True, stop_early=True
        )


def default_layers(depth: int) -> tuple[int, ...]:
    """Three taps two blocks apart, ending at the last block (the paper's spacing, scaled down)."""
    return tuple(sorted({max(0, depth - 5), max(0, depth - 3), depth - 1}))


def build_timm(
    *,
    name: str,
    model_name: str,
    layers: Sequence[int] | None,
    pretrained: Any,
    image_size: int | None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    cache_dir: str | None = None,
    prune: bool = True,
    **model_kwargs: Any,
) -> TimmBackbone:
    """Build ``timm.create_model(model_name, **model_kwargs)`` and wrap it.

    Args:
        name: registry name (for messages).
        layers: block indices to tap (negative = from the end); None = :func:`default_layers`.
        pretrained: None = random init; see :func:`mdp.weights.resolve_timm` for the rest.
        image_size: square input side; None = the model's default.
        mean, std: override the normalisation timm reports for the model.
        prune: drop blocks after the deepest tap and the head (unused, and DDP dislikes unused params).
    """
    timm = require("timm", backbone=name)
    kwargs = dict(model_kwargs)
    if image_size is not None:
        kwargs["img_size"] = image_size
    arch, checkpoint = model_name, None
    if wants_weights(pretrained):
        arch, checkpoint = resolve_timm(model_name, pretrained, backbone=name, cache_dir=cache_dir)
        kwargs["pretrained"] = True
        if checkpoint is not None:
            # custom_load (timm's .npz reader) describes the registry's file, not ours: older timm kept it
            # for an overlaid file and read a .pth as .npz.
            kwargs["pretrained_cfg_overlay"] = {
                "file": checkpoint,
                "custom_load": checkpoint.endswith(".npz"),
            }
    model = _create_vit(timm, arch, kwargs, name=name)
    depth = len(model.blocks)
    taps = resolve_layers(default_layers(depth) if layers is None else layers, depth, name=name)
    if prune:
        model.prune_intermediate_layers(sorted(taps), prune_norm=True, prune_head=True)
    cfg = model.pretrained_cfg
    grid = tuple(int(g) for g in model.patch_embed.grid_size)
    spec = ImageSpec(
        size=image_size if image_size is not None else int(cfg["input_size"][-1]),
        mean=tuple(mean if mean is not None else cfg["mean"]),
        std=tuple(std if std is not None else cfg["std"]),
    )
    return TimmBackbone(name=name, model=model, spec=spec, width=model.embed_dim, layers=taps, grid=grid)


def _create_vit(timm: Any, arch: str, kwargs: dict[str, Any], *, name: str) -> Any:
    """``timm.create_model(arch, num_classes=0, **kwargs)``; ValueError unless it is a ViT-style model."""
    try:
        model = timm.create_model(arch, num_classes=0, **kwargs)
    except TypeError as e:
        if "img_size" not in str(e):
            raise
        raise ValueError(
            f"backbone {name!r}: timm model {arch!r} takes no img_size, so it is not a ViT; {_VIT_ONLY}"
        ) from e
    except RuntimeError as e:
        if "Unknown model" not in str(e):
            raise
        close = difflib.get_close_matches(arch, timm.list_models(), n=5)
        raise ValueError(f"backbone {name!r}: timm has no model {arch!r}; close matches: {close}") from e
    if not (
        hasattr(model, "blocks") and hasattr(model, "patch_embed") and hasattr(model, "forward_intermediates")
    ):
        raise ValueError(
            f"backbone {name!r}: timm model {arch!r} is not a ViT-style model (.blocks, .patch_embed, "
            f"forward_intermediates); {_VIT_ONLY}"
        )
    return model
