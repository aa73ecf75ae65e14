"""Start from a LLaVA-OneVision checkpoint in HF format (``model.init_from``), as M³Diff does.

The folder is what ``llava-hf/llava-onevision-qwen2-7b-ov-hf`` holds: ``config.json`` (``llava_onevision``),
safetensors, a tokenizer with a chat template and ``preprocessor_config.json``. transformers loads it (its own key
conversions, shards and dtypes) as ``LlavaOnevisionForConditionalGeneration``; the parts then move into the kit's
model: the SigLIP tower becomes the MDP backbone, ``multi_modal_projector`` (``linear_1`` → GELU → ``linear_2``)
the projector, ``image_newline`` the end of each image block, the language model + ``lm_head`` the causal LM.

Dtypes: released folders store half precision (transformers' conversion script casts every tensor to float16).
The parts that are trained (tower, projector, ``image_newline``; MDP and LoRA are new) are float32 whatever the
folder stores, read from its files and widened exactly (AdamW's master weights: at the tower's 2e-6 most
half-precision updates round away); the frozen LM is loaded in ``model.lm.dtype`` (bfloat16 halves a 7B base under
LoRA: 15 instead of 30 GB). The layout is LLaVA-OneVision's for multi-image input: every base-resolution patch
token (``model.token_pool`` 1), then ``image_newline``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn

import mdp
from mdp.backbone import resolve_layers
from mdp.hf_adapter import read_tensors, weight_files


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


def check_folder(config: Any, folder: str | Path, layers: list[int]) -> None:
    """The folder is a LLaVA-OneVision the kit reads (SigLIP tower, every patch token) and ``layers`` fit its tower
    and end on the layer its projector was trained on; else :class:`InitFromError` saying what to write."""
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
    try:
        taps = resolve_layers(list(layers), depth, name=f"hf:{folder}")
    except mdp.LayersError as err:
        raise InitFromError(f"backbone.layers={list(layers)}: {err}") from None
    if taps[-1] != expected:
        raise InitFromError(
            f"backbone.layers={list(layers)} ends at layer {taps[-1]}, but {folder}'s projector was trained on the "
            f"output of tower layer {expected} (0-based; vision_feature_layer={config.vision_feature_layer}, "
            f"{depth} layers): end backbone.layers with {expected}"
        )


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
    already built from this folder (``mdp.build_backbone("hf:<folder>", ...)``); None: built here that way (float32).
    """
    config = read_config(folder)
    check_folder(config, folder, layers)
    cls = transformers.LlavaOnevisionForConditionalGeneration
    if load_weights:
        # One dtype for all (transformers drops per-module dtypes): the LM's. The trained parts are read again from
        # the files below, in the dtype stored there: lm_dtype may be narrower than the folder (bfloat16 from float16).
        model = cls.from_pretrained(folder, dtype=lm_dtype, attn_implementation="sdpa")
    else:
        model = cls._from_config(config, dtype=lm_dtype, attn_implementation="sdpa")
    inner = model.model
    projector, newline = inner.multi_modal_projector.float(), inner.image_newline.detach().float()
    if load_weights:
        _load_stored(Path(folder), projector, newline)
    if backbone is None:  # the tower from the files as stored, in float32 (not via lm_dtype)
        backbone = mdp.build_backbone(
            f"hf:{folder}", layers=layers, pretrained=str(folder) if load_weights else None
        )
    inner.vision_tower = None  # the kit's tower is ``backbone``: free this copy
    # Already in lm_dtype. No .to(lm_dtype) here: it would also cast the rotary embedding's float32 inv_freq buffer,
    # and a bfloat16 RoPE is not the LM transformers loads (logits off by ~0.1 in bf16 on the twin).
    lm = _causal_lm(config.text_config, inner.language_model, model.lm_head)
    return LlavaParts(
        backbone=backbone,
        projector=projector,
        projector_act=config.projector_hidden_act,
        image_newline=newline,
        lm=lm,
    )


def _load_stored(folder: Path, projector: nn.Module, newline: torch.Tensor) -> None:
    """``multi_modal_projector`` and ``image_newline`` from the folder's files into float32 ``projector`` /
    ``newline``: exact whatever the stored dtype (under any of the key layouts transformers has used)."""
    files = weight_files(folder)
    wanted = {"image_newline": "image_newline"} | {
        k: f"multi_modal_projector.{k}" for k in projector.state_dict()
    }
    found = {}
    for target, name in wanted.items():
        key = next((k for k in files if k == name or k.endswith("." + name)), None)
        if key is None:
            raise InitFromError(f"model.init_from={folder}: no tensor {name!r} in its weights")
        found[target] = key
    state = read_tensors(files, found)
    with torch.no_grad():
        newline.copy_(state.pop("image_newline"))
    projector.load_state_dict(state, strict=True)


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
