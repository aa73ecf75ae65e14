"""Speed benchmarks: what the kit achieves, as a ratio to what this machine can do.

    make bench [ARGS="key=value ..."] [OUT=bench_results/bench.json]
    m3diff-bench [--quick] [--sections peak,train,threads,...] [--threads N] [--out PATH] [--args "k=v ..."]

Sections (each fills one object of the JSON file; a table is printed at the end):

- ``peak``: fp32 matmul GFLOP/s on the configured threads (median of several large matmuls) — the machine's limit.
- ``train``: the default model's training step (``load_config()`` + ``--args``: whatever the defaults are), as
  ``training_step`` + backward + gradient clipping + AdamW + LR schedule; FLOPs counted by torch's
  ``FlopCounterMode`` (grad enabled, forward + backward) -> achieved GFLOP/s and its fraction of the peak. The same
  step with MDP off runs interleaved with it: MDP's overhead at the tiny scale, with where the time goes (each
  top-level module's forward + backward replayed alone, and the profiler's top operators).
- ``mdp_base``: MDP off vs on at base scale (a SigLIP-B/16-size backbone, random init, 224 px, and a GPT-2-small-size
  LM), a few steps at a small batch.
- ``generate``: captions/s of long captions (a fixed number of new tokens, EOS suppressed) with and without the
  KV cache; the token outputs of both must be identical.
- ``score``: a CLEVR-Change-test-sized set (3985 change + 3985 distractor pairs, 5-7 references each) scored
  overall + per category + the semantic group with :class:`~evaluation.scoring.CaptionScorer`, against naive use
  of pycocoevalcap (``COCOEvalCap.evaluate``'s steps, with a new PTB tokenizer and METEOR JVM per subset), which is
  run on a few subsets and extrapolated to all of them when it would not fit the time budget.
- ``data``: the embedded benchmark's pairs/s per DataLoader worker vs the training step's consumption.
- ``threads``: the default step at one thread vs the configured threads, interleaved.
- ``compile`` (opt-in): ``torch.compile`` of the whole model, cold compile time vs the steps it saves.

Results and their interpretation: ``experiments/BENCHMARKS.md``.

Every comparison is a ratio measured within one run, with the A/B repeats interleaved and medians taken, so a
machine shared with other jobs still gives a fair comparison; each section records the 1-minute load average and
this process's run-queue wait (the share of its threads' time spent runnable but not running: 0 on a quiet
machine). ``--quick`` runs every section at toy sizes in seconds (tests); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop, sdpa_flop

DEFAULT_OUT = Path("bench_results") / "bench.json"
SECTIONS = ("peak", "train", "threads", "mdp_base", "generate", "score", "data")
# Opt-in (not in the default run: compiling costs minutes of the 10-minute budget).
EXTRA_SECTIONS = ("compile",)

# Base scale: SigLIP-B/16 (86M, random init) at 224 px with a GPT-2-small-size LM (12 x 768, ~86M with the
# caption tokenizer's vocabulary). MDP keeps the default's settings, at width 768 on 4 tapped layers.
# Every token goes to the LM (token_pool 1), as in the paper and the real-size configs: the default's 2x2
# pooling is a CPU-budget choice for the tiny model.
BASE_OVERRIDES = (
    "model.token_pool=1",
    "backbone.name=siglip-b16",
    "backbone.image_size=224",
    "backbone.layers=[5,7,9,11]",
    "model.lm.name=tiny-gpt2",
    "model.lm.num_layers=12",
    "model.lm.hidden_size=768",
    "model.lm.num_heads=12",
)
# --quick: toy sizes (the tests' captioner), so every section runs in seconds.
QUICK_OVERRIDES = (
    "backbone.image_size=32",
    "model.lm.num_layers=1",
    "model.lm.hidden_size=64",
    "model.lm.num_heads=2",
    "model.lm.vocab_size=128",
    "model.lm.tokenizer_captions=200",
    "data.batch_size=4",
    "mdp.num_heads=2",
)
QUICK_BASE_OVERRIDES = ("backbone.image_size=48", "model.lm.num_layers=2")

TARGETS = {
    "train_fraction_of_peak": (">=", 0.60),
    "mdp_overhead_base": ("<=", 0.15),
    "generate_kv_speedup": (">=", 3.0),
    "score_seconds": ("<=", 60.0),
    "data_to_consumption": (">=", 5.0),
}

log = logging.getLogger("m3diff.bench")


# ============================================================================================== measuring
def _schedstat() -> tuple[int, int] | None:
    """(ns on a CPU, ns waiting on a run queue) summed over this process's threads (Linux), else None."""
    run = wait = 0
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/schedstat") as fh:
                fields = fh.read().split()
            run, wait = run + int(fields[0]), wait + int(fields[1])
    except (OSError, IndexError, ValueError):
        return None
    return run, wait


