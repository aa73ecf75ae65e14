"""A tiny SigLIP-style ViT registered in timm, so open_clip's SigLIP path (``TimmModel``) can build it.

open_clip builds SigLIP vision towers by timm model *name* and passes no architecture kwargs, so a
tiny variant needs a timm entrypoint of its own. Imported lazily (it imports timm) and only once.
"""

from __future__ import annotations

from typing import Any

from timm.models import VisionTransformer, build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import checkpoint_filter_fn

SIGLIP_TINY = "mdp_vit_tiny_patch16_siglip_128"

# timm's register_model reads pretrained cfgs from the module's `default_cfgs`; no released weights,
# but the cfg carries SigLIP's normalisation and silences timm's "no pretrained config" warning.
default_cfgs = generate_default_cfgs(
    {
        SIGLIP_TINY: {
            "url": "",
            "num_classes": 0,
            "input_size": (3, 128, 128),
            "mean": (0.5, 0.5, 0.5),
            "std": (0.5, 0.5, 0.5),
            "interpolation": "bicubic",
            "crop_pct": 1.0,
        }
    }
)


def mdp_vit_tiny_patch16_siglip_128(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """SigLIP's architecture choices (no class token, MAP pooling head) at ViT-Tiny size, depth 6, 128 px.

    The native size lives in the entrypoint (like timm's ``*_siglip_224``) because open_clip's TimmModel
    builds the trunk at the entrypoint's default size and only resizes afterwards.
    """
    args = dict(
        img_size=128, patch_size=16, embed_dim=192, depth=6, num_heads=3, class_token=False, global_pool="map"
    )
    return build_model_with_cfg(
        VisionTransformer,
        SIGLIP_TINY,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        **dict(args, **kwargs),
    )


register_model(mdp_vit_tiny_patch16_siglip_128)
