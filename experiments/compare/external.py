"""Rows of a comparison that were not trained here: zero-shot models (``MODELS=``) and other methods' released
predictions (``PREDS="name=<pred.json> ..."``), scored on the same data, split and protocol as the trained runs.

* A zero-shot row is ``make eval MODEL=<model> SPLIT=<split>`` in its own process (a model that fails is a failed
  row), its files in ``<comparison>/zero_shot/<model>/``.
* An imported row is ``make score`` on files written here, in ``<comparison>/imported/<name>/``: the split's ground
  truth as an evaluation of it writes it (``gt.json``, ``subsets.json``: the same pair ids, references, categories
  and subsets), the predictions whose ids are the benchmark's (``pred.json``), scored by
  :func:`experiments.score.score_files`. Ids that match no pair of the split, and pairs with no prediction, are
  listed (``unmatched.json``, the table), never dropped silently: such a row is marked ``partial``.

:func:`eval_metrics` reads any evaluation's ``metrics.json`` back as the keys a training run logs
(``val/CIDEr``, ``val/CIDEr/<category>``, ``val/ceiling/CIDEr``, ``val/change_id/exact``, ...), so every row of
the table is read the same way.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

import mdp
from callbacks.caption_metrics import log_keys
from callbacks.confusion import confusion_matrix
from evaluation import (
    METRICS,
    REFERENCE_METRICS,
    SUBSET_KINDS,
    CaptionScorer,
    ScoreReport,
    atomic_write_text,
    build_subsets,
    coco_ground_truth,
    coco_predictions,
)
from evaluation.coco_files import load_predictions
from experiments.common import assembly
from experiments.common.cli import UsageError
from experiments.common.zero_shot import check_model
from experiments.compare.runs import Run
from lightning_modules.pair_metrics import unique_pairs

ZERO_SHOT, IMPORTED = "zero-shot", "imported"
SHOWN = 10  # unmatched ids named in the table (all of them are in unmatched.json)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "model"


def plan_models(models: str) -> list[Run]:
    """``MODELS="<folder or hub id> ..."`` -> a zero-shot row each, checked now (folder, kind, processor), not
    after hours of training."""
    rows = []
    for model in shlex.split(models):
        check_model(model)
        name = Path(model).name if Path(model).expanduser().is_dir() else model
        rows.append(Run("", model, ZERO_SHOT, name, f"zero_shot/{slug(name)}", kind=ZERO_SHOT, source=model))
    return _unique(rows)


def plan_preds(preds: str) -> list[Run]:
    """``PREDS="name=<pred.json> ..."`` -> an imported row each; every file is read (strictly) now."""
    rows = []
    for item in shlex.split(preds):
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UsageError(
                f'PREDS: {item!r} is not name=<pred.json> (e.g. PREDS="card=results/card_test.json")'
            )
        load_predictions(path)  # COCO results [{"image_id", "caption"}]: a bad file is one line, now
        rows.append(Run("", path, IMPORTED, name, f"imported/{slug(name)}", kind=IMPORTED, source=path))
    return _unique(rows)


def _unique(rows: list[Run]) -> list[Run]:
    names = [row.run_name for row in rows]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UsageError(f"two rows would share the name {dupes}: give each its own")
    return rows


# ---------------------------------------------------------------------------------------------- zero-shot rows
def zero_shot_command(row: Run, *, data: str, root: str, args: str, split: str, out_dir: Path) -> list[str]:
    """The ``python -m experiments.evaluate`` line of a zero-shot row (what ``make eval MODEL=`` runs)."""
    row.run_dir = str(out_dir / row.run_name)
    command = ["-m", "experiments.evaluate", "--model", row.source, "--split", split, "--out", row.run_dir]
    return [*command, "--data", data, "--root", root, "--args", args]


def read_evaluation(row: Run, folder: Path, stage: str) -> None:
    """An evaluation folder's metrics, subsets and change-category confusion matrix (where written) into the row."""
    row.metrics = eval_metrics(folder / "metrics.json", stage)
    subsets = json.loads((folder / "subsets.json").read_text()) if (folder / "subsets.json").is_file() else {}
    row.subsets = list(subsets.get("subsets", {}))
    if (folder / "confusion.json").is_file():
        row.confusion = json.loads((folder / "confusion.json").read_text())