@contextmanager
def conditions(into: dict[str, Any]) -> Iterator[None]:
    """Record the load average, the run-queue wait and the wall time of the ``with`` body into ``into``.

    The run-queue wait is why numbers from a shared machine are noisy: a thread that waits for a core holds up
    every other OpenMP thread at the next barrier. Threads that end inside the body drop out of the sums.
    """
    load0, sched0, start = os.getloadavg()[0], _schedstat(), time.perf_counter()
    try:
        yield
    finally:
        sched1 = _schedstat()
        into["wall_s"] = round(time.perf_counter() - start, 2)
        into["loadavg_1m"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
        if sched0 and sched1:
            run, wait = sched1[0] - sched0[0], sched1[1] - sched0[1]
            into["runqueue_wait"] = round(wait / (run + wait), 3) if run > 0 and wait >= 0 else None


def interleave(fns: Mapping[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each function, ``repeats`` times, alternating between them (the order reversed
    every other round, so neither always runs right after the other): load that comes and goes hits all alike."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


class MatmulPeak:
    """fp32 ``n x n`` matmuls on the configured threads; each call returns the median GFLOP/s of ``k`` of them."""

    def __init__(self, n: int, k: int = 5) -> None:
        self.n, self.k = n, k
        gen = torch.Generator().manual_seed(0)
        self.a, self.b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
        self.out = torch.empty(n, n)
        torch.mm(self.a, self.b, out=self.out)  # warm up (MKL / oneDNN initialisation)

    def __call__(self) -> float:
        rates = []
        for _ in range(self.k):
            start = time.perf_counter()
            torch.mm(self.a, self.b, out=self.out)
            rates.append(2 * self.n**3 / (time.perf_counter() - start) / 1e9)
        return median(rates)


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


# ============================================================================================== models
@dataclasses.dataclass
class Rig:
    """One model ready to train: the LightningModule, its optimizer / schedule, and fixed batches."""

    name: str
    overrides: list[str]
    module: Any  # CaptionerModule
    optimizer: torch.optim.Optimizer
    scheduler: Any
    batches: list[dict[str, Any]]
    clip: float | None
    flops: int = 0  # forward + backward FLOPs of one step on batches[0]
    steps: int = 0

    @property
    def batch_size(self) -> int:
        return len(self.batches[0]["pair_id"])

    def step(self) -> None:
        """One training step as Lightning's automatic optimization runs it (no logger: ``self.log`` is a no-op)."""
        module, batch = self.module, self.batches[self.steps % len(self.batches)]
        self.optimizer.zero_grad(set_to_none=True)
        loss = module.training_step(batch, self.steps)
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(module.parameters(), self.clip)
        self.optimizer.step()
        self.scheduler.step()
        self.steps += 1

    def count_flops(self) -> int:
        """Forward + backward FLOPs of one step (counted while running it; the optimizer's are elementwise)."""
        counter = flop_counter()
        with counter:
            self.step()
        self.flops = int(counter.get_total_flops())
        return self.flops


def _datamodule(cfg: Any) -> Any:
    from experiments.common import runner

    return runner.make_datamodule(cfg)


def train_tokenizer(cfg: Any) -> str | None:
    """The tiny LM's caption tokenizer, trained as ``make train`` does (None: a pretrained LM brings its own)."""
    from experiments.common import runner
    from lightning_modules.model.language_model import is_tiny_lm
    from lightning_modules.model.tokenizer import train_caption_tokenizer

    if not is_tiny_lm(cfg.model.lm.name):
        return None
    captions = runner.training_captions(_datamodule(cfg), int(cfg.model.lm.tokenizer_captions))
    return train_caption_tokenizer(captions, vocab_size=int(cfg.model.lm.vocab_size))


def build_rig(
    name: str,
    overrides: Sequence[str],
    tokenizer_json: str | None,
    *,
    batch_size: int | None,
    n_batches: int = 1,
) -> Rig:
    """Model + optimizer (the module's own ``configure_optimizers``) + training batches of the configured data."""
    from datamodules.contract import collate_pairs
    from experiments.common.config import load_config, to_container
    from lightning_modules.captioner import CaptionerModule

    cfg = load_config(overrides=list(overrides))
    torch.manual_seed(int(cfg.seed))
    module = CaptionerModule(config=to_container(cfg), tokenizer_json=tokenizer_json)
    module.train()
    spec = module.image_spec
    datamodule = _datamodule(cfg)
    datamodule.set_image_spec(size=spec.size, mean=spec.mean, std=spec.std)
    dataset = datamodule.dataset("train")
    size = batch_size or int(cfg.data.batch_size)
    batches = [collate_pairs([dataset[b * size + i] for i in range(size)]) for b in range(n_batches)]
    # configure_optimizers reads trainer.estimated_stepping_batches (the LR schedule's length) and nothing else.
    module._trainer = SimpleNamespace(estimated_stepping_batches=10_000)
    try:
        opt = module.configure_optimizers()
    finally:
        module._trainer = None
    return Rig(
        name=name,
        overrides=list(overrides),
        module=module,
        optimizer=opt["optimizer"],
        scheduler=opt["lr_scheduler"]["scheduler"],
        batches=batches,
        clip=cfg.trainer.gradient_clip_val,
    )


def parameters_m(module: nn.Module) -> dict[str, float]:
    model = module.model
    parts = {n: sum(p.numel() for p in m.parameters()) / 1e6 for n, m in model.named_children()}
    return {"total": round(sum(parts.values()), 2), **{k: round(v, 2) for k, v in parts.items()}}


# ---------------------------------------------------------------------------------------------- where the time goes
def _map_tensors(obj: Any, fn: Callable[[Tensor], Any]) -> Any:
    if isinstance(obj, Tensor):
        return fn(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(o, fn) for o in obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    return obj


def _tensors(obj: Any) -> list[Tensor]:
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, Mapping):
        return [t for v in obj.values() for t in _tensors(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v)]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [t for f in dataclasses.fields(obj) for t in _tensors(getattr(obj, f.name))]
    return []


@dataclasses.dataclass
class _Call:
    args: Any
    kwargs: Any
    outputs: list[Tensor]
    grads: list[Tensor | None]


def capture_calls(rig: Rig, names: Sequence[str]) -> dict[str, list[_Call]]:
    """Run one real step recording every call of ``model.<name>``: its inputs, and the gradients its outputs
    received in backward, so that each module's forward + backward can be replayed alone, exactly as in the step."""
    model = rig.module.model
    calls: dict[str, list[_Call]] = {n: [] for n in names}
    handles = []
    for name in names:

        def hook(mod: nn.Module, args: Any, kwargs: Any, output: Any, name: str = name) -> None:
            detach = _map_tensors((args, kwargs), lambda t: t.detach().requires_grad_(t.requires_grad))
            outs = [t for t in _tensors(output) if t.requires_grad]
            call = _Call(args=detach[0], kwargs=detach[1], outputs=[], grads=[None] * len(outs))
            for i, t in enumerate(outs):
                t.register_hook(lambda g, i=i, call=call: call.grads.__setitem__(i, g.detach()))
            calls[name].append(call)

        handles.append(getattr(model, name).register_forward_hook(hook, with_kwargs=True))
    try:
        rig.step()
    finally:
        for h in handles:
            h.remove()
    return calls


def replay(module: nn.Module, calls: list[_Call]) -> Callable[[], None]:
    """Forward + backward of ``module`` on the captured inputs, with the captured output gradients."""

    def run() -> None:
        for call in calls:
            out = [t for t in _tensors(module(*call.args, **call.kwargs)) if t.requires_grad]
            pairs = [(t, g) for t, g in zip(out, call.grads) if g is not None]
            if pairs:
                torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs])
        module.zero_grad(set_to_none=True)

    return run


def where_time_goes(rig: Rig, repeats: int) -> list[dict[str, Any]]:
    """Per top-level module of M3Diff: forward + backward replayed alone (ms, share of the step, GFLOP/s); the
    optimizer step alone; and the rest (embedding / concatenation glue, loss, token metrics, clipping). The whole
    step is timed in the same interleaved loop, so the shares compare numbers taken under the same load."""
    model = rig.module.model
    names = [n for n, _ in model.named_children()]
    calls = capture_calls(rig, names)
    fns: dict[str, Callable[[], None]] = {n: replay(getattr(model, n), calls[n]) for n in names if calls[n]}
    flops = {}
    for name, fn in fns.items():
        counter = flop_counter()
        with counter:
            fn()
        flops[name] = counter.get_total_flops()
    # The optimizer alone, on zero gradients kept aside (its cost does not depend on their values; the replays
    # and the step leave the parameters' own .grad unset or changing).
    params = [p for p in rig.module.parameters() if p.requires_grad]
    grads = [torch.zeros_like(p) for p in params]

    def optimizer_step() -> None:
        for p, g in zip(params, grads):
            p.grad = g
        rig.optimizer.step()

    fns["optimizer step"] = optimizer_step
    fns["step"] = rig.step
    times = interleave(fns, repeats)
    step_s = median(times.pop("step"))
    rows: list[dict[str, Any]] = [{"part": "whole step", "ms": round(1e3 * step_s, 1), "share": 1.0}]
    total = 0.0
    for name, ts in times.items():
        t = median(ts)
        total += t
        row = {"part": name, "ms": round(1e3 * t, 1), "share": round(t / step_s, 3)}
        if flops.get(name):
            row.update(gflop=round(flops[name] / 1e9, 2), gflops=round(flops[name] / t / 1e9, 1))
        rows.append(row)
    rest = step_s - total
    rows.append(
        {
            "part": "rest (glue, loss, metrics, clip)",
            "ms": round(1e3 * rest, 1),
            "share": round(rest / step_s, 3),
        }
    )
    rig.optimizer.zero_grad(set_to_none=True)
    return rows


def profile_table(fn: Callable[[], None], rows: int = 15) -> list[str]:
    """The profiler's top operators (by self CPU time) of one call of ``fn``, as table lines."""
    from torch.profiler import ProfilerActivity, profile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=60)
    return [line for line in table.splitlines() if line.strip()]


