"""Input checking and token-grid alignment for MDP: per-layer features -> one (B, L, N, C) layout."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

Grid = tuple[int, int]


def square_grid(num_tokens: int) -> Grid | None:
    """(s, s) when ``num_tokens`` is a perfect square, else None (the layout is then unknown)."""
    side = math.isqrt(num_tokens)
    return (side, side) if side * side == num_tokens else None


def to_tokens(x: Tensor, *, where: str) -> tuple[Tensor, Grid | None]:
    """(B, N, C) or (B, C, H, W) -> ((B, N, C), grid). A 4-D map knows its grid; tokens only if square."""
    if not hasattr(x, "dim"):
        raise TypeError(f"{where}: expected a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{where}: expected a floating-point tensor, got dtype {x.dtype}")
    if x.dim() == 4:
        b, c, h, w = x.shape
        return x.flatten(2).transpose(1, 2), (h, w)
    if x.dim() == 3:
        return x, square_grid(x.shape[1])
    raise ValueError(f"{where}: expected (B, N, C) tokens or a (B, C, H, W) map, got shape {tuple(x.shape)}")


def resample_tokens(x: Tensor, src: Grid, dst: Grid) -> Tensor:
    """Bilinear resampling of a token grid: (B, h*w, C) on ``src`` -> (B, H*W, C) on ``dst``."""
    b, _, c = x.shape
    grid = x.transpose(1, 2).reshape(b, c, *src)
    grid = F.interpolate(grid, size=dst, mode="bilinear", align_corners=False)
    return grid.flatten(2).transpose(1, 2)


def _check_layer_lists(before: Sequence[Tensor], after: Sequence[Tensor], *, num_layers: int) -> None:
    """Both inputs are lists (not one tensor) of ``num_layers`` per-layer features, or an error says so."""
    for name, feats in (("before", before), ("after", after)):
        if isinstance(feats, Tensor) or not isinstance(feats, Sequence):
            raise TypeError(
                f"MDP expects `{name}` as a list of per-layer tensors (one per tapped layer), "
                f"got {type(feats).__name__}"
            )
        if len(feats) != num_layers:
            raise ValueError(
                f"MDP was built for num_layers={num_layers} but `{name}` has {len(feats)} layers; "
                "tap as many encoder layers as MDPConfig.num_layers"
            )


def align_layers(
    before: Sequence[Tensor], after: Sequence[Tensor], *, num_layers: int, dim: int
) -> tuple[list[Tensor], list[Tensor], Grid | None]:
    """Validate a pair of per-layer feature lists and bring every layer onto one token grid.

    Args:
        before, after: length ``num_layers``; layer i of each is (B, N_i, C) or (B, C, H_i, W_i).
    Returns:
        (before_tokens, after_tokens, grid): lists of (B, N, C) with one N for all layers, and the
        (h, w) grid of those tokens when known (4-D input or square N), else None.

    Layers whose token counts differ are resampled bilinearly to the finest grid (most tokens), so no
    spatial detail is thrown away; this needs every layer's grid (4-D input or square N).
    """
    _check_layer_lists(before, after, num_layers=num_layers)
    toks1, toks2, grids = [], [], []
    for i, (f1, f2) in enumerate(zip(before, after)):
        if tuple(f1.shape) != tuple(f2.shape):
            raise ValueError(
                f"MDP layer {i}: before and after features differ in shape, "
                f"{tuple(f1.shape)} vs {tuple(f2.shape)}"
            )
        t1, grid = to_tokens(f1, where=f"MDP layer {i} (before)")
        t2, _ = to_tokens(f2, where=f"MDP layer {i} (after)")
        if t1.shape[-1] != dim:
            raise ValueError(
                f"MDP layer {i}: features have {t1.shape[-1]} channels but MDPConfig.dim={dim} "
                f"(shape {tuple(f1.shape)}; set dim to the backbone width)"
            )
        if toks1 and t1.shape[0] != toks1[0].shape[0]:
            raise ValueError(
                f"MDP layer {i}: batch size {t1.shape[0]} differs from layer 0's {toks1[0].shape[0]}"
            )
        toks1.append(t1)
        toks2.append(t2)
        grids.append(grid)

    counts = [t.shape[1] for t in toks1]
    if len(set(counts)) == 1:
        return toks1, toks2, grids[0]
    if any(g is None for g in grids):
        raise ValueError(
            f"MDP: layers have different token counts {counts} and at least one is not a square grid, "
            "so they cannot be resampled to a common grid; pass (B, C, H, W) maps instead of tokens"
        )
    target = max(grids, key=lambda g: g[0] * g[1])
    for i, g in enumerate(grids):
        if g != target:
            toks1[i] = resample_tokens(toks1[i], g, target)
            toks2[i] = resample_tokens(toks2[i], g, target)
    return toks1, toks2, target
