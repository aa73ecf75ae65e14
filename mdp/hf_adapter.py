"""transformers vision towers as :class:`~mdp.Backbone`: ``SiglipVisionModel``, ``CLIPVisionModel`` and the
tower inside a LLaVA-style checkpoint (LLaVA-OneVision, LLaVA-NeXT, LLaVA). transformers is imported lazily.

Taps come from the library's own ``output_hidden_states``: ``hidden_states[0]`` is the embedding output and
``hidden_states[k + 1]`` the output of encoder layer ``k`` (0-based), before any final norm, which is what
LLaVA's ``vision_feature_layer`` selects (``-1`` = the last layer the tower has).

Weights are read from the folder's safetensors (or ``.bin``) files directly, only the tensors the pruned
tower needs: a 15 GB LLaVA-OneVision folder yields its 0.8 GB tower without reading the language model. Three
key layouts are understood, so hub checkpoints and ones saved by any transformers version load alike:
``vision_tower.vision_model.<key>`` (LLaVA checkpoints on the hub), ``vision_tower.<key>`` /
``model.vision_tower.<key>`` (newer saves), and ``vision_model.<key>`` (SigLIP / CLIP checkpoints, text
tower ignored).

The tower is built and kept in **float32** whatever the folder stores (``dtype=`` asks for another): released
LLaVA-OneVision folders hold float16 weights (transformers' conversion script casts every tensor to float16 before
``save_pretrained``), and a tower that is trained needs float32 master weights: at a learning rate of 2e-6 almost
every half-precision update rounds away. Reading float16 / bfloat16 tensors into float32 is exact.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ._optional import require
from .backbone import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    SIGLIP_MEAN,
    SIGLIP_STD,
    Backbone,
    BackboneWeightsError,
    ImageProcessorError,
    ImageSpec,
    resolve_layers,
)
from .timm_adapter import default_layers
from .weights import first_file, is_default_request, wants_weights, weights_error

# Where a vision tower's tensors sit inside a checkpoint, most specific first.
_TOWER_PREFIXES = ("model.vision_tower.", "vision_tower.", "")
_INNER_PREFIXES = ("vision_model.", "")
_SUPPORTED = (
    "siglip_vision_model, clip_vision_model, siglip, clip, or a LLaVA-style model with a vision_config"
)


class HFVisionBackbone(Backbone):
    """A transformers vision model (``SiglipVisionModel`` / ``CLIPVisionModel``) tapped through
    ``output_hidden_states``; ``prefix_tokens`` (CLIP's class token) are dropped from every tap."""

    def __init__(self, *, prefix_tokens: int = 0, interpolate: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prefix_tokens = prefix_tokens
        self.interpolate = interpolate  # images at another size than the position embeddings were made for

    def forward_taps(self, images: Tensor, indices: list[int]) -> list[Tensor]:
        extra = {"interpolate_pos_encoding": True} if self.interpolate else {}
        hidden = self.model(pixel_values=images, output_hidden_states=True, **extra).hidden_states
        return [hidden[i + 1][:, self.prefix_tokens :] for i in indices]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """transformers' own switch: each encoder layer recomputed in backward (non-reentrant)."""
        set_hf_checkpointing(self.model, enable)


def set_hf_checkpointing(model: nn.Module, enable: bool) -> None:
    """Activation checkpointing of a transformers model, non-reentrant (works with frozen inputs and LoRA):
    ``activation_checkpointing_enable`` where transformers has it (>= 5.x), else ``gradient_checkpointing_*``."""
    if enable:
        on = getattr(model, "activation_checkpointing_enable", None)
        if on is not None:
            on(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        off = getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable
        off()


def is_hf_checkpointing(model: nn.Module) -> bool:
    return any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())


# ------------------------------------------------------------------------------------------------ build
def build_hf(
    *,
    name: str,
    layers: Sequence[int] | None,
    pretrained: Any,
    image_size: int | None,
    source: str | None = None,
    config: Any = None,
    default_weights: str | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    cache_dir: str | None = None,
    prune: bool = True,
    dtype: torch.dtype = torch.float32,
) -> HFVisionBackbone:
    """Build a transformers vision tower and wrap it.

    Args:
        name: registry name (for messages).
        layers: encoder layers to tap, 0-based (negative = from the end); None = three ending at the last.
        pretrained: None = random init; True / ``"default"`` = ``source``'s weights (or ``default_weights``);
            else a local folder or a hub id (in the HF cache when offline) whose checkpoint holds the tower.
        image_size: square input side; None = the tower's own (position embeddings are interpolated at
            other sizes, with transformers' ``interpolate_pos_encoding``).
        source: a folder or hub id with ``config.json`` (SigLIP, CLIP, or a LLaVA-style model); its image
            processor's settings (:func:`image_processor_config`), when present, give the mean / std and, for
            LLaVA-OneVision's, the ``llava_onevision`` pipeline (pad to a square before resizing).
        config: a transformers vision config to build from instead of ``source`` (random-init sizes).
        prune: drop layers after the deepest tap, the final norm and the pooling head (unused; DDP dislikes them).
        dtype: the parameters' dtype whatever the folder stores (float32: exact from half precision, trainable).
    """
    transformers = require("transformers", backbone=name)
    folder = resolve_folder(source, backbone=name, cache_dir=cache_dir) if source else None
    if config is None:
        config = vision_config_of(transformers.AutoConfig.from_pretrained(folder), where=str(folder))
    weights = _weights_folder(
        pretrained, folder, default_weights=default_weights, name=name, cache_dir=cache_dir
    )
    # dtype explicit, else from_config takes the config's (float16 in a folder saved by a half-precision model)
    model = transformers.AutoModel.from_config(config, attn_implementation="sdpa", dtype=dtype)
    depth = config.num_hidden_layers
    taps = resolve_layers(default_layers(depth) if layers is None else layers, depth, name=name)
    if prune:
        _prune(model, max(taps))
    if weights is not None:
        load_tower_weights(model, weights, backbone=name)
    native = int(config.image_size)
    size = native if image_size is None else image_size
    side = size // int(config.patch_size)
    spec = spec_from_folder(config, weights or folder, size=size, mean=mean, std=std)
    return HFVisionBackbone(
        name=name,
        model=model,
        spec=spec,
        width=int(config.hidden_size),
        layers=taps,
        grid=(side, side),
        prefix_tokens=1 if "clip" in config.model_type and "siglip" not in config.model_type else 0,
        interpolate=size != native,
    )


def _weights_folder(
    pretrained: Any, folder: Path | None, *, default_weights: str | None, name: str, cache_dir: str | None
) -> Path | None:
    """The folder whose checkpoint holds the tower's weights (None: random init).

    The default request takes ``folder`` (the source's own) or else ``default_weights``; anything else
    names a folder or hub id (an ``hf-hub:`` prefix is dropped).
    """
    if not wants_weights(pretrained):
        return None
    if not is_default_request(pretrained):
        return resolve_folder(str(pretrained).removeprefix("hf-hub:"), backbone=name, cache_dir=cache_dir)
    weights = folder or (
        resolve_folder(default_weights, backbone=name, cache_dir=cache_dir) if default_weights else None
    )
    if weights is None:
        raise BackboneWeightsError(
            weights_error(name, "its default weights, but it has none", example_file="model.safetensors")
        )
    return weights


def wrap_hf_tower(
    model: nn.Module, *, name: str, layers: Sequence[int] | None, spec: ImageSpec, prune: bool = True
) -> HFVisionBackbone:
    """An already built (and loaded) SigLIP / CLIP vision model -> backbone, at its own image size."""
    config = model.config
    depth = config.num_hidden_layers
    taps = resolve_layers(default_layers(depth) if layers is None else layers, depth, name=name)
    if prune:
        _prune(model, max(taps))
    side = int(config.image_size) // int(config.patch_size)
    prefix = 1 if "clip" in config.model_type and "siglip" not in config.model_type else 0
    return HFVisionBackbone(
        name=name, model=model, spec=spec, width=int(config.hidden_size), layers=taps, grid=(side, side),
        prefix_tokens=prefix,
    )  # fmt: skip


def vision_config_of(config: Any, *, where: str) -> Any:
    """The vision config inside a SigLIP / CLIP / LLaVA-style config (or the config itself)."""
    if config.model_type in ("siglip_vision_model", "clip_vision_model"):
        return config
    inner = getattr(config, "vision_config", None)
    if inner is None or inner.model_type not in ("siglip_vision_model", "clip_vision_model"):
        raise ValueError(
            f"{where}: model_type {config.model_type!r} has no SigLIP / CLIP tower; mdp reads {_SUPPORTED}"
        )
    return inner


def _prune(model: nn.Module, deepest: int) -> None:
    encoder = model.encoder
    encoder.layers = encoder.layers[: deepest + 1]
    model.config.num_hidden_layers = deepest + 1
    model.post_layernorm = nn.Identity()  # applied to the last kept layer's output (unused by the taps)
    if getattr(model, "use_head", False):
        model.use_head = False
        del model.head


def spec_from_folder(
    config: Any,
    folder: Path | None,
    *,
    size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> ImageSpec:
    """Input size (default: the config's), the mean / std of the folder's image processor (else SigLIP's 0.5 or
    CLIP's, by model type) and its pipeline: LLaVA-OneVision's pads each image to a square before resizing."""
    siglip = config.model_type.startswith("siglip")
    pre = image_processor_config(folder) if folder is not None else {}
    return ImageSpec(
        size=int(config.image_size) if size is None else size,
        mean=tuple(mean or pre.get("image_mean") or (SIGLIP_MEAN if siglip else OPENAI_CLIP_MEAN)),
        std=tuple(std or pre.get("image_std") or (SIGLIP_STD if siglip else OPENAI_CLIP_STD)),
        pipeline=_pipeline(pre, folder),
    )


def image_processor_config(folder: Path) -> dict[str, Any]:
    """A transformers folder's image processor settings: ``preprocessor_config.json`` (released checkpoints,
    transformers 4), else the ``image_processor`` entry of ``processor_config.json`` (what transformers 5's
    ``processor.save_pretrained`` writes instead), else ``{}``. Each entry keeps its file name under ``"_file"``."""
    folder = Path(folder)
    if (folder / "preprocessor_config.json").is_file():
        return {
            **json.loads((folder / "preprocessor_config.json").read_text()),
            "_file": "preprocessor_config.json",
        }
    if (folder / "processor_config.json").is_file():
        nested = json.loads((folder / "processor_config.json").read_text()).get("image_processor")
        if isinstance(nested, dict):
            return {**nested, "_file": "processor_config.json"}
    return {}


# What LLaVA-OneVision's released image processor does, the settings the kit's "llava_onevision" pipeline
# reproduces (datamodules/images.py): key -> (value when the key is absent, the values accepted).
_LLAVA_ONEVISION_SETTINGS: dict[str, tuple[Any, tuple[Any, ...]]] = {
    "resample": (3, (3,)),  # PIL's BICUBIC
    "do_resize": (True, (True,)),
    "do_rescale": (True, (True,)),
    "do_normalize": (True, (True,)),
    "do_convert_rgb": (True, (True, None)),
    "do_center_crop": (None, (None, False)),
}


def _pipeline(pre: dict[str, Any], folder: Path | None) -> str:
    """``llava_onevision`` for LLaVA-OneVision's image processor (checked to be the released settings), else ``kit``."""
    if not str(pre.get("image_processor_type", "")).startswith("LlavaOnevisionImageProcessor"):
        return "kit"
    where = f"{folder}/{pre['_file']}"
    for key, (default, accepted) in _LLAVA_ONEVISION_SETTINGS.items():
        if pre.get(key, default) not in accepted:
            raise ImageProcessorError(
                f"{where}: {key}={pre[key]!r}; the kit reproduces LLaVA-OneVision's image processor as released "
                f"({key}={accepted[0]!r})"
            )
    if abs(float(pre.get("rescale_factor", 1 / 255)) - 1 / 255) > 1e-12:
        raise ImageProcessorError(
            f"{where}: rescale_factor={pre['rescale_factor']!r}; the kit reproduces LLaVA-OneVision's image "
            "processor as released (1/255)"
        )
    return "llava_onevision"


# ------------------------------------------------------------------------------------------------ files
def resolve_folder(source: str, *, backbone: str, cache_dir: str | None = None) -> Path:
    """A local folder, or a hub id resolved through the HF cache (no download with ``HF_HUB_OFFLINE=1``)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        raise BackboneWeightsError(
            weights_error(
                backbone, f"a folder with config.json, got the file {path}", example_file="config.json"
            )
        )
    looks_local = source.startswith((os.sep, ".", "~")) or source.count("/") != 1
    if looks_local:
        raise BackboneWeightsError(
            weights_error(backbone, f"folder {path} (it does not exist)", example_file="config.json")
        )
    from huggingface_hub import constants, snapshot_download

    try:
        return Path(
            snapshot_download(
                repo_id=source,
                cache_dir=cache_dir,
                local_files_only=constants.HF_HUB_OFFLINE,
                allow_patterns=["*.json", "*.safetensors", "*.bin", "*.jinja", "*.txt", "*.model"],
            )
        )
    except Exception as err:  # offline cache miss, unknown repo, no network
        state = "HF_HUB_OFFLINE=1: no download attempted" if constants.HF_HUB_OFFLINE else "download failed"
        raise BackboneWeightsError(
            weights_error(
                backbone,
                f"local folder {path} (none) or hub repo {source} in the Hugging Face cache "
                f"{cache_dir or constants.HF_HUB_CACHE} ({state})",
                example_file="config.json",
                cause=err,
            )
        ) from None


def weight_files(folder: Path) -> dict[str, Path]:
    """Every tensor name in the folder's checkpoint -> the file that holds it (sharded or not)."""
    folder = Path(folder)
    index = first_file(folder, ("model.safetensors.index.json", "pytorch_model.bin.index.json"))
    if index is not None:
        weight_map = json.loads(index.read_text())["weight_map"]
        return {key: folder / file for key, file in weight_map.items()}
    path = first_file(folder, ("model.safetensors", "pytorch_model.bin"))
    return {} if path is None else {key: path for key in _keys(path)}


def _keys(path: Path) -> Iterable[str]:
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(path, "pt") as f:
            return list(f.keys())
    return list(torch.load(path, map_location="cpu", weights_only=True, mmap=True))


def read_tensors(files: dict[str, Path], wanted: dict[str, str]) -> dict[str, Tensor]:
    """``wanted``: target name -> name in the checkpoint; reads only those tensors, file by file."""
    by_file: dict[Path, list[tuple[str, str]]] = {}
    for target, source in wanted.items():
        by_file.setdefault(files[source], []).append((target, source))
    out: dict[str, Tensor] = {}
    for path, pairs in by_file.items():
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(path, "pt") as f:
                out.update({target: f.get_tensor(source) for target, source in pairs})
        else:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            out.update({target: state[source] for target, source in pairs})
    return out


def load_tower_weights(model: nn.Module, folder: Path, *, backbone: str) -> None:
    """Load the tower's tensors from ``folder`` into ``model`` (strict: every tensor must be found)."""
    files = weight_files(folder)
    if not files:
        raise BackboneWeightsError(
            weights_error(backbone, f"model.safetensors(.index.json) or pytorch_model.bin in {folder}",
                          example_file="model.safetensors")
        )  # fmt: skip
    wanted = list(model.state_dict())
    best: dict[str, str] = {}
    for outer in _TOWER_PREFIXES:
        for inner in _INNER_PREFIXES:
            found = {k: outer + inner + k for k in wanted if outer + inner + k in files}
            if len(found) > len(best):
                best = found
    missing = [k for k in wanted if k not in best]
    if missing:
        raise BackboneWeightsError(
            weights_error(
                backbone,
                f"the vision tower's tensors in {folder}; {len(missing)} of {len(wanted)} not found "
                f"(e.g. {missing[:3]}), under any of the prefixes {list(_TOWER_PREFIXES)}",
                example_file="model.safetensors",
            )
        )
    state = read_tensors(files, best)
    dtype = next(model.parameters()).dtype
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True)
