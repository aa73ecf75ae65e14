"""The MDP module (Multi-scale Differential Perception, OmniDiff / M³Diff, ICCV 2025)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .config import MDPConfig
from .layers import ConcatDifference, FusionBlock, Gate, LayerScorer
from .tokens import Grid, align_layers


@dataclass
class MDPOutput:
    """What :class:`MDP` returns for a batch of B image pairs, L layers, N tokens of width C."""

    before: Tensor
    """(B, N, C) difference-aware tokens F′₁ of the "before" image."""
    after: Tensor
    """(B, N, C) difference-aware tokens F′₂ of the "after" image."""
    layer_weights: Tensor
    """(B, L) weight of each tapped layer in F′ (softmax of the layer scores; sums to 1)."""
    diff_maps: Tensor
    """(B, L, N) per-token difference magnitude ‖F̂₁ⁱ − F̂₂ⁱ‖₂ per layer (0 for identical inputs)."""
    grid: Grid | None
    """(h, w) layout of the N tokens when known (4-D input or square N), else None."""


class MDP(nn.Module):
    """Multi-scale Differential Perception: per-layer features of two images -> difference-aware tokens.

    For each tapped layer i, with F₁ⁱ, F₂ⁱ of shape (B, N, C):

    1. gate:       F̂ₖ = σ(W_m[Fₖ ‖ F_other]) ⊙ Fₖ                    (``gate``; off: F̂ₖ = Fₖ)
    2. difference: ΔF = W_p[F̂₁ ‖ F̂₂ ‖ F̂₁ − F̂₂]  or  F̂₁ − F̂₂           (``difference``)
    3. fusion:     F̃ₖ = F̂ₖ + SA(…) + CA(query F̂ₖ, key/value ΔF) …    (``fusion``, see FusionBlock)
    4. aggregate:  F′ₖ = Σᵢ softmaxᵢ(MLP(AvgPool F̃ⁱ)) · F̃ₖⁱ          (``layer_weighting``; uniform: mean)

    Each layer has its own gate / difference / fusion weights (features of different depths have
    different statistics; ``share_layers=True`` shares them). ``fusion="none"`` builds no difference
    weights at all, since ΔF would not reach the output. With a single layer there is nothing to
    weigh, so no scorer is built.

    ``identity_init=True`` adds a residual around the whole module, F′ = F_last + Z(F′_mdp), Z a (C, C) linear
    map initialised to zero: the output starts as the last tapped layer's tokens exactly (the MDP-off input),
    and Z's gradient is full-rank from the first step (the zero-init of ControlNet / LoRA's B), so MDP's share
    grows at the pace of any other layer's under Adam rather than the ~lr per step of a zero-init scalar gate.

    ``diff_maps`` are ‖F̂₁ − F̂₂‖ per token rather than ‖ΔF‖: with the concat form ΔF = W_p[F̂ ‖ F̂ ‖ 0]
    is not zero for an unchanged scene, while the gated difference is, which is what a heatmap of
    "where it changed" must show.

    Build with ``MDP(config=MDPConfig(...))`` or with the same fields as keywords, ``MDP(dim=768, ...)``.
    """

    def __init__(self, *, config: MDPConfig | None = None, **fields: Any) -> None:
        super().__init__()
        if config is not None and fields:
            raise TypeError(f"MDP takes either config= or field keywords, not both (got {sorted(fields)})")
        if config is None:
            unknown = set(fields) - set(MDPConfig.field_names())
            if unknown:
                raise TypeError(f"MDP got unknown fields {sorted(unknown)}; known: {MDPConfig.field_names()}")
            config = MDPConfig(**fields)
        elif not isinstance(config, MDPConfig):
            raise TypeError(f"MDP config must be an MDPConfig, got {type(config).__name__}")
        self.config = config
        c = config
        n_modules = 1 if c.share_layers else c.num_layers

        def per_layer(make: Any) -> nn.ModuleList:
            return nn.ModuleList(make() for _ in range(n_modules))

        self.gates = per_layer(lambda: Gate(dim=c.dim)) if c.gate else None
        wants_delta = c.fusion != "none"
        self.differences = (
            per_layer(lambda: ConcatDifference(dim=c.dim))
            if wants_delta and c.difference == "concat"
            else None
        )
        self.fusions = (
            per_layer(
                lambda: FusionBlock(
                    dim=c.dim,
                    fusion=c.fusion,
                    num_heads=c.num_heads,
                    dropout=c.dropout,
                    mlp_ratio=c.mlp_ratio,
                )
            )
            if wants_delta
            else None
        )
        learned = c.layer_weighting == "learned" and c.num_layers > 1
        self.scorer = LayerScorer(dim=c.dim) if learned else None
        self.zero_out = nn.Linear(c.dim, c.dim) if c.identity_init else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """ViT-style init: truncated-normal(0.02) weights, zero biases, unit LayerNorms.

        Small weights start every gate at λ ≈ 0.5 and every layer score near 0 (uniform weights), so
        the module begins close to "average the layers" and learns away from it.
        """
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.zero_out is not None:
            nn.init.zeros_(self.zero_out.weight)
            nn.init.zeros_(self.zero_out.bias)

    def _pick(self, modules: nn.ModuleList | None, i: int) -> nn.Module | None:
        if modules is None:
            return None
        return modules[0 if self.config.share_layers else i]

    def forward(self, before: Sequence[Tensor], after: Sequence[Tensor]) -> MDPOutput:
        """Difference-aware tokens of both images.

        Args:
            before, after: one tensor per tapped layer (length ``num_layers``), each (B, N_i, C) or
                (B, C, H_i, W_i). Layers with different token counts are resampled to the finest grid.
                All tokens are taken as valid (no padding masks): resize images to one size upstream.
        Returns:
            :class:`MDPOutput` with before/after (B, N, C), layer_weights (B, L), diff_maps (B, L, N).
        """
        c = self.config
        toks1, toks2, grid = align_layers(before, after, num_layers=c.num_layers, dim=c.dim)
        batch = toks1[0].shape[0]
        fused, scores, maps = [], [], []
        for i, (f1, f2) in enumerate(zip(toks1, toks2)):
            x = torch.cat([f1, f2], dim=0)  # (2B, N, C): both images through one call per module
            gate = self._pick(self.gates, i)
            if gate is not None:
                x = gate(x)
            a, b = x[:batch], x[batch:]
            diff = a - b
            maps.append(torch.linalg.vector_norm(diff, dim=-1))
            fusion = self._pick(self.fusions, i)
            if fusion is not None:
                proj = self._pick(self.differences, i)
                delta = proj(a, b) if proj is not None else diff
                x = fusion(x, delta)
            fused.append(x)
            if self.scorer is not None:
                scores.append(self.scorer(x))

        if self.scorer is not None:
            weights = torch.softmax(torch.stack(scores, dim=1), dim=1)  # (B, L)
        else:
            weights = toks1[0].new_full((batch, c.num_layers), 1.0 / c.num_layers)
        both = weights.repeat(2, 1)  # (2B, L): the same layer weights for both images of a pair
        out = fused[0] * both[:, 0, None, None]
        for i in range(1, len(fused)):
            out = out + fused[i] * both[:, i, None, None]
        if self.zero_out is not None:
            out = torch.cat([toks1[-1], toks2[-1]], dim=0) + self.zero_out(out)
        return MDPOutput(
            before=out[:batch],
            after=out[batch:],
            layer_weights=weights,
            diff_maps=torch.stack(maps, dim=1),
            grid=grid,
        )

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"dim={c.dim}, num_layers={c.num_layers}, gate={c.gate}, difference={c.difference!r}, "
            f"fusion={c.fusion!r}, layer_weighting={c.layer_weighting!r}, share_layers={c.share_layers}, "
            f"identity_init={c.identity_init}"
        )
