"""``data``: the embedded benchmark's pairs/s per DataLoader worker vs what the training step consumes.

Measured with ``datamodules.synthetic.throughput.generator_throughput`` (generate + render + preprocess, one torch thread, as in a
worker). Workers generate in parallel with the step; with 0 workers the main process generates in series.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from experiments.bench.measure import conditions


def section_data(user: Sequence[str], consumption: float | None, *, seconds: float) -> dict[str, Any]:
    from datamodules.synthetic.throughput import generator_throughput
    from experiments.common import assembly
    from experiments.common.config import load_config

    cfg = load_config(overrides=list(user))
    workers = int(cfg.data.num_workers)
    out: dict[str, Any] = {"workers": workers, "image_size": int(cfg.backbone.image_size)}
    if cfg.data.name != "synthetic":
        out["skipped"] = f"data.name={cfg.data.name}: only the embedded benchmark is generated"
        return out
    with conditions(out):
        rates = generator_throughput(assembly.make_datamodule(cfg), seconds)
    out.update(
        per_worker_pairs_per_s=round(rates["pairs_per_s"], 1),
        per_worker_pairs_per_cpu_s=round(rates["pairs_per_cpu_s"], 1),
        consumption_pairs_per_s=consumption,
    )
    if consumption:
        out["ratio"] = round(max(1, workers) * rates["pairs_per_s"] / consumption, 1)
        out["cpu_share_for_data"] = round(consumption / rates["pairs_per_cpu_s"], 4)
    return out
