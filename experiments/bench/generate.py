"""``generate``: captions/s of long captions with and without the KV cache, on the default model.

Greedy decoding of exactly ``tokens`` new tokens (EOS suppressed through ``min_new_tokens``), so both paths do
the same work; their token outputs must be identical. The time spent inside the LM's forward calls is recorded
too, to tell model compute from the work of HF ``generate``'s own loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from experiments.bench.measure import conditions, interleave, median
from experiments.bench.rig import Rig


@contextmanager
def time_inside(module: nn.Module) -> Iterator[list[float]]:
    """Yields a one-element list that accumulates the seconds spent in ``module``'s forward calls."""
    total, started = [0.0], [0.0]
    pre = module.register_forward_pre_hook(lambda *_: started.__setitem__(0, time.perf_counter()))
    post = module.register_forward_hook(
        lambda *_: total.__setitem__(0, total[0] + time.perf_counter() - started[0])
    )
    try:
        yield total
    finally:
        pre.remove()
        post.remove()


def prefix_tokens(model: Any, before: torch.Tensor, after: torch.Tensor) -> int:
    """Positions the LM sees before the first caption token: the visual tokens and the prompt text."""
    with torch.no_grad():
        text = sum(ids.numel() for ids in model.text_segments)
        return int(model.encode(before, after).embeds.shape[1] + text)


def section_generate(rig: Rig, *, tokens: int, batch: int, repeats: int) -> dict[str, Any]:
    """Greedy captions of exactly ``tokens`` new tokens, KV cache on vs off, interleaved."""
    model = rig.module.model
    source = rig.batches[0]
    before, after = source["before"][:batch], source["after"][:batch]
    outputs: dict[str, list[list[int]]] = {}
    in_lm: dict[str, list[float]] = {"cached": [], "uncached": []}
    # The longest training caption in tokens (the data-driven limit): the bench generates past it.
    limit = rig.module.config["model"]["max_caption_tokens"]
    out: dict[str, Any] = {"new_tokens": tokens, "batch": batch, "data_caption_tokens": limit}

    def decode(name: str, clock: list[float]) -> Callable[[], None]:
        def fn() -> None:
            clock[0] = 0.0
            with torch.no_grad():
                seqs, _ = model.generate(
                    before,
                    after,
                    max_new_tokens=tokens,
                    min_new_tokens=tokens,
                    use_cache=name == "cached",
                    num_beams=1,
                )
            in_lm[name].append(clock[0])
            outputs[name] = seqs

        return fn

    rig.module.eval()
    try:
        with conditions(out), time_inside(model.lm) as clock:
            fns = {name: decode(name, clock) for name in in_lm}
            for fn in fns.values():
                fn()  # warm-up
            for samples in in_lm.values():
                samples.clear()
            times = interleave(fns, repeats)
        out["prefix_tokens"] = prefix_tokens(model, before[:1], after[:1])
    finally:
        rig.module.train()
    t_c, t_u = median(times["cached"]), median(times["uncached"])
    out.update(
        cached_captions_per_s=round(batch / t_c, 2),
        uncached_captions_per_s=round(batch / t_u, 2),
        cached_ms_per_token=round(1e3 * t_c / tokens, 2),
        uncached_ms_per_token=round(1e3 * t_u / tokens, 2),
        speedup=round(t_u / t_c, 2),
        identical=outputs["cached"] == outputs["uncached"],
        generated_lengths=sorted({len(s) for s in outputs["cached"]}),
        cached_share_in_lm_forward=round(median(in_lm["cached"]) / t_c, 3),
        uncached_share_in_lm_forward=round(median(in_lm["uncached"]) / t_u, 3),
    )
    return out
