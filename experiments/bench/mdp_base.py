"""``mdp_base``: MDP's cost at base scale, where the paper's plug-and-play claim is made.

A SigLIP-B/16-size backbone (86M, random init) at 224 px with a GPT-2-small-size LM (12 x 768, ~86M with the
caption tokenizer's vocabulary); MDP keeps the default's settings, at width 768 on 4 tapped layers. Every
token goes to the LM (``token_pool=1``), as in the paper and the real-size configs: the default's 2x2 pooling
is a CPU-budget choice for the tiny model. A few steps at a small batch, MDP on and off interleaved, plus MDP's
forward + backward replayed alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from experiments.bench.breakdown import capture_calls, replay
from experiments.bench.measure import conditions, interleave, median
from experiments.bench.rig import build_rig, parameters_m
from experiments.bench.train import mdp_on_off, mdp_variants

BASE_OVERRIDES = (
    "model.token_pool=1",
    "backbone.name=siglip-b16",
    "backbone.pretrained=null",  # random init: not the default backbone's weights file (another architecture)
    "backbone.image_size=224",
    "backbone.layers=[5,7,9,11]",
    "model.lm.name=tiny-gpt2",
    "model.lm.num_layers=12",
    "model.lm.hidden_size=768",
    "model.lm.num_heads=12",
)
# --quick: BASE_OVERRIDES (the same backbone and weights setting, so the same code path), then toy sizes.
QUICK_BASE_OVERRIDES = ("backbone.image_size=48", "model.lm.num_layers=2")


def describe(cfg: Any) -> str:
    """``siglip-b16 224px + tiny-gpt2 12x768``: the model a base-scale figure belongs to."""
    return (
        f"{cfg.backbone.name} {cfg.backbone.image_size}px + {cfg.model.lm.name} "
        f"{cfg.model.lm.num_layers}x{cfg.model.lm.hidden_size}"
    )


def section_mdp_base(
    user: Sequence[str], base: Sequence[str], tokenizer_json: str | None, *, batch_size: int, repeats: int
) -> dict[str, Any]:
    from experiments.common.config import load_config

    overrides = [*user, *base, f"data.batch_size={batch_size}"]
    out: dict[str, Any] = {
        "model": describe(load_config(overrides=overrides)),
        "overrides": list(base),
        "batch_size": batch_size,
    }
    with conditions(out):
        rigs = {k: build_rig(k, v, tokenizer_json) for k, v in mdp_variants(overrides).items()}
        for rig in rigs.values():
            rig.count_flops()  # the warm-up step
        times = interleave({k: r.step for k, r in rigs.items()}, repeats)
        on = rigs["mdp_on"]
        calls = capture_calls(on, ["mdp"])["mdp"]
        alone = interleave({"mdp": replay(on.module.model.mdp, calls)}, max(1, repeats - 1))["mdp"]
    shares = mdp_on_off(rigs, times)
    t_on = median(times["mdp_on"])
    out.update(
        params_m=parameters_m(on.module),
        gflop_per_pair=round(on.flops / batch_size / 1e9, 1),
        step_on_s=round(t_on, 2),
        step_off_s=round(median(times["mdp_off"]), 2),
        step_on_samples_s=[round(t, 2) for t in times["mdp_on"]],
        step_off_samples_s=[round(t, 2) for t in times["mdp_off"]],
        overhead=shares["overhead"],
        overhead_paired=shares["overhead_paired"],
        flop_share=shares["flop_share"],
        mdp_alone_s=round(median(alone), 2),
        mdp_alone_share=round(median(alone) / t_on, 3),
        gflops_on=round(on.flops / t_on / 1e9, 1),
    )
    return out
