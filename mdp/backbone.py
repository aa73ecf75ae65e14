"""The uniform backbone contract: images -> patch tokens of several encoder layers, plus preprocessing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BackboneWeightsError(RuntimeError):
    """Pretrained weights were asked for but cannot be found (offline, unknown tag, missing file)."""


class ImageProcessorError(ValueError):
    """A folder's image processor asks for preprocessing the kit does not reproduce (the message names the file)."""


# ImageSpec.pipeline values: how an RGB image becomes the backbone's square input.
PIPELINES = (
    "kit",  # the kit's own: stretch to the square (Pillow bicubic), scale to [0, 1], normalise
    "llava_onevision",  # LLaVA-OneVision's image processor for several images per prompt: pad to a square first
    "processor",  # none: the 8-bit image as loaded, for a transformers model whose own processor prepares it
)


@dataclass(frozen=True, kw_only=True)
class ImageSpec:
    """How images must be prepared for a backbone: square side ``size``, per-channel mean/std, and the
    ``pipeline`` that gets them there (:data:`PIPELINES`; a transformers folder's image processor decides it)."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pipeline: str = "kit"

    def __post_init__(self) -> None:
        if self.pipeline not in PIPELINES:
            raise ValueError(f"ImageSpec.pipeline must be one of {list(PIPELINES)}, got {self.pipeline!r}")

    def normalize(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> normalised with this spec's mean/std (resizing is the caller's job)."""
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        return (images - mean) / std


class LayersError(ValueError):
    """The layers asked to be tapped do not fit the backbone (out of range, repeated, not a list of ints)."""


def resolve_layers(layers: Sequence[int], depth: int, *, name: str) -> tuple[int, ...]:
    """Block indices -> non-negative ones; negative indices count from the end (-1 = last block).
    Raises :class:`LayersError` for a list that does not fit a ``depth``-block backbone."""
    if isinstance(layers, int) or not isinstance(layers, Sequence) or not layers:
        raise LayersError(
            f"backbone {name!r}: layers must be a non-empty list of block indices, got {layers!r}"
        )
    resolved = []
    for idx in layers:
        if isinstance(idx, bool) or not isinstance(idx, int):
            raise LayersError(f"backbone {name!r}: layer indices must be ints, got {idx!r}")
        if not -depth <= idx < depth:
            raise LayersError(
                f"backbone {name!r} has {depth} blocks (indices 0..{depth - 1} or -{depth}..-1), "
                f"cannot tap layer {idx}"
            )
        resolved.append(idx % depth)
    if len(set(resolved)) != len(resolved):
        raise LayersError(f"backbone {name!r}: layers {list(layers)} name the same block twice ({resolved})")
    return tuple(resolved)


class Backbone(nn.Module):
    """An image encoder tapped at several blocks, with one contract for every family.

    ``forward(images)`` takes (B, 3, H, W) images already normalised with :attr:`spec` and returns one
    (B, N, C) tensor per entry of :attr:`layers`, in that order: patch tokens only (class / register /
    prefix tokens dropped), taken right after the block (no final norm).

    Attributes:
        name: registry name it was built from.
        spec: :class:`ImageSpec` with the input size and mean/std the weights expect.
        width: channel width C of the tokens.
        layers: tapped block indices, non-negative, in output order.
        num_tokens: N, patch tokens per image at ``spec.size``.
        grid: (h, w) patch grid, h * w == N.
        model: the wrapped timm / open_clip module.
    """

    def __init__(
        self,
        *,
        name: str,
        model: nn.Module,
        spec: ImageSpec,
        width: int,
        layers: tuple[int, ...],
        grid: tuple[int, int],
    ) -> None:
        super().__init__()
        self.name = name
        self.model = model
        self.spec = spec
        self.width = width
        self.layers = layers
        self.grid = grid
        self.num_tokens = grid[0] * grid[1]
        # forward_intermediates returns blocks in depth order; remember where each requested layer sits.
        self._sorted = tuple(sorted(layers))
        self._order = tuple(self._sorted.index(i) for i in layers)

    def forward_taps(self, images: Tensor, indices: list[int]) -> list[Tensor]:
        """Family-specific: (B, 3, H, W) -> tokens (B, N, C) of blocks ``indices`` (sorted), in order."""
        raise NotImplementedError

    def forward(self, images: Tensor) -> list[Tensor]:
        """(B, 3, H, W) normalised images -> list over :attr:`layers` of (B, N, C) patch tokens."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"backbone {self.name!r} expects (B, 3, H, W) images, got {tuple(images.shape)}")
        if images.shape[-2:] != (self.spec.size, self.spec.size):
            raise ValueError(
                f"backbone {self.name!r} was built for {self.spec.size}x{self.spec.size} images, got "
                f"{images.shape[-2]}x{images.shape[-1]}; resize to spec.size or rebuild with image_size="
            )
        taps = self.forward_taps(images, list(self._sorted))
        return [taps[j] for j in self._order]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in backward (less memory, ~30% more compute), if supported."""
        fn = getattr(self.model, "set_grad_checkpointing", None)
        if fn is None:
            raise NotImplementedError(f"backbone {self.name!r} does not support gradient checkpointing")
        fn(enable)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, layers={self.layers}, width={self.width}, grid={self.grid}, spec={self.spec}"
