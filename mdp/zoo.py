"""The built-in backbone names: a tiny random-init variant of every family next to the real sizes.

Importing this module registers names only; timm / open_clip / transformers are imported when a backbone is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .backbone import IMAGENET_MEAN, IMAGENET_STD, Backbone
from .registry import register_backbone

# name -> (open_clip model name, default tag, default layers, QuickGELU). Default image size = config's.
_OPEN_CLIP: dict[str, tuple[str, str | None, tuple[int, ...], bool]] = {
    # Tiny test models (configs in mdp/model_configs): ViT depth 6, width 192, 3 heads, patch 16.
    # SigLIP's choices: no class token, MAP head, mean/std 0.5. CLIP's: class token, pre-norm, CLIP mean/std.
    "siglip-tiny": ("mdp-ViT-T-16-SigLIP", None, (1, 3, 5), False),
    "clip-tiny": ("mdp-ViT-T-16", None, (1, 3, 5), False),
    # Real sizes; pretrained=None builds them with random init (benchmarks), tags load released weights.
    "siglip-b16": ("ViT-B-16-SigLIP", "webli", (5, 7, 9, 11), False),
    # SigLIP-so400m-384 as released (27 blocks, WebLI weights). LLaVA-OneVision and M³Diff use it without its
    # last block (see "llava-ov-siglip-so400m" below); the default taps are M³Diff's, the same blocks 0-based.
    "siglip-so400m-14-384": ("ViT-SO400M-14-SigLIP-384", "webli", (16, 19, 22, 25), False),
    "clip-b16": ("ViT-B-16", "openai", (5, 7, 9, 11), True),
    "clip-b32": ("ViT-B-32", "openai", (5, 7, 9, 11), True),
}


def _open_clip_factory(name: str) -> None:
    model_name, tag, default_taps, quick_gelu = _OPEN_CLIP[name]

    @register_backbone(name)
    def factory(
        *, layers: Sequence[int] | None, pretrained: Any, image_size: int | None, **kwargs: Any
    ) -> Backbone:
        from .open_clip_adapter import build_open_clip

        return build_open_clip(
            name=name,
            model_name=model_name,
            layers=default_taps if layers is None else layers,
            pretrained=pretrained,
            image_size=image_size,
            default_tag=tag,
            quick_gelu=quick_gelu,
            **kwargs,
        )


for _name in _OPEN_CLIP:
    _open_clip_factory(_name)


# transformers towers. LLaVA-OneVision's vision tower is SigLIP-so400m-384 without its last block (26 layers);
# its projector was trained on hidden_states[-1], the output of layer 25 (0-based). M³Diff's "layers 17, 20, 23,
# 26" count from 1 (26 = that last layer), so the 0-based taps are 16, 19, 22, 25: the last tap is exactly what
# the pretrained projector was trained on (and what the MDP-off baseline feeds it).
LLAVA_OV_TAPS = (16, 19, 22, 25)
# transformers' SiglipVisionConfig of that tower (as LLaVA-OneVision's conversion script writes it).
LLAVA_OV_TOWER = dict(
    hidden_size=1152, intermediate_size=4304, num_hidden_layers=26, num_attention_heads=16,
    image_size=384, patch_size=14, vision_use_head=False,
)  # fmt: skip
_SIGLIP_HF_TINY = dict(
    hidden_size=192, intermediate_size=768, num_hidden_layers=6, num_attention_heads=3,
    image_size=128, patch_size=16, vision_use_head=False,
)  # fmt: skip


def _hf_siglip_factory(name: str, sizes: dict[str, Any], taps: tuple[int, ...], weights: str | None) -> None:
    @register_backbone(name)
    def factory(
        *, layers: Sequence[int] | None, pretrained: Any, image_size: int | None, **kwargs: Any
    ) -> Backbone:
        from ._optional import require
        from .hf_adapter import build_hf

        config = require("transformers", backbone=name).SiglipVisionConfig(**sizes)
        return build_hf(
            name=name,
            config=config,
            layers=taps if layers is None else layers,
            pretrained=pretrained,
            image_size=image_size,
            default_weights=weights,
            **kwargs,
        )


# pretrained: a LLaVA-OneVision folder / hub id (or a SigLIP one: the first 26 layers are taken).
_hf_siglip_factory(
    "llava-ov-siglip-so400m", LLAVA_OV_TOWER, LLAVA_OV_TAPS, "llava-hf/llava-onevision-qwen2-7b-ov-hf"
)
_hf_siglip_factory("siglip-hf-tiny", _SIGLIP_HF_TINY, (1, 3, 5), None)


@register_backbone("hf:")
def hf_any(
    *, model: str, layers: Sequence[int] | None, pretrained: Any, image_size: int | None, **kwargs: Any
) -> Backbone:
    """A transformers vision tower from a folder or hub id, e.g. ``hf:/models/llava-onevision-qwen2-7b-ov-hf``
    (its SigLIP tower) or ``hf:google/siglip-so400m-patch14-384``; ``pretrained=True`` loads that folder's
    weights, None builds its architecture with random init."""
    from .hf_adapter import build_hf

    return build_hf(
        name=f"hf:{model}",
        source=model,
        layers=layers,
        pretrained=pretrained,
        image_size=image_size,
        **kwargs,
    )


@register_backbone("vit-tiny")
def vit_tiny(
    *, layers: Sequence[int] | None, pretrained: Any, image_size: int | None, **kwargs: Any
) -> Backbone:
    """timm ViT-Tiny cut to depth 6 (width 192, 3 heads, patch 16, class token), ImageNet mean/std, 128 px."""
    from .timm_adapter import build_timm

    kwargs.setdefault("depth", 6)
    return build_timm(
        name="vit-tiny",
        model_name="vit_tiny_patch16_224",
        layers=(1, 3, 5) if layers is None else layers,
        pretrained=pretrained,
        image_size=128 if image_size is None else image_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        **kwargs,
    )


@register_backbone("timm:")
def timm_any(
    *, model: str, layers: Sequence[int] | None, pretrained: Any, image_size: int | None, **kwargs: Any
) -> Backbone:
    """Any timm ViT by name, e.g. ``timm:vit_small_patch16_224``; normalisation from timm's pretrained cfg."""
    from .timm_adapter import build_timm

    return build_timm(
        name=f"timm:{model}",
        model_name=model,
        layers=layers,
        pretrained=pretrained,
        image_size=image_size,
        **kwargs,
    )


@register_backbone("open_clip:")
def open_clip_any(
    *, model: str, layers: Sequence[int] | None, pretrained: Any, image_size: int | None, **kwargs: Any
) -> Backbone:
    """Any open_clip ViT config by name, e.g. ``open_clip:ViT-L-14``; ``pretrained`` takes its tags."""
    from ._optional import require
    from .open_clip_adapter import build_open_clip

    open_clip = require("open_clip", backbone=f"open_clip:{model}")
    tags = open_clip.list_pretrained_tags_by_model(model)
    kwargs.setdefault("default_tag", tags[0] if tags else None)
    kwargs.setdefault("quick_gelu", model.endswith("-quickgelu"))
    return build_open_clip(
        name=f"open_clip:{model}",
        model_name=model,
        layers=layers,
        pretrained=pretrained,
        image_size=image_size,
        **kwargs,
    )