# ============================================================================================== sections
def section_peak(n: int, bursts: int) -> dict[str, Any]:
    out: dict[str, Any] = {"n": n, "threads": torch.get_num_threads()}
    with conditions(out):
        peak = MatmulPeak(n)
        samples = [peak() for _ in range(bursts)]
    out.update(gflops=round(median(samples), 1), samples=[round(s, 1) for s in samples])
    return out


def section_train(
    user: Sequence[str], tokenizer_json: str | None, peak: MatmulPeak, *, repeats: int, breakdown_repeats: int
) -> tuple[dict[str, Any], Rig]:
    """The default model's step (MDP as configured) and the same model with MDP toggled, interleaved with matmul
    bursts so the fraction of peak compares numbers taken under the same load."""
    from experiments.common.config import load_config

    default_on = bool(load_config(overrides=list(user)).mdp.enabled)
    variants = {"mdp_on": [*user, "mdp.enabled=true"], "mdp_off": [*user, "mdp.enabled=false"]}
    out: dict[str, Any] = {"default_mdp": "on" if default_on else "off"}
    with conditions(out):
        rigs = {k: build_rig(k, v, tokenizer_json, batch_size=None, n_batches=2) for k, v in variants.items()}
        for rig in rigs.values():
            rig.count_flops()  # also the first warm-up step
            rig.step()
        fns: dict[str, Callable[[], Any]] = {k: r.step for k, r in rigs.items()}
        peaks: list[float] = []
        fns["peak"] = lambda: peaks.append(peak())
        times = interleave(fns, repeats)
    default = rigs["mdp_on" if default_on else "mdp_off"]
    t_default = median(times[default.name])
    p = median(peaks)
    # Per repeat, the step's GFLOP/s over the matmul GFLOP/s measured right next to it; then the median.
    paired = [default.flops / t / 1e9 / pk for t, pk in zip(times[default.name], peaks)]
    out.update(
        batch_size=default.batch_size,
        params_m=parameters_m(default.module),
        gflop_per_pair=round(default.flops / default.batch_size / 1e9, 3),
        step_s=round(t_default, 3),
        step_samples_s=[round(t, 3) for t in times[default.name]],
        pairs_per_s=round(default.batch_size / t_default, 2),
        gflops=round(default.flops / t_default / 1e9, 1),
        peak_gflops=round(p, 1),
        peak_samples=[round(x, 1) for x in peaks],
        fraction_of_peak=round(default.flops / t_default / 1e9 / p, 3),
        fraction_of_peak_paired=round(median(paired), 3),
    )
    t_on, t_off = median(times["mdp_on"]), median(times["mdp_off"])
    mdp: dict[str, Any] = {
        "step_on_s": round(t_on, 3),
        "step_off_s": round(t_off, 3),
        "overhead": round(1 - t_off / t_on, 3),  # share of the MDP-on step that MDP costs
        "overhead_paired": round(median([1 - b / a for a, b in zip(times["mdp_on"], times["mdp_off"])]), 3),
        "flop_share": round(1 - rigs["mdp_off"].flops / rigs["mdp_on"].flops, 3),
    }
    with conditions(mdp):
        mdp["where_time_goes"] = where_time_goes(rigs["mdp_on"], breakdown_repeats)
        mdp["profile_top_ops"] = profile_table(rigs["mdp_on"].step)
    out["mdp_tiny"] = mdp
    return out, default


