"""How fast the embedded benchmark is generated: pairs per second in one process (``make synth ARGS=--bench``,
``make bench``'s ``data`` section). The design goal: data never starves training."""

from __future__ import annotations

import time

import torch

from datamodules.synthetic.datamodule import SyntheticDataModule


def generator_throughput(
    dm: SyntheticDataModule, seconds: float = 5.0, split: str = "train"
) -> dict[str, float]:
    """Pairs per second in one process: full samples (generate + render + preprocess to tensors, as a
    DataLoader worker does it: one torch thread) and captions only (no rendering).

    ``*_per_s`` divide by wall-clock time; ``*_per_cpu_s`` by this process's CPU time, which is what one
    worker delivers on an idle core (on a busy shared machine the wall-clock rate is lower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what every DataLoader worker runs with
    try:
        dataset = dm.dataset(split)
        rates = {}
        for name, fn in (("pairs", dataset.__getitem__), ("captions_only_pairs", dataset.spec)):
            fn(0)  # warm up (font, caches)
            count, start, cpu = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - start < seconds / 2:
                fn(count % len(dataset))
                count += 1
            rates[f"{name}_per_s"] = count / (time.perf_counter() - start)
            rates[f"{name}_per_cpu_s"] = count / max(1e-9, time.process_time() - cpu)
    finally:
        torch.set_num_threads(threads)
    rates["image_size"] = float(dm.transform.size)
    return rates


# ---------------------------------------------------------------------------------------------- CLI
