"""``train``: the default model's training step against the machine's peak, and MDP's cost at that scale.

The default model (``load_config()`` + the user's overrides: whatever the defaults are) steps with MDP on and
off, interleaved with matmul bursts: the fraction of peak then compares the step's GFLOP/s with the peak
measured right next to it, under the same load. FLOPs are counted by torch's ``FlopCounterMode`` over one
step (grad enabled, forward + backward). ``mdp_tiny`` adds where the MDP-on step's time goes (each module
replayed alone) and the profiler's top operators.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from experiments.bench.breakdown import profile_table, where_time_goes
from experiments.bench.measure import MatmulPeak, conditions, interleave, median, paired_overhead
from experiments.bench.rig import Rig, build_rig, parameters_m


def mdp_variants(overrides: Sequence[str]) -> dict[str, list[str]]:
    """The same model with MDP on and off (the baseline: last-layer tokens straight to the projector)."""
    return {"mdp_on": [*overrides, "mdp.enabled=true"], "mdp_off": [*overrides, "mdp.enabled=false"]}


def mdp_on_off(rigs: dict[str, Rig], times: dict[str, list[float]]) -> dict[str, Any]:
    """MDP's share of the MDP-on step: from the medians, per interleaved repeat, and in FLOPs."""
    t_on, t_off = median(times["mdp_on"]), median(times["mdp_off"])
    return {
        "step_on_s": round(t_on, 3),
        "step_off_s": round(t_off, 3),
        "overhead": round(1 - t_off / t_on, 3),
        "overhead_paired": round(paired_overhead(times["mdp_on"], times["mdp_off"]), 3),
        "flop_share": round(1 - rigs["mdp_off"].flops / rigs["mdp_on"].flops, 3),
    }


def _against_peak(rig: Rig, step_times: list[float], peaks: list[float]) -> dict[str, Any]:
    t, p = median(step_times), median(peaks)
    # Per repeat, the step's GFLOP/s over the matmul GFLOP/s measured right next to it; then the median.
    paired = [rig.flops / s / 1e9 / pk for s, pk in zip(step_times, peaks)]
    return {
        "batch_size": rig.batch_size,
        "params_m": parameters_m(rig.module),
        "gflop_per_pair": round(rig.flops / rig.batch_size / 1e9, 3),
        "step_s": round(t, 3),
        "step_samples_s": [round(s, 3) for s in step_times],
        "pairs_per_s": round(rig.batch_size / t, 2),
        "gflops": round(rig.flops / t / 1e9, 1),
        "peak_gflops": round(p, 1),
        "peak_samples": [round(x, 1) for x in peaks],
        "fraction_of_peak": round(rig.flops / t / 1e9 / p, 3),
        "fraction_of_peak_paired": round(median(paired), 3),
    }


def section_train(
    user: Sequence[str],
    tokenizer_json: str | None,
    peak: MatmulPeak,
    *,
    default_on: bool,
    repeats: int,
    breakdown_repeats: int,
) -> tuple[dict[str, Any], Rig]:
    """The default model's step (MDP as configured: ``default_on``) and the same model with MDP toggled,
    interleaved with matmul bursts. Returns the section and the default model's rig (for the sections that
    reuse it: generate, threads)."""
    out: dict[str, Any] = {"default_mdp": "on" if default_on else "off"}
    with conditions(out):
        rigs = {k: build_rig(k, v, tokenizer_json, n_batches=2) for k, v in mdp_variants(user).items()}
        for rig in rigs.values():
            rig.count_flops()  # also the first warm-up step
            rig.step()
        fns: dict[str, Callable[[], Any]] = {k: r.step for k, r in rigs.items()}
        peaks: list[float] = []
        fns["peak"] = lambda: peaks.append(peak())
        times = interleave(fns, repeats)
    default = rigs["mdp_on" if default_on else "mdp_off"]
    out.update(_against_peak(default, times[default.name], peaks))
    mdp = mdp_on_off(rigs, times)
    with conditions(mdp):
        mdp["where_time_goes"] = where_time_goes(rigs["mdp_on"], breakdown_repeats)
        mdp["profile_top_ops"] = profile_table(rigs["mdp_on"].step)
    out["mdp_tiny"] = mdp
    return out, default
