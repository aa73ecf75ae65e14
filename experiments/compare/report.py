"""The comparison's table: ``compare.md`` (scores x100: a row per run, zero-shot model and imported prediction file,
CIDEr by category, subset and benchmark, each row's change-category confusion matrix where it has one) and
``compare.json`` (every row with its metrics on the compared split), rewritten after every row. ``stage`` is that
split (``val``, or ``test``), the prefix of every metric key read."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from omegaconf import DictConfig

from callbacks.confusion import ConfusionMatrix
from evaluation import HEADLINE_METRICS
from experiments.compare.runs import Run, budget

# Change identification (the embedded benchmark), as logged under <stage>/change_id/<key>: column title per key.
CHANGE_ID = {
    "category": "right category",
    "location": "location",
    "cell": "right cell",
    "exact": "change-id exact",
}
BASELINES = {"ceiling": "one reference vs the others", "trivial": "most common training caption"}


def fmt(value: float | None, scale: float = 100.0) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{scale * value:.2f}"


def category_columns(runs: Sequence[Run], cfg: DictConfig, stage: str = "val") -> list[str]:
    """Per-category CIDEr columns: the config's categories and groups first, then any others logged (not the
    subsets: they have their own table)."""
    names = [str(c) for c in cfg.data.categories] + [str(g) for g in cfg.data.groups]
    subsets = subset_columns(runs)
    for run in runs:
        for key in run.metrics:
            parts = key.split("/")
            if len(parts) == 3 and parts[0] == stage and parts[1] == "CIDEr" and parts[2] not in names:
                names.append(parts[2])
    return [n for n in names if n not in subsets and any(f"{stage}/CIDEr/{n}" in r.metrics for r in runs)]


def subset_columns(runs: Sequence[Run]) -> list[str]:
    """Per-subset CIDEr (``val/CIDEr/<subset>``; the subsets each run's evaluation files name)."""
    return list(dict.fromkeys(name for run in runs for name in run.subsets))


def benchmark_columns(runs: Sequence[Run], stage: str = "val") -> list[str]:
    """Per-benchmark CIDEr (a mixture): ``<stage>/<benchmark>/CIDEr`` other than the baselines."""
    names: list[str] = []
    for run in runs:
        for key in run.metrics:
            parts = key.split("/")
            if (
                len(parts) == 3
                and parts[0] == stage
                and parts[2] == "CIDEr"
                and parts[1] not in (*BASELINES, "CIDEr")
            ):
                names.append(parts[1])
    return list(dict.fromkeys(names))


def render_markdown(name: str, runs: Sequence[Run], cfg: DictConfig, command: str, stage: str = "val") -> str:
    """compare.md: the budget, a row per run (overall scores beside the reference baselines), then CIDEr by
    change category, by subset and by benchmark where there are any, failed runs and the run folders."""
    lines = [
        f"# Comparison: {name}\n",
        f"Command: `{command}`\n",
        scope_line(runs, cfg, stage),
        *overall_table(runs, stage),
    ]
    for title, names, key in (
        ("change category", category_columns(runs, cfg, stage), f"{stage}/CIDEr/{{}}"),
        ("subset", subset_columns(runs), f"{stage}/CIDEr/{{}}"),
        ("benchmark", benchmark_columns(runs, stage), f"{stage}/{{}}/CIDEr"),
    ):
        if names:
            lines += ["", f"## CIDEr by {title} (x100)", ""]
            lines += [
                "| experiment | backbone | " + " | ".join(names) + " |",
                "|---|---|" + "---:|" * len(names),
            ]
            for r in runs:
                cells = [fmt(r.metrics.get(key.format(n))) for n in names]
                lines.append(f"| {r.experiment} | {r.backbone} | " + " | ".join(cells) + " |")
    lines += confusion_tables(runs)
    problems = [r for r in runs if r.status in ("failed", "interrupted")]
    if problems:
        lines += ["", "## Failed runs", ""]
        lines += [
            f"- {r.experiment} / {r.backbone}: {r.error}" + (f" (log: `{r.log}`)" if r.log else "")
            for r in problems
        ]
    partial = [r for r in runs if r.status == "partial"]
    if partial:
        lines += ["", "## Imported predictions that do not match the split", ""]
        lines += [f"- {r.backbone}: {r.error} (every id: `{r.run_dir}/unmatched.json`)" for r in partial]
    lines += ["", "## Runs", ""]
    for r in runs:
        source = f" (from `{r.source}`)" if r.kind != "trained" else ""
        lines.append(f"- {r.experiment} / {r.backbone}: `{r.run_dir or '(no run folder)'}`{source}")
    lines += ["", f"TensorBoard, side by side: `make tb` (or `tensorboard --logdir {cfg.logs_dir}`)."]
    return "\n".join(lines) + "\n"


def confusion_tables(runs: Sequence[Run]) -> list[str]:
    """Per run with a confusion matrix: the change category read from its captions against the true one."""
    lines: list[str] = []
    for r in runs:
        if r.confusion:
            matrix = ConfusionMatrix.from_json(r.confusion)
            lines += [
                "",
                f"## Change category, true (rows) vs read from the caption: {r.experiment} / {r.backbone}",
            ]
            lines += [
                "",
                f"Evaluation at step {r.steps}; counts (row %)."
                if r.steps is not None
                else "Counts (row %).",
                "",
                matrix.to_markdown().rstrip(),
            ]
    return lines


def scope_line(runs: Sequence[Run], cfg: DictConfig, stage: str) -> str:
    """What every row was scored on; the training budget when runs were trained here; what the other rows are."""
    b = budget(cfg)
    text = f"Data `{b['data']}` ({'validation' if stage == 'val' else stage} split)"
    if any(r.kind == "trained" for r in runs):
        text += (
            f", seed {b['seed']}, budget: max_steps={b['max_steps']}, max_epochs={b['max_epochs']}, "
            f"max_time={b['max_time']}, batch {b['batch_size']} x accumulate {b['accumulate_grad_batches']}"
        )
        text += "; trained runs scored by their best checkpoint" if stage != "val" else ""
    text += ". Scores x100 (COCO caption toolkit).\n"
    kinds = {r.kind for r in runs} - {"trained"}
    if kinds:
        text += (
            "\nRows not trained here: `zero-shot / <model>` is `make eval MODEL=<model>` (the model as released), "
            "`imported / <name>` is `make score` on another method's predictions (ids matched to the split).\n"
        )
    return text


def overall_table(runs: Sequence[Run], stage: str = "val") -> list[str]:
    """A row per run: status, steps, minutes, the overall scores (and change identification when logged),
    then the reference baselines' rows from the first run that scored them."""
    overall = [m for m in HEADLINE_METRICS if any(f"{stage}/{m}" in r.metrics for r in runs)] or ["CIDEr"]
    change_id = [k for k in CHANGE_ID if any(f"{stage}/change_id/{k}" in r.metrics for r in runs)]
    head = [
        "experiment",
        "backbone",
        "status",
        "steps",
        "minutes",
        *overall,
        *(CHANGE_ID[k] for k in change_id),
    ]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---|" + "---:|" * (len(head) - 3)]
    for r in runs:
        cells = [
            r.experiment,
            r.backbone,
            r.status,
            "–" if r.steps is None else str(r.steps),
            "–" if r.seconds is None else f"{r.seconds / 60:.1f}",
            *(fmt(r.metrics.get(f"{stage}/{m}")) for m in overall),
            *(fmt(r.metrics.get(f"{stage}/change_id/{k}")) for k in change_id),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    reference = next((r for r in runs if any(f"{stage}/{b}/CIDEr" in r.metrics for b in BASELINES)), None)
    for base, what in BASELINES.items() if reference is not None else ():
        if f"{stage}/{base}/CIDEr" in reference.metrics:
            cells = [f"*{base}*", f"*{what}*", "reference", "", ""]
            cells += [fmt(reference.metrics.get(f"{stage}/{base}/{m}")) for m in overall]
            lines.append("| " + " | ".join(cells + [""] * len(change_id)) + " |")
    return lines


def write_report(
    out_dir: Path, name: str, runs: Sequence[Run], cfg: DictConfig, command: str, *, stage: str = "val"
) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    text = render_markdown(name, runs, cfg, command, stage)
    payload = {
        "name": name,
        "command": command,
        "split": stage,
        "budget": budget(cfg),
        "runs": [asdict(r) for r in runs],
    }
    for path, content in (
        (out_dir / "compare.md", text),
        (out_dir / "compare.json", json.dumps(payload, indent=1)),
    ):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(content)
        os.replace(tmp, path)
    return text