def section_mdp_base(
    user: Sequence[str], base: Sequence[str], tokenizer_json: str | None, *, batch_size: int, repeats: int
) -> dict[str, Any]:
    from experiments.common.config import load_config

    variants = {"mdp_on": [*user, *base, "mdp.enabled=true"], "mdp_off": [*user, *base, "mdp.enabled=false"]}
    cfg = load_config(overrides=[*user, *base])
    label = (
        f"{cfg.backbone.name} {cfg.backbone.image_size}px + {cfg.model.lm.name} "
        f"{cfg.model.lm.num_layers}x{cfg.model.lm.hidden_size}"
    )
    out: dict[str, Any] = {"model": label, "overrides": list(base), "batch_size": batch_size}
    with conditions(out):
        rigs = {k: build_rig(k, v, tokenizer_json, batch_size=batch_size) for k, v in variants.items()}
        for rig in rigs.values():
            rig.count_flops()  # the warm-up step
        times = interleave({k: r.step for k, r in rigs.items()}, repeats)
        on = rigs["mdp_on"]
        calls = capture_calls(on, ["mdp"])["mdp"]
        mdp_alone = median(
            interleave({"mdp": replay(on.module.model.mdp, calls)}, max(1, repeats - 1))["mdp"]
        )
    t_on, t_off = median(times["mdp_on"]), median(times["mdp_off"])
    out.update(
        params_m=parameters_m(on.module),
        gflop_per_pair=round(on.flops / batch_size / 1e9, 1),
        step_on_s=round(t_on, 2),
        step_off_s=round(t_off, 2),
        step_on_samples_s=[round(t, 2) for t in times["mdp_on"]],
        step_off_samples_s=[round(t, 2) for t in times["mdp_off"]],
        overhead=round(1 - t_off / t_on, 3),
        overhead_paired=round(median([1 - b / a for a, b in zip(times["mdp_on"], times["mdp_off"])]), 3),
        flop_share=round(1 - rigs["mdp_off"].flops / on.flops, 3),
        mdp_alone_s=round(mdp_alone, 2),
        mdp_alone_share=round(mdp_alone / t_on, 3),
        gflops_on=round(on.flops / t_on / 1e9, 1),
    )
    return out


def section_generate(rig: Rig, *, tokens: int, batch: int, repeats: int) -> dict[str, Any]:
    """Greedy captions of exactly ``tokens`` new tokens, KV cache on vs off, on the default model."""
    module = rig.module
    module.eval()
    source = rig.batches[0]
    before, after = source["before"][:batch], source["after"][:batch]
    results: dict[str, list[list[int]]] = {}
    lm_time = [0.0]
    start_box = [0.0]
    lm = module.model.lm
    # Time inside the LM's forward calls, to tell model compute from the generate loop's own work.
    pre = lm.register_forward_pre_hook(lambda *_: start_box.__setitem__(0, time.perf_counter()))
    post = lm.register_forward_hook(
        lambda *_: lm_time.__setitem__(0, lm_time[0] + time.perf_counter() - start_box[0])
    )
    in_lm: dict[str, list[float]] = {"cached": [], "uncached": []}

    def run(name: str, use_cache: bool) -> Callable[[], None]:
        def fn() -> None:
            lm_time[0] = 0.0
            with torch.no_grad():
                seqs, _ = module.model.generate(
                    before,
                    after,
                    max_new_tokens=tokens,
                    min_new_tokens=tokens,
                    use_cache=use_cache,
                    num_beams=1,
                )
            in_lm[name].append(lm_time[0])
            results[name] = seqs

        return fn

    out: dict[str, Any] = {"new_tokens": tokens, "batch": batch, "prefix_tokens": None}
    try:
        with conditions(out):
            fns = {"cached": run("cached", True), "uncached": run("uncached", False)}
            for fn in fns.values():
                fn()  # warm-up
            for samples in in_lm.values():
                samples.clear()
            times = interleave(fns, repeats)
    finally:
        pre.remove()
        post.remove()
        module.train()
    with torch.no_grad():
        out["prefix_tokens"] = int(module.model._prefix_with_prompt(before[:1], after[:1])[0].shape[1])
    t_c, t_u = median(times["cached"]), median(times["uncached"])
    lengths = sorted({len(s) for s in results["cached"]})
    out.update(
        cached_captions_per_s=round(batch / t_c, 2),
        uncached_captions_per_s=round(batch / t_u, 2),
        cached_ms_per_token=round(1e3 * t_c / tokens, 2),
        uncached_ms_per_token=round(1e3 * t_u / tokens, 2),
        speedup=round(t_u / t_c, 2),
        identical=results["cached"] == results["uncached"],
        generated_lengths=lengths,
        cached_share_in_lm_forward=round(median(in_lm["cached"]) / t_c, 3),
        uncached_share_in_lm_forward=round(median(in_lm["uncached"]) / t_u, 3),
    )
    return out


