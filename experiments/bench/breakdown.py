"""Where a training step's time goes: each top-level module replayed alone, and the profiler's top operators.

Replaying, not hooking timers into the step: a module's forward and backward are far apart in the step
(backward runs in reverse order, interleaved with the other modules'), so the only clean measurement of one
module is to record what it saw in a real step (its inputs and the gradients its outputs received) and run
its forward + backward alone on exactly that.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from experiments.bench.measure import interleave, median
from experiments.bench.rig import Rig
from experiments.common.flops import flop_counter


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
class Call:
    """One call of a module in a real step: its (detached) inputs and the gradients of its outputs."""

    args: Any
    kwargs: Any
    grads: list[Tensor | None]


def capture_calls(rig: Rig, names: Sequence[str]) -> dict[str, list[Call]]:
    """Run one real step recording every call of ``model.<name>``: its inputs, and the gradients its outputs
    received in backward, so that each module's forward + backward can be replayed alone, exactly as in the step."""
    model = rig.module.model
    calls: dict[str, list[Call]] = {n: [] for n in names}
    handles = []
    for name in names:

        def hook(mod: nn.Module, args: Any, kwargs: Any, output: Any, name: str = name) -> None:
            detached = _map_tensors((args, kwargs), lambda t: t.detach().requires_grad_(t.requires_grad))
            outs = [t for t in _tensors(output) if t.requires_grad]
            call = Call(args=detached[0], kwargs=detached[1], grads=[None] * len(outs))
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


def replay(module: nn.Module, calls: list[Call]) -> Callable[[], None]:
    """Forward + backward of ``module`` on the captured inputs, with the captured output gradients."""

    def run() -> None:
        for call in calls:
            out = [t for t in _tensors(module(*call.args, **call.kwargs)) if t.requires_grad]
            pairs = [(t, g) for t, g in zip(out, call.grads) if g is not None]
            if pairs:
                torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs])
        module.zero_grad(set_to_none=True)

    return run


def _optimizer_alone(rig: Rig) -> Callable[[], None]:
    """The optimizer step alone, on zero gradients kept aside (its cost does not depend on their values; the
    replays and the step leave the parameters' own ``.grad`` unset or changing)."""
    params = [p for p in rig.module.parameters() if p.requires_grad]
    grads = [torch.zeros_like(p) for p in params]

    def optimizer_step() -> None:
        for p, g in zip(params, grads):
            p.grad = g
        rig.optimizer.step()

    return optimizer_step


def where_time_goes(rig: Rig, repeats: int) -> list[dict[str, Any]]:
    """Per top-level module of M3Diff: forward + backward replayed alone (ms, share of the step, GFLOP/s); the
    optimizer step alone; and the rest (tokenizing, embedding / concatenation glue, loss, token metrics,
    clipping). The whole step is timed in the same interleaved loop, so the shares compare numbers taken under
    the same load."""
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
    fns["optimizer step"] = _optimizer_alone(rig)
    fns["step"] = rig.step
    times = interleave(fns, repeats)
    step_s = median(times.pop("step"))
    rows: list[dict[str, Any]] = [{"part": "whole step", "ms": round(1e3 * step_s, 1), "share": 1.0}]
    for name, ts in times.items():
        t = median(ts)
        row = {"part": name, "ms": round(1e3 * t, 1), "share": round(t / step_s, 3)}
        if flops.get(name):
            row.update(gflop=round(flops[name] / 1e9, 2), gflops=round(flops[name] / t / 1e9, 1))
        rows.append(row)
    rest = step_s - sum(median(ts) for ts in times.values())
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
