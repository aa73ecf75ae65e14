"""``threads``: the default model's step at one thread vs the configured threads, interleaved in one run.

On a quiet machine more threads win; with other jobs on the cores, a thread that waits for a core stalls the
others at every OpenMP barrier, and one thread can be faster (which is why ``num_threads`` is a config key).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from experiments.bench.measure import conditions, interleave, median
from experiments.bench.rig import Rig


def section_threads(rig: Rig, *, repeats: int) -> dict[str, Any]:
    configured = torch.get_num_threads()
    counts = sorted({1, configured})
    out: dict[str, Any] = {"configured": configured}
    if len(counts) == 1:
        out["skipped"] = "one thread configured: nothing to compare"
        return out

    def at(n: int) -> Callable[[], None]:
        def fn() -> None:
            torch.set_num_threads(n)
            try:
                rig.step()
            finally:
                torch.set_num_threads(configured)

        return fn

    with conditions(out):
        times = interleave({str(n): at(n) for n in counts}, repeats)
    out["step_s"] = {n: round(median(ts), 3) for n, ts in times.items()}
    out["pairs_per_s"] = {n: round(rig.batch_size / median(ts), 2) for n, ts in times.items()}
    out["speedup_configured_vs_1"] = round(median(times["1"]) / median(times[str(configured)]), 2)
    return out