# ---------------------------------------------------------------------------------------------- scoring
_SIZES = ("small", "large", "tiny", "big")
_COLORS = ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow")
_MATERIALS = ("rubber", "metal", "metallic", "matte", "shiny")
_SHAPES = ("cube", "sphere", "cylinder", "ball", "block", "object", "thing")
_TEMPLATES = {
    "color": (
        "the {o} changed its color",
        "the {o} became {c}",
        "the {o} turned {c}",
        "the {o} has been painted {c}",
        "the {o} changed to {c}",
        "the color of the {o} was changed",
    ),
    "texture": (
        "the {o} changed its material",
        "the {o} became {m}",
        "the {o} is now {m}",
        "the {o} was made {m}",
        "the material of the {o} has changed",
    ),
    "add": (
        "someone added a {o}",
        "a {o} has been added",
        "a new {o} appeared",
        "there is a new {o}",
        "a {o} was placed in the scene",
    ),
    "drop": (
        "the {o} has disappeared",
        "the {o} is missing",
        "someone removed the {o}",
        "the {o} was removed",
        "the {o} is no longer there",
    ),
    "move": (
        "the {o} moved",
        "the {o} changed its location",
        "someone moved the {o}",
        "the {o} was moved to a different location",
        "the {o} is in a different location",
    ),
    "distractor": (
        "there is no change",
        "no change was made",
        "the two scenes seem identical",
        "nothing has changed",
        "the scene is the same as before",
        "there is no difference",
    ),
}
CLEVR_CHANGE_TYPES = ("color", "texture", "add", "drop", "move")


def _object(rng: random.Random, attrs: tuple[str, str, str, str]) -> str:
    """A CLEVR-style noun phrase of ``attrs`` (size, color, material, shape), some attributes left out."""
    size, color, material, shape = attrs
    words = [w for w, keep in ((size, 0.5), (color, 0.9), (material, 0.5)) if rng.random() < keep]
    return " ".join([*words, shape])


def clevr_like_set(
    scenes: int, seed: int = 0
) -> tuple[dict[str, list[str]], dict[str, str], dict[str, dict]]:
    """A CLEVR-Change-test-shaped set: per scene one change pair (``%06d.png``, a type in turn) and one distractor
    (``%06d.png_n``), 5-7 references each; predictions are right about 60% of the time, otherwise wrong in the
    object or the change. Returns references, predictions and the subsets (categories + the semantic group)."""
    rng = random.Random(seed)
    refs: dict[str, list[str]] = {}
    preds: dict[str, str] = {}
    cats: dict[str, list[str]] = {c: [] for c in (*CLEVR_CHANGE_TYPES, "distractor")}

    def sentence(kind: str, attrs: tuple[str, str, str, str]) -> str:
        return rng.choice(_TEMPLATES[kind]).format(
            o=_object(rng, attrs), c=rng.choice(_COLORS), m=rng.choice(_MATERIALS)
        )

    for s in range(scenes):
        kind = CLEVR_CHANGE_TYPES[s % len(CLEVR_CHANGE_TYPES)]
        attrs = (rng.choice(_SIZES), rng.choice(_COLORS), rng.choice(_MATERIALS), rng.choice(_SHAPES[:5]))
        for pid, k in ((f"{s:06d}.png", kind), (f"{s:06d}.png_n", "distractor")):
            refs[pid] = [sentence(k, attrs) for _ in range(rng.randint(5, 7))]
            roll = rng.random()
            if roll < 0.6:
                preds[pid] = sentence(k, attrs)
            elif roll < 0.8:
                other = (
                    rng.choice(_SIZES),
                    rng.choice(_COLORS),
                    rng.choice(_MATERIALS),
                    rng.choice(_SHAPES[:5]),
                )
                preds[pid] = sentence(k, other)
            else:
                preds[pid] = sentence(rng.choice([*CLEVR_CHANGE_TYPES, "distractor"]), attrs)
            cats[k].append(pid)
    semantic = [p for c in CLEVR_CHANGE_TYPES for p in cats[c]]
    return refs, preds, {"categories": cats, "groups": {"semantic": semantic}}


