"""``compile`` (opt-in): ``torch.compile`` of the whole M3Diff (forward + backward through AOTAutograd) vs eager.

Caption lengths differ from batch to batch, so the first steps compile again for new shapes until the
dynamic-shape graph settles; all of that counts as compile time, measured cold (inductor's caches off, as on a
fresh machine). ``pays_off_within_10_min`` compares the compile time with what the faster steps save over a
10-minute run. Not in the default run: compiling costs minutes of the bench's budget.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from experiments.bench.measure import conditions, interleave, median
from experiments.bench.rig import Rig, build_rig


def cold_compile_steps(rig: Rig, steps: int) -> list[float]:
    """Compile ``rig``'s model and time its first ``steps`` steps with inductor's caches disabled."""
    import torch._inductor.config as inductor_config

    rig.module.model = torch.compile(rig.module.model)
    cached = inductor_config.force_disable_caches
    inductor_config.force_disable_caches = True
    times = []
    try:
        for _ in range(steps):
            start = time.perf_counter()
            rig.step()
            times.append(time.perf_counter() - start)
    finally:
        inductor_config.force_disable_caches = cached
    return times


def section_compile(user: Sequence[str], tokenizer_json: str | None, *, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with conditions(out):
        eager = build_rig("eager", user, tokenizer_json, n_batches=4)
        compiled = build_rig("compiled", user, tokenizer_json, n_batches=4)
        eager.step()  # warm-up
        warm = cold_compile_steps(compiled, len(compiled.batches))  # one pass: four caption lengths
        times = interleave({"eager": eager.step, "compiled": compiled.step}, repeats)
    t_e, t_c = median(times["eager"]), median(times["compiled"])
    compile_s = sum(warm) - len(warm) * t_c
    saving = t_e - t_c
    breakeven = compile_s / saving if saving > 0 else None
    out.update(
        first_steps_s=[round(t, 1) for t in warm],
        compile_s=round(compile_s, 1),
        eager_step_s=round(t_e, 3),
        compiled_step_s=round(t_c, 3),
        speedup=round(t_e / t_c, 3),
        breakeven_steps=None if breakeven is None else round(breakeven),
        breakeven_s=None if breakeven is None else round(breakeven * t_e),
        pays_off_within_10_min=bool(breakeven is not None and breakeven * t_e < 600),
    )
    return out