def eval_metrics(path: Path, stage: str) -> dict[str, float]:
    """An evaluation's ``metrics.json`` (``CaptionMetricsCallback`` or :func:`score_imported`) -> the keys a
    training run logs for ``stage``."""
    data = json.loads(Path(path).read_text())
    overall = {m: float(data[m]) for m in (*METRICS, "SPICE") if isinstance(data.get(m), (int, float))}
    subsets = {
        kind: {
            name: {m: v for m, v in scores.items() if m != "num_pairs"} for name, scores in data[kind].items()
        }
        for kind in SUBSET_KINDS
        if isinstance(data.get(kind), dict)
    }
    metrics = log_keys(ScoreReport(overall=overall, subsets=subsets), stage)
    metrics[f"{stage}/num_pairs"] = float(data.get("num_pairs", 0))
    for name, scores in (data.get("baselines") or {}).items():
        metrics.update({f"{stage}/{name}/{m}": float(scores[m]) for m in REFERENCE_METRICS if m in scores})
    metrics.update({f"{stage}/change_id/{k}": float(v) for k, v in (data.get("change_id") or {}).items()})
    return metrics


# ---------------------------------------------------------------------------------------------- imported rows
class SplitTruth:
    """The split's pairs as an evaluation of it sees them (ids, references, categories, subsets), read once for
    every imported row, with the DataModule's reference baselines (scored once)."""

    def __init__(self, cfg: DictConfig, split: str) -> None:
        spec = mdp.ImageSpec(
            size=int(cfg.backbone.image_size), mean=(0.5,) * 3, std=(0.5,) * 3, pipeline="processor"
        )
        self.datamodule = assembly.make_datamodule(cfg, spec)
        self.split = split
        self.pairs = split_pairs(self.datamodule, split)
        dm = self.datamodule
        self.subsets = build_subsets(self.pairs, list(dm.categories), dict(dm.groups))
        self._baselines: dict[str, dict[str, float]] | None = None

    def baselines(self, scorer: CaptionScorer) -> dict[str, dict[str, float]]:
        if self._baselines is None:
            pairs = self.datamodule.baseline_predictions(self.split).items()
            self._baselines = {name: scorer.score(refs, preds).overall for name, (refs, preds) in pairs}
        return self._baselines


def split_pairs(datamodule: Any, split: str) -> dict[str, dict[str, Any]]:
    """Every pair of the split's evaluation loaders, keyed as the metrics callback keys them (:func:`unique_pairs`)."""
    datamodule.setup("validate" if split == "val" else "test")
    loaders = datamodule.val_dataloader() if split == "val" else datamodule.test_dataloader()
    records = []
    for loader in loaders if isinstance(loaders, list) else [loaders]:
        for batch in loader:
            subsets = batch.get("subset") or [None] * len(batch["pair_id"])
            for i, pair_id in enumerate(batch["pair_id"]):
                records.append(
                    {
                        "pair_id": pair_id,
                        "references": batch["captions"][i],
                        "categories": batch["categories"][i],
                        "benchmark": batch["benchmark"][i],
                        "subset": subsets[i],
                    }
                )
    return unique_pairs(records)