def naive_score(
    refs: Mapping[str, Sequence[str]], preds: Mapping[str, str], *, meteor: bool
) -> dict[str, float]:
    """What scoring one subset costs with plain pycocoevalcap: ``COCOEvalCap.evaluate()``'s steps (SPICE left
    out, as the kit's default): a PTB tokenizer JVM for the references and one for the predictions, BLEU, a new
    METEOR JVM, ROUGE_L, CIDEr."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in refs[k]] for k in preds})
    res = tokenizer.tokenize({k: [{"caption": preds[k]}] for k in preds})
    scores: dict[str, float] = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores.update({f"Bleu_{n + 1}": float(b) for n, b in enumerate(bleu)})
    if meteor:
        scorer = Meteor()
        try:
            scores["METEOR"] = float(scorer.compute_score(gts, res)[0])
        finally:  # pycocoevalcap's Meteor stops its JVM only in __del__
            scorer.meteor_p.kill()
            scorer.meteor_p.wait()
    scores["ROUGE_L"] = float(Rouge().compute_score(gts, res)[0])
    scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    return scores


def section_score(*, scenes: int, naive_budget_s: float, meteor: bool) -> dict[str, Any]:
    from evaluation.scoring import CaptionScorer, java_missing_reason

    refs, preds, subsets = clevr_like_set(scenes)
    jobs = [("overall", list(preds))] + [
        (f"{k}/{n}", ids) for k, named in subsets.items() for n, ids in named.items()
    ]
    out: dict[str, Any] = {
        "pairs": len(preds),
        "references": sum(len(r) for r in refs.values()),
        "subsets": len(jobs) - 1,
        "meteor": meteor,
    }
    reason = java_missing_reason()
    if reason is not None:
        out["skipped"] = f"Java unavailable: {reason}"
        return out
    with conditions(out):
        start = time.perf_counter()
        with CaptionScorer(meteor=meteor, progress=False) as scorer:
            report = scorer.score(refs, preds, subsets)
        out["scorer_s"] = round(time.perf_counter() - start, 2)
        # Naive: one full evaluation per job, smallest subsets first, until the budget is spent; the rest is
        # extrapolated with a fixed cost per evaluation + a cost per pair fitted on the measured ones.
        naive: list[tuple[str, int, float]] = []
        diffs: list[float] = []
        spent = 0.0
        for label, ids in _naive_order(jobs):
            if naive and spent > naive_budget_s:
                break
            start = time.perf_counter()
            scores = naive_score(refs, {i: preds[i] for i in ids}, meteor=meteor)
            took = time.perf_counter() - start
            spent += took
            naive.append((label, len(ids), took))
            kind, _, name = label.partition("/")
            mine = report.overall if label == "overall" else report.subsets[kind][name]
            diffs.extend(abs(scores[m] - mine[m]) for m in scores)
    measured = {label for label, _, _ in naive}
    out["naive_measured"] = [{"subset": lab, "pairs": n, "s": round(t, 2)} for lab, n, t in naive]
    rest = [len(ids) for label, ids in jobs if label not in measured]
    total = sum(t for _, _, t in naive)
    if rest:
        fixed, per_pair = _fit_cost(naive)
        total += sum(fixed + per_pair * n for n in rest)
    out.update(
        naive_s=round(total, 1),
        naive_extrapolated=bool(rest),
        naive_extrapolated_evaluations=len(rest),
        speedup=round(total / out["scorer_s"], 1),
        max_abs_diff_vs_naive=float(f"{max(diffs):.2e}") if diffs else None,
        overall=report.overall,
    )
    return out


def _naive_order(jobs: Sequence[tuple[str, list[str]]]) -> list[tuple[str, list[str]]]:
    """The smallest job, then the largest but one, then the rest smallest first: two sizes early, so that the
    fixed cost per evaluation (JVM starts) and the cost per pair can be told apart when the budget stops it."""
    by_size = sorted(jobs, key=lambda j: len(j[1]))
    if len(by_size) < 3:
        return by_size
    first, second = by_size[0], by_size[-2]
    return [first, second, *[j for j in by_size if j is not first and j is not second]]


def _fit_cost(samples: Sequence[tuple[str, int, float]]) -> tuple[float, float]:
    """Least-squares ``seconds = fixed + per_pair * pairs`` (one sample: all of it per pair, no fixed part)."""
    xs, ys = [n for _, n, _ in samples], [t for _, _, t in samples]
    if len(set(xs)) < 2:
        return 0.0, sum(ys) / max(1, sum(xs))
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    slope = max(slope, 0.0)
    return max(0.0, my - slope * mx), slope


def section_threads(rig: Rig, *, repeats: int) -> dict[str, Any]:
    """The default model's step at 1 thread and at each thread count up to the configured one, interleaved in
    one run: on a quiet machine more threads win; with other jobs on the cores, a thread that waits for a core
    stalls the others at every OpenMP barrier and one thread can be faster."""
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


def section_compile(user: Sequence[str], tokenizer_json: str | None, *, repeats: int) -> dict[str, Any]:
    """``torch.compile`` of the whole M3Diff (forward + backward through AOTAutograd) vs eager, same run.

    Caption lengths differ from batch to batch, so the first steps compile again for new shapes until the
    dynamic-shape graph settles; all of that counts as compile time. ``pays_off_within_10_min`` compares the
    compile time with what the faster steps save over a 10-minute run.
    """
    out: dict[str, Any] = {}
    with conditions(out):
        eager = build_rig("eager", user, tokenizer_json, batch_size=None, n_batches=4)
        compiled = build_rig("compiled", user, tokenizer_json, batch_size=None, n_batches=4)
        eager.step()  # warm-up
        compiled.module.model = torch.compile(compiled.module.model)
        import torch._inductor.config as inductor_config

        # A cold compile, as on a fresh machine: no FX-graph / kernel caches from earlier runs.
        cached = inductor_config.force_disable_caches
        inductor_config.force_disable_caches = True
        warm = []
        try:
            for _ in range(4):  # one pass over the four batches (four caption lengths)
                start = time.perf_counter()
                compiled.step()
                warm.append(time.perf_counter() - start)
        finally:
            inductor_config.force_disable_caches = cached
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


def section_data(user: Sequence[str], consumption: float | None, *, seconds: float) -> dict[str, Any]:
    from experiments.common.config import load_config
    from experiments.synth import benchmark

    cfg = load_config(overrides=list(user))
    workers = int(cfg.data.num_workers)
    out: dict[str, Any] = {"workers": workers, "image_size": int(cfg.backbone.image_size)}
    if cfg.data.name != "synthetic":
        out["skipped"] = f"data.name={cfg.data.name}: only the embedded benchmark is generated"
        return out
    with conditions(out):
        rates = benchmark(_datamodule(cfg), seconds)
    per_worker = rates["pairs_per_s"]
    out.update(
        per_worker_pairs_per_s=round(per_worker, 1),
        per_worker_pairs_per_cpu_s=round(rates["pairs_per_cpu_s"], 1),
        consumption_pairs_per_s=consumption,
    )
    if consumption:
        # Workers generate in parallel with the step; 0 workers = the main process, in series with it.
        out["ratio"] = round(max(1, workers) * per_worker / consumption, 1)
        out["cpu_share_for_data"] = round(consumption / rates["pairs_per_cpu_s"], 4)
    return out


# ============================================================================================== report
def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
    }
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        for key in ("Model name", "CPU(s)", "Thread(s) per core", "L2 cache", "L3 cache"):
            if key in fields:
                info[key.lower().replace("(s)", "s").replace(" ", "_")] = fields[key]
        flags = fields.get("Flags", "").split()
        info["simd"] = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def check_targets(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    values = {
        "train_fraction_of_peak": results.get("train", {}).get("fraction_of_peak"),
        "mdp_overhead_base": results.get("mdp_base", {}).get("overhead"),
        "generate_kv_speedup": results.get("generate", {}).get("speedup"),
        "score_seconds": results.get("score", {}).get("scorer_s"),
        "data_to_consumption": results.get("data", {}).get("ratio"),
    }
    out = {}
    for key, (op, target) in TARGETS.items():
        value = values[key]
        met = None if value is None else (value >= target if op == ">=" else value <= target)
        out[key] = {"value": value, "target": f"{op} {target:g}", "met": met}
    return out


def render_table(results: dict[str, Any]) -> str:
    """The printed summary: one line per figure, the target and whether it is met."""
    rows: list[tuple[str, str, str]] = []
    m = results["machine"]
    tg = results.get("targets", {})

    def ok(key: str) -> str:
        t = tg.get(key)
        if not t or t["met"] is None:
            return ""
        return f"{t['target']}: {'met' if t['met'] else 'NOT met'}"

    def cond(sec: dict[str, Any]) -> str:
        load = sec.get("loadavg_1m")
        wait = sec.get("runqueue_wait")
        return (
            f"load {load[0]:.1f}->{load[1]:.1f}" + (f", rq wait {wait:.0%}" if wait is not None else "")
            if load
            else ""
        )

    if "peak" in results:
        p = results["peak"]
        rows.append(
            ("peak", f"fp32 matmul {p['n']}^3, {p['threads']} threads: {p['gflops']:.1f} GFLOP/s", cond(p))
        )
    if "train" in results:
        t = results["train"]
        rows.append(
            (
                "train",
                f"default model (MDP {t['default_mdp']}), batch {t['batch_size']}: {t['pairs_per_s']:.2f} pairs/s, "
                f"{t['step_s']:.2f} s/step, {t['gflop_per_pair']:.2f} GFLOP/pair",
                cond(t),
            )
        )
        rows.append(
            (
                "",
                f"{t['gflops']:.1f} GFLOP/s = {t['fraction_of_peak']:.0%} of {t['peak_gflops']:.1f} "
                f"(paired per repeat: {t['fraction_of_peak_paired']:.0%})",
                ok("train_fraction_of_peak"),
            )
        )
        d = t["mdp_tiny"]
        rows.append(
            (
                "mdp tiny",
                f"step on {d['step_on_s']:.2f} s / off {d['step_off_s']:.2f} s: overhead {d['overhead']:.0%} "
                f"(paired {d['overhead_paired']:.0%}; {d['flop_share']:.0%} of FLOPs)",
                "reported",
            )
        )
    if "mdp_base" in results:
        b = results["mdp_base"]
        rows.append(
            (
                "mdp base",
                f"{b['model']}, batch {b['batch_size']}: on {b['step_on_s']:.1f} s / off "
                f"{b['step_off_s']:.1f} s: overhead {b['overhead']:.0%} (paired {b['overhead_paired']:.0%}; "
                f"alone {b['mdp_alone_share']:.0%}; {b['flop_share']:.0%} of FLOPs)",
                ok("mdp_overhead_base"),
            )
        )
    if "generate" in results:
        g = results["generate"]
        rows.append(
            (
                "generate",
                f"{g['new_tokens']} new tokens, batch {g['batch']}: cached {g['cached_captions_per_s']:.2f} / uncached "
                f"{g['uncached_captions_per_s']:.2f} captions/s = {g['speedup']:.1f}x, identical: {g['identical']}",
                ok("generate_kv_speedup"),
            )
        )
    if "score" in results:
        s = results["score"]
        if "skipped" in s:
            rows.append(("score", s["skipped"], ""))
        else:
            how = (
                f"extrapolated from {len(s['naive_measured'])} evaluations"
                if s["naive_extrapolated"]
                else "measured"
            )
            rows.append(
                (
                    "score",
                    f"{s['pairs']} pairs + {s['subsets']} subsets: CaptionScorer {s['scorer_s']:.1f} s vs naive "
                    f"{s['naive_s']:.0f} s ({how}) = {s['speedup']:.1f}x; max |diff| {s['max_abs_diff_vs_naive']}",
                    ok("score_seconds"),
                )
            )
    if "threads" in results and "skipped" not in results["threads"]:
        t = results["threads"]
        rows.append(
            (
                "threads",
                "default step: "
                + ", ".join(f"{n} thread(s) {v:.2f} pairs/s" for n, v in t["pairs_per_s"].items())
                + f" = {t['speedup_configured_vs_1']:.2f}x",
                cond(t),
            )
        )
    if "compile" in results:
        c = results["compile"]
        rows.append(
            (
                "compile",
                f"torch.compile: {c['compile_s']:.0f} s to compile, step {c['compiled_step_s']:.2f} s vs eager "
                f"{c['eager_step_s']:.2f} s = {c['speedup']:.2f}x; pays off after {c['breakeven_s']} s",
                "pays off in 10 min" if c["pays_off_within_10_min"] else "does not pay off in 10 min",
            )
        )
    if "data" in results:
        d = results["data"]
        if "skipped" in d:
            rows.append(("data", d["skipped"], ""))
        elif d.get("ratio") is not None:
            rows.append(
                (
                    "data",
                    f"{d['per_worker_pairs_per_s']:.0f} pairs/s per worker x {max(1, d['workers'])} vs "
                    f"{d['consumption_pairs_per_s']:.1f} consumed = {d['ratio']:.0f}x",
                    ok("data_to_consumption"),
                )
            )
    width = max(len(r[1]) for r in rows) if rows else 40
    head = (
        f"M3Diff kit bench{' (--quick: toy sizes)' if results.get('quick') else ''}: {m.get('model_name', '?')}, "
        f"{m['cpus']} CPUs, torch {m['torch']}, {m['threads']} threads; "
        f"load {results['loadavg_1m'][0]:.1f}->{results['loadavg_1m'][1]:.1f}, {results['wall_s']:.0f} s"
    )
    lines = [head]
    waits = [v.get("runqueue_wait") for v in results.values() if isinstance(v, dict)]
    worst = max((w for w in waits if w is not None), default=None)
    if worst is not None and worst > 0.1:
        lines.append(
            f"NOTE: shared machine: this process waited for a CPU up to {worst:.0%} of its time; absolute "
            "figures are low and noisy, the same-run ratios are the comparable numbers"
        )
    lines.append("-" * min(len(head), 160))
    lines += [f"{a:<9} {b:<{width}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


# ============================================================================================== CLI
def run(
    *,
    user: Sequence[str],
    sections: Sequence[str],
    quick: bool,
    out_path: Path,
) -> dict[str, Any]:
    from experiments.common.config import load_config

    user = [*(QUICK_OVERRIDES if quick else ()), *user]
    results: dict[str, Any] = {
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "overrides": list(user),
        "quick": quick,
        "sections": list(sections),
        "machine": machine(),
    }
    with conditions(results):
        peak = MatmulPeak(256 if quick else 2048, k=3 if quick else 5)
        if "peak" in sections:
            results["peak"] = section_peak(peak.n, 3 if quick else 7)
        cfg = load_config(overrides=list(user))
        needs_model = any(
            s in sections for s in ("train", "threads", "mdp_base", "generate", "data", "compile")
        )
        tokenizer_json = None
        if needs_model:
            started = time.perf_counter()
            tokenizer_json = train_tokenizer(cfg)
            results["tokenizer_s"] = round(time.perf_counter() - started, 1)
        default_rig = None
        if "train" in sections or "data" in sections or "threads" in sections:
            log.info("train: default model, MDP on/off interleaved")
            results["train"], default_rig = section_train(
                user, tokenizer_json, peak, repeats=2 if quick else 6, breakdown_repeats=1 if quick else 3
            )
        elif "generate" in sections:
            default_rig = build_rig("default", user, tokenizer_json, batch_size=None)
        if "generate" in sections and default_rig is not None:
            log.info("generate: KV cache on/off")
            results["generate"] = section_generate(
                default_rig, tokens=8 if quick else 80, batch=2 if quick else 8, repeats=2 if quick else 3
            )
        if "mdp_base" in sections:
            log.info("mdp_base: base-scale model, MDP on/off")
            results["mdp_base"] = section_mdp_base(
                user,
                QUICK_BASE_OVERRIDES if quick else BASE_OVERRIDES,
                tokenizer_json,
                batch_size=2,
                repeats=1 if quick else 4,
            )
        if "score" in sections:
            log.info("score: CaptionScorer vs naive pycocoevalcap")
            results["score"] = section_score(
                scenes=30 if quick else 3985, naive_budget_s=0.0 if quick else 60.0, meteor=not quick
            )
        if "threads" in sections and default_rig is not None:
            log.info("threads: the default step at 1 vs %d threads", torch.get_num_threads())
            results["threads"] = section_threads(default_rig, repeats=2 if quick else 3)
        if "compile" in sections:
            log.info("compile: torch.compile vs eager")
            results["compile"] = section_compile(user, tokenizer_json, repeats=2 if quick else 4)
        if "data" in sections:
            consumption = results.get("train", {}).get("pairs_per_s")
            results["data"] = section_data(user, consumption, seconds=1.0 if quick else 4.0)
    results["targets"] = check_targets(results)
    results["table"] = render_table(results)
    from evaluation.scoring import atomic_write_text

    atomic_write_text(out_path, json.dumps(results, indent=1) + "\n")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="m3diff-bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="", help=f"JSON file to write (OUT=, default {DEFAULT_OUT})")
    parser.add_argument(
        "--args", default="", help='config overrides of the model benchmarked, "key=value ..." (ARGS=)'
    )
    parser.add_argument(
        "--sections",
        default="",
        help=f"comma-separated, from {','.join(SECTIONS + EXTRA_SECTIONS)} (default: all but {','.join(EXTRA_SECTIONS)})",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads (default: torch's, = cores)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="toy sizes, seconds (tests); the numbers mean nothing"
    )
    ns = parser.parse_args(argv)
    sections = [s.strip() for s in ns.sections.split(",") if s.strip()] or list(SECTIONS)
    unknown = sorted(set(sections) - set(SECTIONS) - set(EXTRA_SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {list(SECTIONS + EXTRA_SECTIONS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("lightning", "lightning.pytorch", "transformers", "m3diff.scoring"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    threads = torch.get_num_threads()
    try:
        if ns.threads:
            torch.set_num_threads(ns.threads)
        with warnings.catch_warnings():
            # training_step's self.log() without a Trainer warns once per call site; nothing else is silenced.
            warnings.filterwarnings("ignore", message=".*self.log.*")
            results = run(
                user=shlex.split(ns.args or ""),
                sections=sections,
                quick=ns.quick,
                out_path=Path(ns.out or DEFAULT_OUT),
            )
    finally:
        torch.set_num_threads(threads)
    print(results["table"])
    print(f"\nwrote {ns.out or DEFAULT_OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
