"""Start from a LLaVA-OneVision checkpoint in HF format (``model.init_from``), as M³Diff does.

The folder is what ``llava-hf/llava-onevision-qwen2-7b-ov-hf`` holds: ``config.json`` (``llava_onevision``),
safetensors, a tokenizer with a chat template and ``preprocessor_config.json``. transformers loads it (its own key
conversions, shards and dtypes) as ``LlavaOnevisionForConditionalGeneration``; the parts then move into the kit's
model: the SigLIP tower becomes the MDP backbone, ``multi_modal_projector`` (``linear_1`` → GELU → ``linear_2``)
the projector, ``image_newline`` the end of each image block, the language model + ``lm_head`` the causal LM.

Trainable parts are kept in float32 (AdamW's master weights); the LM is loaded in ``model.lm.dtype`` (bfloat16
halves a frozen 7B base under LoRA: 15 instead of 30 GB). The layout is LLaVA-OneVision's for multi-image input:
every base-resolution patch token (``model.token_pool`` 1), then ``image_newline``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn

import mdp
from mdp.hf_adapter import spec_from_folder, wrap_hf_tower


class InitFromError(ValueError):
    """``model.init_from`` points at something that is not a usable LLaVA-OneVision folder."""


@dataclass
class LlavaParts:
    backbone: mdp.Backbone  # the SigLIP tower, tapped at the configured layers
    projector: nn.Module  # HF's multi_modal_projector (linear_1, act, linear_2)
    projector_act: str  # its activation's name in the config
    image_newline: torch.Tensor  # (D,)
    lm: nn.Module  # a causal LM (e.g. Qwen2ForCausalLM) around the language model and lm_head


def read_config(folder: str | Path) -> Any:
    """The folder's ``LlavaOnevisionConfig``, with a clear error for anything else."""
    path = Path(folder).expanduser()
    if not (path / "config.json").is_file():
        raise InitFromError(
            f"model.init_from={folder}: no config.json there. Point it at a LLaVA-OneVision folder in HF format "
            "(e.g. huggingface-cli download llava-hf/llava-onevision-qwen2-7b-ov-hf --local-dir <folder>)"
        )
    config = transformers.AutoConfig.from_pretrained(path)
    if config.model_type != "llava_onevision":
        raise InitFromError(
            f"model.init_from={folder}: model_type {config.model_type!r}, not a LLaVA-OneVision checkpoint "
            "('llava_onevision')"
        )
    return config


def feature_layer(config: Any) -> int:
    """The 0-based tower layer whose output LLaVA-OneVision's projector reads (``vision_feature_layer``)."""
    layer = config.vision_feature_layer
    if not isinstance(layer, int) or layer == 0:
        raise InitFromError(f"vision_feature_layer={layer!r}: the kit reads one tower layer (an int, not 0)")
    depth = config.vision_config.num_hidden_layers
    return depth + layer if layer < 0 else layer - 1  # hidden_states[k + 1] is layer k's output


def load_llava_onevision(
    folder: str | Path,
    *,
    layers: list[int],
    load_weights: bool = True,
    lm_dtype: torch.dtype = torch.float32,
    backbone: mdp.Backbone | None = None,
) -> LlavaParts:
    """Load (or, ``load_weights=False``, build with random init) the folder's model and split it into parts.

    ``layers``: the tower layers MDP taps; the last one must be the layer the projector was trained on, so that
    the MDP-off baseline and an identity-initialised MDP feed it exactly what it expects. ``backbone``: the tower
    already built from this folder (``mdp.build_backbone("hf:<folder>", ...)``); None: the loaded model's tower.
    """
    config = read_config(folder)
    if (
        config.vision_feature_select_strategy != "full"
        or config.vision_config.model_type != "siglip_vision_model"
    ):
        raise InitFromError(
            f"model.init_from={folder}: the kit reads LLaVA-OneVision with a SigLIP tower and "
            f"vision_feature_select_strategy 'full' (got {config.vision_config.model_type!r}, "
            f"{config.vision_feature_select_strategy!r})"
        )
    expected = feature_layer(config)
    depth = config.vision_config.num_hidden_layers
    last = layers[-1] % depth if -depth <= layers[-1] < depth else layers[-1]
    if last != expected:
        raise InitFromError(
            f"backbone.layers={list(layers)} ends at layer {last}, but {folder}'s projector was trained on the output "
            f"of tower layer {expected} (0-based; vision_feature_layer={config.vision_feature_layer}, "
            f"{depth} layers): end backbone.layers with {expected}"
        )
    cls = transformers.LlavaOnevisionForConditionalGeneration
    if load_weights:
        # One dtype for all (transformers drops per-module dtypes); the trained parts are cast to float32 below,
        # which is exact from a bfloat16 checkpoint.
        model = cls.from_pretrained(folder, dtype=lm_dtype, attn_implementation="sdpa")
    else:
        model = cls._from_config(config, dtype=lm_dtype, attn_implementation="sdpa")
    inner = model.model
    tower = inner.vision_tower.float()
    backbone = wrap_hf_tower(
        tower, name=f"hf:{folder}", layers=layers, spec=spec_from_folder(tower.config, Path(folder))
    )
    lm = _causal_lm(config.text_config, inner.language_model, model.lm_head).to(lm_dtype)
    return LlavaParts(
        backbone=backbone,
        projector=inner.multi_modal_projector.float(),
        projector_act=config.projector_hidden_act,
        image_newline=inner.image_newline.detach().float(),
        lm=lm,
    )


def _causal_lm(text_config: Any, body: nn.Module, head: nn.Module) -> nn.Module:
    """``AutoModelForCausalLM`` of the text config around the already loaded body and head (no copy)."""
    with torch.device("meta"):  # an empty shell: its own body and head are replaced below
        lm = transformers.AutoModelForCausalLM.from_config(text_config, attn_implementation="sdpa")
    lm.model = body
    lm.lm_head = head
    if lm.config.tie_word_embeddings:
        lm.lm_head.weight = lm.model.embed_tokens.weight
    left = [n for n, t in [*lm.named_parameters(), *lm.named_buffers()] if t.is_meta]
    if (
        left and not next(body.parameters()).is_meta
    ):  # (a model built on the meta device on purpose is all meta)
        raise RuntimeError(
            f"LLaVA-OneVision's LM: tensors left unloaded in the causal-LM wrapper: {left[:5]}"
        )
    return lm


def copy_projector(hf_projector: nn.Module, projector: nn.Sequential) -> None:
    """HF ``linear_1`` / ``linear_2`` -> the kit's ``Sequential(Linear, act, Linear)``."""
    with torch.no_grad():
        for src, dst in ((hf_projector.linear_1, projector[0]), (hf_projector.linear_2, projector[2])):
            if dst.weight.shape != src.weight.shape or (src.bias is None) != (dst.bias is None):
                raise InitFromError(
                    f"projector shape {tuple(src.weight.shape)} (bias {src.bias is not None}) does not fit the "
                    f"kit's {tuple(dst.weight.shape)}; leave model.projector_hidden at null with model.init_from"
                )
            dst.weight.copy_(src.weight)
            if src.bias is not None:
                dst.bias.copy_(src.bias)
