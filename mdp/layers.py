"""Building blocks of one MDP scale: gate, difference, fusion, and the layer scorer.

Shape convention: the two images of a pair travel stacked along the batch axis as one (2B, N, C)
tensor, ``[before; after]``, so every per-image module (gate, self-attention, MLP) runs once for both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def swap_halves(x: Tensor) -> Tensor:
    """``[a; b] -> [b; a]`` along the batch axis: each image's partner in the pair. (2B, ...) -> (2B, ...)."""
    half = x.shape[0] // 2
    return torch.cat([x[half:], x[:half]], dim=0)


class Gate(nn.Module):
    """Gated modulation F̂_k = σ(W_m[F_k ‖ F_other]) ⊙ F_k.

    One gate per image, from one shared W_m applied with the image's own features first. Why: the
    paper writes λ_k = σ(W_m[F1 ‖ F2]) with a per-image λ_k but a single W_m; ordering the input
    "self first" keeps the module symmetric under swapping the images, and makes identical inputs
    get identical gates, so F̂1 − F̂2 stays exactly zero for an unchanged scene.
    """

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(2 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """x: (2B, N, C) stacked ``[F1; F2]`` -> (2B, N, C) stacked ``[F̂1; F̂2]``."""
        # W_m[x ‖ x'] = W_self·x + W_other·x': one matmul of x with both halves, then swap the second
        # result between the images, instead of materialising the (2B, N, 2C) concatenation.
        c = x.shape[-1]
        both = F.linear(x, torch.cat(self.proj.weight.split(c, dim=1), dim=0))  # (2B, N, 2C)
        lam = torch.sigmoid(both[..., :c] + swap_halves(both[..., c:]) + self.proj.bias)
        return lam * x


class ConcatDifference(nn.Module):
    """ΔF = W_p[F̂1 ‖ F̂2 ‖ F̂1 − F̂2]: (B, N, C) ×2 -> (B, N, C)."""

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(3 * dim, dim)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        # W_p is linear, so W_p[a ‖ b ‖ a−b] = (W_a + W_d)·a + (W_b − W_d)·b: the same function and
        # gradients (W_p keeps its documented (C, 3C) layout) with 2/3 of the multiply-adds.
        w_a, w_b, w_d = self.proj.weight.split(a.shape[-1], dim=1)
        return F.linear(a, w_a + w_d, self.proj.bias) + F.linear(b, w_b - w_d)


class Attention(nn.Module):
    """Multi-head attention on ``F.scaled_dot_product_attention`` (fused kernels on CPU and GPU).

    Self-attention when ``context`` is None; otherwise cross-attention with queries from ``x`` and
    keys/values from ``context``.
    """

    def __init__(self, *, dim: int, num_heads: int, dropout: float, cross: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.cross = cross
        if cross:
            self.q = nn.Linear(dim, dim)
            self.kv = nn.Linear(dim, 2 * dim)
        else:
            self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def _heads(self, x: Tensor) -> Tensor:
        # (B, N, C) -> (B, H, N, C/H)
        b, n, c = x.shape
        return x.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """x: (B', Nq, C); context: (B', Nk, C) or None -> (B', Nq, C)."""
        if self.cross:
            q = self._heads(self.q(x))
            k, v = (self._heads(t) for t in self.kv(context).chunk(2, dim=-1))
        else:
            q, k, v = (self._heads(t) for t in self.qkv(x).chunk(3, dim=-1))
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.out(y.transpose(1, 2).flatten(2))


class FusionBlock(nn.Module):
    """Fuses ΔF back into both images' tokens (pre-norm, residual), per ``fusion``.

    - ``"attention"``: z = F̂ + SA(LN F̂); z = z + CA(LN z, LN ΔF)      (the paper: self + cross-attention)
    - ``"self"``:      z = F̂ + ΔF;      z = z + SA(LN z)               (ΔF injected additively, no cross-attn)
    - ``"add"``:       z = F̂ + ΔF                                     (no parameters)
    - ``"none"``:      never built; the caller uses F̂ directly.

    With ``mlp_ratio > 0`` an MLP branch z = z + MLP(LN z) follows the attention.
    """

    def __init__(self, *, dim: int, fusion: str, num_heads: int, dropout: float, mlp_ratio: float) -> None:
        super().__init__()
        self.fusion = fusion
        self.drop = nn.Dropout(dropout)
        has_attention = fusion in ("attention", "self")
        if has_attention:
            self.norm_self = nn.LayerNorm(dim)
            self.self_attn = Attention(dim=dim, num_heads=num_heads, dropout=dropout, cross=False)
        if fusion == "attention":
            self.norm_query = nn.LayerNorm(dim)
            self.norm_diff = nn.LayerNorm(dim)
            self.cross_attn = Attention(dim=dim, num_heads=num_heads, dropout=dropout, cross=True)
        self.mlp = None
        if has_attention and mlp_ratio > 0:
            hidden = max(1, round(dim * mlp_ratio))
            self.norm_mlp = nn.LayerNorm(dim)
            self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, delta: Tensor) -> Tensor:
        """x: (2B, N, C) stacked ``[F̂1; F̂2]``; delta: (B, N, C) ΔF -> (2B, N, C) ``[F̃1; F̃2]``."""
        if self.fusion == "add":
            return x + delta.repeat(2, 1, 1)
        if self.fusion == "self":
            x = x + delta.repeat(2, 1, 1)
        x = x + self.drop(self.self_attn(self.norm_self(x)))
        if self.fusion == "attention":
            # Both images attend to the same ΔF: lay their queries side by side along the token axis,
            # (2B, N, C) -> (B, 2N, C), so K/V of ΔF are projected once and never copied.
            b2, n, c = x.shape
            q = self.norm_query(x).view(2, b2 // 2, n, c).transpose(0, 1).reshape(b2 // 2, 2 * n, c)
            y = self.cross_attn(q, self.norm_diff(delta))
            x = x + self.drop(y.view(b2 // 2, 2, n, c).transpose(0, 1).reshape(b2, n, c))
        if self.mlp is not None:
            x = x + self.drop(self.mlp(self.norm_mlp(x)))
        return x


class LayerScorer(nn.Module):
    """Score^i = MLP(AvgPool(F̃ⁱ)), one scalar per pair and layer.

    The pooled tokens of both images are concatenated, (B, 2C), so the score can depend on the pair
    (what changed) rather than on one image; one MLP is shared by all layers because the scores are
    compared with each other in a softmax over layers.
    """

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        hidden = max(16, dim // 4)
        # No output bias: one constant added to every layer's score cancels in the softmax over layers.
        self.mlp = nn.Sequential(nn.Linear(2 * dim, hidden), nn.GELU(), nn.Linear(hidden, 1, bias=False))

    def forward(self, fused: Tensor) -> Tensor:
        """fused: (2B, N, C) ``[F̃1; F̃2]`` of one layer -> (B,) scores (unnormalised)."""
        pooled = fused.mean(dim=1)
        half = pooled.shape[0] // 2
        return self.mlp(torch.cat([pooled[:half], pooled[half:]], dim=-1)).squeeze(-1)
