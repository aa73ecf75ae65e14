"""Counting model FLOPs (``make bench``'s MFU, ``make gpu-check``'s): torch's FLOP counter, completed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop, sdpa_flop


def flop_counter() -> FlopCounterMode:
    """torch's FLOP counter, plus the CPU flash-attention kernels SDPA dispatches to (torch counts the CUDA ones
    only); dense attention, as torch counts it (causal masks not halved)."""
    aten = torch.ops.aten

    def raw(formula: Callable[..., int]) -> Callable[..., int]:
        # torch's registered formulas already take tensors (shape-wrapped): mark them so they are not re-wrapped.
        def count(*args: Any, **kwargs: Any) -> int:
            return formula(*args, **kwargs)

        count._get_raw = True  # type: ignore[attr-defined]
        return count

    return FlopCounterMode(
        display=False,
        custom_mapping={
            aten._scaled_dot_product_flash_attention_for_cpu: raw(sdpa_flop),
            aten._scaled_dot_product_flash_attention_for_cpu_backward: raw(sdpa_backward_flop),
        },
    )
