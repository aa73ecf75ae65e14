"""Typed configuration of the MDP module: every design choice of the paper is a switch here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

Difference = Literal["concat", "subtract"]
Fusion = Literal["attention", "self", "add", "none"]
LayerWeighting = Literal["learned", "uniform"]

_DIFFERENCES = ("concat", "subtract")
_FUSIONS = ("attention", "self", "add", "none")
_WEIGHTINGS = ("learned", "uniform")


@dataclass(frozen=True, kw_only=True)
class MDPConfig:
    """Hyper-parameters of :class:`mdp.MDP` (Multi-scale Differential Perception, OmniDiff / M³Diff, ICCV 2025).

    Values are validated on construction, so a bad YAML override fails before any model is built.
    """

    # Channel width C of the backbone tokens; MDP keeps it (input and output are (B, N, C)).
    dim: int = 192
    # Number L of tapped encoder layers the module expects; 1 = single-scale.
    num_layers: int = 3
    # Gated modulation λ_k = σ(W_m[F_k ‖ F_other]) ⊙ F_k before the difference; False = identity.
    gate: bool = True
    # "concat": ΔF = W_p[F̂1 ‖ F̂2 ‖ F̂1−F̂2] (the paper); "subtract": ΔF = F̂1 − F̂2 (no parameters).
    difference: Difference = "concat"
    # How ΔF goes back into each image's tokens: "attention" = self-attention + cross-attention to ΔF
    # (the paper); "self" = F̂ + ΔF, then self-attention; "add" = F̂ + ΔF; "none" = F̂ (no ΔF at all).
    fusion: Fusion = "attention"
    # "learned": softmax over layers of MLP(AvgPool(F̃ⁱ)) (the paper); "uniform": mean over layers.
    layer_weighting: LayerWeighting = "learned"
    # Attention heads of the fusion blocks; must divide `dim`.
    num_heads: int = 4
    # Dropout on attention weights and on every residual branch (training only).
    dropout: float = 0.0
    # Hidden width ratio of a pre-norm MLP after the attention in each fusion block; 0 = no MLP
    # (the paper describes attention + residuals only, and the MLP would cost ~40% more MDP compute).
    mlp_ratio: float = 0.0
    # One gate / difference / fusion module for all layers instead of one per layer (L× fewer params).
    share_layers: bool = False
    # Output F′ = F_last + Z(Σᵢ wᵢ F̃ⁱ) with Z a zero-initialised linear map: at step 0 MDP returns exactly the
    # last tapped layer's tokens, so a pretrained projector (LLaVA's) first sees what it was trained on.
    # Not in the paper (it does not say how MDP starts); the kit's plug-and-play option.
    identity_init: bool = False

    def __post_init__(self) -> None:
        _check_int("dim", self.dim, minimum=1)
        _check_int("num_layers", self.num_layers, minimum=1)
        _check_int("num_heads", self.num_heads, minimum=1)
        _check_choice("difference", self.difference, _DIFFERENCES)
        _check_choice("fusion", self.fusion, _FUSIONS)
        _check_choice("layer_weighting", self.layer_weighting, _WEIGHTINGS)
        for name in ("gate", "share_layers", "identity_init"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"MDPConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if not isinstance(self.dropout, int | float) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"MDPConfig.dropout must be a float in [0, 1), got {self.dropout!r}")
        if not isinstance(self.mlp_ratio, int | float) or self.mlp_ratio < 0:
            raise ValueError(f"MDPConfig.mlp_ratio must be >= 0, got {self.mlp_ratio!r}")
        if self.uses_attention and self.dim % self.num_heads:
            raise ValueError(
                f"MDPConfig.dim={self.dim} is not divisible by num_heads={self.num_heads} "
                f"(needed by fusion={self.fusion!r})"
            )

    @property
    def uses_attention(self) -> bool:
        """Whether the fusion blocks contain attention (and therefore need `num_heads`)."""
        return self.fusion in ("attention", "self")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (for hparams / YAML); ``MDPConfig(**cfg.to_dict())`` round-trips."""
        return asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of all fields, e.g. to split MDP keys out of a larger config mapping."""
        return tuple(f.name for f in fields(cls))


def _check_int(name: str, value: object, *, minimum: int) -> None:
    # bool is an int subclass; `num_layers=True` is a bug, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"MDPConfig.{name} must be an int >= {minimum}, got {value!r}")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"MDPConfig.{name} must be one of {choices}, got {value!r}")
