"""open_clip vision towers (CLIP, SigLIP) as :class:`~mdp.Backbone` (open_clip is imported lazily)."""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ._optional import require
from .backbone import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    SIGLIP_MEAN,
    SIGLIP_STD,
    Backbone,
    ImageSpec,
    resolve_layers,
)
from .timm_adapter import default_layers
from .weights import resolve_open_clip, wants_weights

_CONFIG_DIR = Path(__file__).parent / "model_configs"
_registered = False


class OpenClipBackbone(Backbone):
    """``model`` is open_clip's ``VisionTransformer`` (CLIP) or ``TimmModel`` (SigLIP); both drop prefix tokens."""

    def forward_taps(self, images: Tensor, indices: list[int]) -> list[Tensor]:
        out = self.model.forward_intermediates(
            images, indices=indices, output_fmt="NLC", intermediates_only=True, stop_early=True
        )
        return out["image_intermediates"]


def register_tiny_configs() -> None:
    """Make the tiny test models known to open_clip (and the tiny SigLIP trunk to timm), once."""
    global _registered
    if _registered:
        return
    import open_clip

    from . import _timm_tiny  # noqa: F401  (registers the timm entrypoint the SigLIP config names)

    open_clip.add_model_config(_CONFIG_DIR)
    _registered = True


def _vision_tower(model_name: str, cfg: dict[str, Any], image_size: int, quick_gelu: bool) -> nn.Module:
    """Random-init vision tower alone: the text tower of a real size would cost seconds and GBs for nothing."""
    import open_clip

    vision_cfg = dict(cfg["vision_cfg"], image_size=image_size)
    try:
        # Same builder CLIP.__init__ uses, so the architecture is identical to the full model's `.visual`.
        from open_clip.model import _build_vision_tower
    except ImportError:  # pragma: no cover - private helper moved: fall back to the public, slower path
        model = open_clip.create_model(model_name, force_image_size=image_size, force_quick_gelu=quick_gelu)
        return model.visual
    visual = _build_vision_tower(
        cfg["embed_dim"], vision_cfg, quick_gelu=quick_gelu or cfg.get("quick_gelu", False)
    )
    if hasattr(visual, "trunk") and hasattr(visual, "set_input_size"):
        visual.set_input_size(
            image_size
        )  # TimmModel builds its timm trunk at 224 px whatever image_size says
    return visual


def build_open_clip(
    *,
    name: str,
    model_name: str,
    layers: Sequence[int] | None,
    pretrained: Any,
    image_size: int | None,
    default_tag: str | None = None,
    quick_gelu: bool = False,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    cache_dir: str | None = None,
    prune: bool = True,
) -> OpenClipBackbone:
    """Build the vision tower of open_clip model ``model_name`` and wrap it.

    Args:
        name: registry name (for messages).
        layers: block indices to tap (negative = from the end); None = three taps ending at the last block.
        pretrained: None = random init (vision tower only); else a tag, ``hf-hub:org/repo``, or a local
            file / folder, loaded through ``open_clip.create_model`` (full checkpoint, then ``.visual``).
        image_size: square input side; None = the config's. Position embeddings are resampled.
        default_tag: tag used for ``pretrained=True`` / ``"default"``.
        quick_gelu: QuickGELU activations (OpenAI CLIP weights were trained with them).
        mean, std: normalisation; None = the tag's, else SigLIP's 0.5/0.5 for SigLIP names and CLIP's
            otherwise (open_clip reports CLIP's for *any* random-init model, wrong for SigLIP).
        prune: drop blocks after the deepest tap, the final norm and the pooling head.
    """
    open_clip = require("open_clip", backbone=name)
    register_tiny_configs()
    cfg = _model_config(open_clip, model_name, name=name)
    size = image_size if image_size is not None else _side(cfg["vision_cfg"].get("image_size", 224))
    tag_cfg: dict[str, Any] = {}
    if wants_weights(pretrained):
        visual, tag_cfg = _pretrained_tower(
            name=name,
            model_name=model_name,
            pretrained=pretrained,
            size=size,
            default_tag=default_tag,
            quick_gelu=quick_gelu,
            cache_dir=cache_dir,
        )
    else:
        visual = _vision_tower(model_name, cfg, size, quick_gelu)

    depth, width, grid = _geometry(visual, name=name, model_name=model_name)
    taps = resolve_layers(default_layers(depth) if layers is None else layers, depth, name=name)
    if prune:
        _prune(visual, sorted(taps))

    siglip = "siglip" in model_name.lower()
    spec = ImageSpec(
        size=size,
        mean=tuple(mean or tag_cfg.get("mean") or (SIGLIP_MEAN if siglip else OPENAI_CLIP_MEAN)),
        std=tuple(std or tag_cfg.get("std") or (SIGLIP_STD if siglip else OPENAI_CLIP_STD)),
    )
    grid = (int(grid[0]), int(grid[1]))
    return OpenClipBackbone(name=name, model=visual, spec=spec, width=int(width), layers=taps, grid=grid)


