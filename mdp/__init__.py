"""mdp: Multi-scale Differential Perception (OmniDiff / M³Diff, ICCV 2025) for plain PyTorch.

Needs torch only; timm / open_clip / transformers are imported when a backbone of theirs is built
(``pip install "m3diff-mdp[open_clip]"``, ``[timm]``, ``[hf]`` or ``[all]`` installs them).

Example::

    import mdp

    backbone = mdp.build_backbone("siglip-tiny", layers=[1, 3, 5], pretrained=None, image_size=128)
    module = mdp.MDP(dim=backbone.width, num_layers=len(backbone.layers))
    out = module(backbone(before), backbone(after))  # images normalised with backbone.spec
    out.before, out.after        # (B, N, C) difference-aware tokens
    out.layer_weights            # (B, L)
    out.diff_maps                # (B, L, N), reshape with out.grid for heatmaps
"""

from . import zoo as _zoo  # noqa: F401  (registers the built-in backbone names)
from .backbone import Backbone, BackboneWeightsError, ImageProcessorError, ImageSpec, LayersError
from .config import MDPConfig
from .module import MDP, MDPOutput
from .registry import build_backbone, list_backbones, register_backbone
from .zoo import LLAVA_OV_TAPS, LLAVA_OV_TOWER

__all__ = [
    "MDP",
    "MDPConfig",
    "MDPOutput",
    "Backbone",
    "ImageSpec",
    "build_backbone",
    "register_backbone",
    "list_backbones",
    "BackboneWeightsError",
    "ImageProcessorError",
    "LayersError",
    "LLAVA_OV_TAPS",
    "LLAVA_OV_TOWER",
]