def score_imported(row: Run, truth: SplitTruth, out_dir: Path, *, spice: bool = False) -> None:
    """Score ``row``'s predictions on the split as ``make score`` does, from files written to its folder."""
    from experiments.score import score_files

    folder = out_dir / row.run_name
    row.run_dir = str(folder)
    predictions = load_predictions(row.source)
    matched = {key: predictions[key] for key in truth.pairs if key in predictions}
    unmatched = {
        "not_in_split": [key for key in predictions if key not in truth.pairs],
        "not_predicted": [key for key in truth.pairs if key not in predictions],
    }
    row.unmatched = unmatched
    dump = lambda obj: json.dumps(obj, indent=1, ensure_ascii=False) + "\n"  # noqa: E731
    atomic_write_text(folder / "unmatched.json", dump(unmatched))
    if not matched:
        row.status = "failed"
        row.error = (
            f"none of its {len(predictions)} ids is a pair of {truth.split} (e.g. {list(predictions)[:3]})"
        )
        return
    atomic_write_text(
        folder / "gt.json", dump(coco_ground_truth({k: r["references"] for k, r in truth.pairs.items()}))
    )
    atomic_write_text(folder / "pred.json", dump(coco_predictions(matched)))
    atomic_write_text(folder / "subsets.json", dump(truth.subsets))
    report = score_files(
        folder / "gt.json", folder / "pred.json", folder / "subsets.json", spice=spice, progress=False
    )
    with CaptionScorer(spice=False, progress=False) as scorer:
        baselines = truth.baselines(scorer)
    own_ids = {truth.pairs[key]["pair_id"]: caption for key, caption in matched.items()}
    dm = truth.datamodule
    change_id = (
        {str(k): float(v) for k, v in dm.change_identification(truth.split, own_ids).items()}
        if dm.identifies_changes
        else {}
    )
    metrics = {**report.to_json(), "stage": truth.split, "baselines": baselines, "change_id": change_id}
    atomic_write_text(folder / "metrics.json", dump({**metrics, "source": row.source}))
    readout = dm.category_confusion(truth.split, own_ids)
    if readout:
        confusion = confusion_matrix(readout["classes"], readout["truth"], readout["read"])
        atomic_write_text(folder / "confusion.json", dump(confusion.to_json()))
    markdown = imported_markdown(row, report, baselines, change_id, folder, total=len(truth.pairs))
    atomic_write_text(folder / "metrics.md", markdown)
    read_evaluation(row, folder, truth.split)
    row.status = "partial" if unmatched["not_in_split"] or unmatched["not_predicted"] else "ok"
    if row.status == "partial":
        row.error = unmatched_line(unmatched, len(truth.pairs))


def unmatched_line(unmatched: Mapping[str, list[str]], total: int) -> str:
    """``3 ids not in the split: 'a', 'b', 'c'; 2 of 100 pairs not predicted: 'x', 'y'`` (the first few)."""
    parts = []
    for key, what in (
        ("not_in_split", "ids not in the split"),
        ("not_predicted", f"of {total} pairs not predicted"),
    ):
        ids = unmatched[key]
        if ids:
            named = ", ".join(repr(i) for i in ids[:SHOWN]) + (" ..." if len(ids) > SHOWN else "")
            parts.append(f"{len(ids)} {what}: {named}")
    return "; ".join(parts)


def imported_markdown(
    row: Run,
    report: ScoreReport,
    baselines: Mapping[str, Mapping[str, float]],
    change_id: Mapping[str, float],
    folder: Path,
    *,
    total: int,
) -> str:
    """The imported row's ``metrics.md``: the scores table (baselines beside), change identification, what did
    not match, and the ``make score`` line that reproduces it."""
    extra = [(f"baseline/{name}", None, scores) for name, scores in baselines.items()]
    lines = [f"# {row.backbone}: imported predictions `{row.source}`\n", report.to_markdown(extra)]
    if change_id:
        lines.append("\n| change identification | score |\n|---|---:|\n")
        lines.extend(f"| {k} | {v:.4f} |\n" for k, v in change_id.items())
    if row.unmatched.get("not_in_split") or row.unmatched.get("not_predicted"):
        lines.append(
            f"\nUnmatched ids (all of them in unmatched.json): {unmatched_line(row.unmatched, total)}\n"
        )
    lines.append(
        f"\nRescore with: `make score GT={folder / 'gt.json'} PRED={folder / 'pred.json'} "
        f"CATEGORIES={folder / 'subsets.json'}`\n"
    )
    return "".join(lines)
