"""The targets each figure is held to, and the printed table (one line per figure, its target, met or not)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

TARGETS = {
    "train_fraction_of_peak": (">=", 0.60),
    "mdp_overhead_base": ("<=", 0.15),
    "generate_kv_speedup": (">=", 3.0),
    "score_seconds": ("<=", 60.0),
    "data_to_consumption": (">=", 5.0),
}
# Where each target's figure is in the results: (section, key).
TARGET_FIGURES = {
    "train_fraction_of_peak": ("train", "fraction_of_peak"),
    "mdp_overhead_base": ("mdp_base", "overhead"),
    "generate_kv_speedup": ("generate", "speedup"),
    "score_seconds": ("score", "scorer_s"),
    "data_to_consumption": ("data", "ratio"),
}

Row = tuple[str, str, str]


def check_targets(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for key, (op, target) in TARGETS.items():
        section, figure = TARGET_FIGURES[key]
        value = results.get(section, {}).get(figure)
        met = None if value is None else (value >= target if op == ">=" else value <= target)
        out[key] = {"value": value, "target": f"{op} {target:g}", "met": met}
    return out


def _cond(sec: dict[str, Any]) -> str:
    """``load 0.3->1.7, rq wait 2%``: how loaded the machine was while the section ran."""
    load, wait = sec.get("loadavg_1m"), sec.get("runqueue_wait")
    if not load:
        return ""
    return f"load {load[0]:.1f}->{load[1]:.1f}" + (f", rq wait {wait:.0%}" if wait is not None else "")


def _peak(p: dict[str, Any], ok: Callable[[str], str]) -> list[Row]:
    return [("peak", f"fp32 matmul {p['n']}^3, {p['threads']} threads: {p['gflops']:.1f} GFLOP/s", _cond(p))]


def _train(t: dict[str, Any], ok: Callable[[str], str]) -> list[Row]:
    d = t["mdp_tiny"]
    return [
        (
            "train",
            f"default model (MDP {t['default_mdp']}), batch {t['batch_size']}: {t['pairs_per_s']:.2f} pairs/s, "
            f"{t['step_s']:.2f} s/step, {t['gflop_per_pair']:.2f} GFLOP/pair",
            _cond(t),
        ),
        (
            "",
            f"{t['gflops']:.1f} GFLOP/s = {t['fraction_of_peak']:.0%} of {t['peak_gflops']:.1f} "
            f"(paired per repeat: {t['fraction_of_peak_paired']:.0%})",
            ok("train_fraction_of_peak"),
        ),
        (
            "mdp tiny",
            f"step on {d['step_on_s']:.2f} s / off {d['step_off_s']:.2f} s: overhead {d['overhead']:.0%} "
            f"(paired {d['overhead_paired']:.0%}; {d['flop_share']:.0%} of FLOPs)",
            "reported",
        ),
    ]


def _mdp_base(b: dict[str, Any], ok: Callable[[str], str]) -> list[Row]:
    return [
        (
            "mdp base",
            f"{b['model']}, batch {b['batch_size']}: on {b['step_on_s']:.1f} s / off "
            f"{b['step_off_s']:.1f} s: overhead {b['overhead']:.0%} (paired {b['overhead_paired']:.0%}; "
            f"alone {b['mdp_alone_share']:.0%}; {b['flop_share']:.0%} of FLOPs)",
            ok("mdp_overhead_base"),
        )
    ]


def _generate(g: dict[str, Any], ok: Callable[[str], str]) -> list[Row]:
    return [
        (
            "generate",
            f"{g['new_tokens']} new tokens, batch {g['batch']}: cached {g['cached_captions_per_s']:.2f} / uncached "
            f"{g['uncached_captions_per_s']:.2f} captions/s = {g['speedup']:.1f}x, identical: {g['identical']}",
            ok("generate_kv_speedup"),
        )
    ]


def _score(s: dict[str, Any], ok: Callable[[str], str]) -> list[Row]:
    if "skipped" in s:
        return [("score", s["skipped"], "")]
    how = (
        f"extrapolated from {len(s['naive_measured'])} evaluations" if s["naive_extrapolated"] else "measured"
    )
    return [
        (
            "score",
            f"{s['pairs']} pairs + {s['subsets']} subsets: CaptionScorer {s['scorer_s']:.1f} s vs COCOEvalCap "
            f"per subset {s['naive_s']:.0f} s ({how}) = {s['speedup']:.1f}x; max |diff| {s['max_abs_diff_vs_naive']}",
            ok("score_seconds"),
        )
    ]


def _threads(t: dict[str, Any], ok: Callable[[str], str]) -> list[Row]:
    if "skipped" in t:
        return []
    rates = ", ".join(f"{n} thread(s) {v:.2f} pairs/s" for n, v in t["pairs_per_s"].items())
    return [("threads", f"default step: {rates} = {t['speedup_configured_vs_1']:.2f}x", _cond(t))]


def _compile(c: dict[str, Any], ok: Callable[[str], str]) -> list[Row]:
    return [
        (
            "compile",
            f"torch.compile: {c['compile_s']:.0f} s to compile, step {c['compiled_step_s']:.2f} s vs eager "
            f"{c['eager_step_s']:.2f} s = {c['speedup']:.2f}x; pays off after {c['breakeven_s']} s",
            "pays off in 10 min" if c["pays_off_within_10_min"] else "does not pay off in 10 min",
        )
    ]


def _data(d: dict[str, Any], ok: Callable[[str], str]) -> list[Row]:
    if "skipped" in d:
        return [("data", d["skipped"], "")]
    if d.get("ratio") is None:
        return []
    return [
        (
            "data",
            f"{d['per_worker_pairs_per_s']:.0f} pairs/s per worker x {max(1, d['workers'])} vs "
            f"{d['consumption_pairs_per_s']:.1f} consumed = {d['ratio']:.0f}x",
            ok("data_to_consumption"),
        )
    ]


# Table order.
ROWS: dict[str, Callable[[dict[str, Any], Callable[[str], str]], list[Row]]] = {
    "peak": _peak,
    "train": _train,
    "mdp_base": _mdp_base,
    "generate": _generate,
    "score": _score,
    "threads": _threads,
    "compile": _compile,
    "data": _data,
}


def _header(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
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
    return [*lines, "-" * min(len(head), 160)]


def render_table(results: dict[str, Any]) -> str:
    """The printed summary: one line per figure, the target and whether it is met."""
    targets = results.get("targets", {})

    def ok(key: str) -> str:
        t = targets.get(key)
        if not t or t["met"] is None:
            return ""
        return f"{t['target']}: {'met' if t['met'] else 'NOT met'}"

    rows = [row for name, fn in ROWS.items() if name in results for row in fn(results[name], ok)]
    width = max((len(r[1]) for r in rows), default=40)
    return "\n".join([*_header(results), *(f"{a:<9} {b:<{width}}  {c}" for a, b, c in rows)])