def _model_config(open_clip: Any, model_name: str, *, name: str) -> dict[str, Any]:
    """open_clip's config of ``model_name`` (``embed_dim``, ``vision_cfg``, ...); ValueError if it has none."""
    cfg = open_clip.get_model_config(model_name)
    if cfg is None:
        close = difflib.get_close_matches(model_name, open_clip.list_models(), n=5)
        raise ValueError(
            f"backbone {name!r}: open_clip has no model config {model_name!r}; close matches: {close}"
        )
    return cfg


def _pretrained_tower(
    *,
    name: str,
    model_name: str,
    pretrained: Any,
    size: int,
    default_tag: str | None,
    quick_gelu: bool,
    cache_dir: str | None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The full pretrained model's ``.visual`` (text tower dropped) and the tag's config (mean, std, ...)."""
    import open_clip

    checkpoint, tag_cfg = resolve_open_clip(
        model_name, pretrained, backbone=name, default_tag=default_tag, cache_dir=cache_dir
    )
    quick_gelu = quick_gelu or bool(tag_cfg.get("quick_gelu", False))
    with warnings.catch_warnings():
        # We already pass quick_gelu from the tag; open_clip would still warn about the base config.
        warnings.filterwarnings("ignore", message="QuickGELU mismatch")
        full = open_clip.create_model(
            model_name, pretrained=checkpoint, force_image_size=size, force_quick_gelu=quick_gelu
        )
    return full.visual, tag_cfg


def _geometry(visual: nn.Module, *, name: str, model_name: str) -> tuple[int, int, Sequence[int]]:
    """``(depth, width, grid)`` of an open_clip vision tower: blocks, token width, patch grid (rows, cols)."""
    if hasattr(visual, "trunk"):  # TimmModel (SigLIP and other timm-based towers)
        trunk = visual.trunk
        return len(trunk.blocks), trunk.embed_dim, trunk.patch_embed.grid_size
    if hasattr(visual, "transformer") and hasattr(visual, "grid_size"):  # open_clip VisionTransformer
        return len(visual.transformer.resblocks), visual.transformer.width, visual.grid_size
    raise ValueError(f"backbone {name!r}: open_clip model {model_name!r} is not a ViT; mdp taps ViT blocks")


def _prune(visual: nn.Module, indices: list[int]) -> None:
    if hasattr(visual, "trunk"):
        visual.trunk.prune_intermediate_layers(indices, prune_norm=True, prune_head=True)
        visual.head = nn.Identity()
    else:
        visual.prune_intermediate_layers(indices, prune_norm=True, prune_head=True)
        # open_clip keeps the pooling-side modules even with prune_head; none of them is used for taps.
        for attr in ("attn_pool", "attn_pool_contrastive"):
            if getattr(visual, attr, None) is not None:
                setattr(visual, attr, None)


def _side(size: int | Sequence[int]) -> int:
    if isinstance(size, int):
        return size
    if size[0] != size[1]:
        raise ValueError(f"mdp backbones take square images; config image_size is {tuple(size)}")
    return int(size[0])
