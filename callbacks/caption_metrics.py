"""Per-change-category caption metrics at the end of validation and test, in TensorBoard and in files.

The contract with the LightningModule: ``validation_step`` / ``test_step`` return

    {"pair_id": list[str], "prediction": list[str], "references": list[list[str]],
     "categories": list[list[str]], "benchmark": list[str], "subset": list[str | None]}

(``references`` / ``categories`` / ``benchmark`` / ``subset`` default to the batch's ``captions`` /
``categories`` / ``benchmark`` / ``subset`` when left out; ``subset`` is optional, see
:mod:`datamodules.contract`). :class:`CaptionMetricsCallback` collects these records in a
:class:`~lightning_modules.pair_metrics.CaptionRecords` metric, which torchmetrics gathers from every rank; each pair
is then kept exactly once, rank 0 scores them (:mod:`evaluation`: overall and per subset) and writes the files,
the scores are broadcast and every rank logs them (ModelCheckpoint may run on any rank).

Also here: :func:`monitor_key` (what ModelCheckpoint monitors). Token accuracy and perplexity during
training are torchmetrics' own ``MulticlassAccuracy`` / ``Perplexity`` (see ``lightning_modules/captioner.py``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L

from callbacks.confusion import ConfusionMatrix, confusion_matrix
from callbacks.tensorboard import log_bar_charts, tensorboard_writers
from datamodules.base import PairDataModule
from evaluation import (
    METRICS,
    REFERENCE_METRICS,
    CaptionScorer,
    ScoreReport,
    atomic_write_text,
    build_subsets,
    coco_ground_truth,
    coco_predictions,
)
from lightning_modules.pair_metrics import CaptionRecords, unique_pairs

log = logging.getLogger("m3diff.metrics")


# ---------------------------------------------------------------------------------------------- checkpointing
def monitor_key(metric: str | Mapping[str, Any] = "CIDEr", stage: str = "val") -> str:
    """The logged key that picks the best checkpoint: ``val/<metrics.monitor>`` (all metrics: mode ``max``).

    ``metric`` is a metric name (``CIDEr``, ``Bleu_4``, ``METEOR``, ``ROUGE_L``, ``SPICE``, or a logged
    per-subset key such as ``CIDEr/color``), or a config / its ``metrics`` section holding ``monitor``.
    """
    if isinstance(metric, Mapping) or hasattr(metric, "keys"):
        section = metric.get("metrics", metric)  # type: ignore[union-attr]
        metric = str(section.get("monitor", "CIDEr"))
    metric = str(metric)
    if metric.split("/")[0] not in (*METRICS, "SPICE"):
        raise ValueError(
            f"metrics.monitor={metric!r}: choose one of {[*METRICS, 'SPICE']} (optionally /<category>)"
        )
    return f"{stage}/{metric}"


def log_keys(report: ScoreReport, stage: str) -> dict[str, float]:
    """``val/CIDEr``, ``val/CIDEr/<category>``, ``val/CIDEr/<group>``, ``val/CIDEr/<subset>``,
    ``val/<benchmark>/CIDEr``, ..."""
    out = {f"{stage}/{m}": v for m, v in report.overall.items()}
    for kind, named in report.subsets.items():
        for name, scores in named.items():
            for m, v in scores.items():
                out[f"{stage}/{name}/{m}" if kind == "benchmarks" else f"{stage}/{m}/{name}"] = v
    return out


# ---------------------------------------------------------------------------------------------- callback
class CaptionMetricsCallback(L.Callback):
    """Scores validation / test captions overall, per change category, per group and per benchmark.

    Args:
        categories / groups: the change categories and groups (name -> categories) to rescore separately;
            ``None`` reads ``trainer.datamodule.categories`` / ``.groups``.
        spice: compute SPICE if its models are present (``metrics.spice``); else reported unavailable.
        meteor: compute METEOR (one JVM, kept for the whole run and stopped at teardown).
        change_id: log the DataModule's ``change_identification(split, predictions)`` as
            ``<stage>/change_id/<key>`` when it has one (``metrics.change_id``), and draw the category confusion
            matrix from its ``category_confusion(split, predictions)`` when it has that
            (:mod:`callbacks.confusion`): ``confusion.json``, a table in ``metrics.md``, and the image
            ``<stage>/confusion`` in TensorBoard.
        baselines: score the DataModule's ``baseline_predictions(split)`` once and log
            ``<stage>/<name>/CIDEr`` and ``Bleu_4`` at every evaluation.
        output_dir: where evaluation files go; default ``<trainer.log_dir>/eval``.
        subfolders: one ``<stage>-step<N>`` folder per evaluation under ``output_dir`` (``False``: write
            directly into ``output_dir``, e.g. for a one-off ``make eval``).
        bar_charts: log a bar chart per metric by category / group to TensorBoard.
        scorer: a :class:`CaptionScorer` to use (tests share one METEOR JVM); default: the callback's own.
    """

    def __init__(
        self,
        *,
        categories: Sequence[str] | None = None,
        groups: Mapping[str, Sequence[str]] | None = None,
        spice: bool = False,
        meteor: bool = True,
        change_id: bool = True,
        baselines: bool = True,
        output_dir: str | Path | None = None,
        subfolders: bool = True,
        bar_charts: bool = True,
        scorer: CaptionScorer | None = None,
        progress: bool = True,
    ) -> None:
        self.categories = None if categories is None else list(categories)
        self.groups = None if groups is None else {k: list(v) for k, v in groups.items()}
        self.change_id = change_id
        self.baselines = baselines
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.subfolders = subfolders
        self.bar_charts = bar_charts
        self._own_scorer = scorer is None
        self.scorer = scorer or CaptionScorer(meteor=meteor, spice=spice, progress=progress)
        self.records = CaptionRecords()
        self._baseline_scores: dict[str, dict[str, dict[str, float]]] = {}  # split -> name -> overall
        self.last_dir: Path | None = None  # rank 0's latest evaluation folder

    # -------------------------------------------------------------- hooks
    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(pl_module)

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(pl_module)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if not trainer.sanity_checking:
            self._collect(outputs, batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(outputs, batch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:  # the sanity check's few batches are not an evaluation
            self._evaluate(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._evaluate(trainer, pl_module, "test")

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._own_scorer:
            self.scorer.close()

    # -------------------------------------------------------------- steps
    def _start(self, pl_module: L.LightningModule) -> None:
        # The gather runs on the module's device (NCCL needs CUDA tensors; gloo takes CPU ones).
        self.records = self.records.to(pl_module.device)
        self.records.reset()

    def _collect(self, outputs: Any, batch: Mapping[str, Any]) -> None:
        if not isinstance(outputs, Mapping) or "pair_id" not in outputs or "prediction" not in outputs:
            raise TypeError(
                "CaptionMetricsCallback: validation_step/test_step must return a dict with at least 'pair_id' "
                f"and 'prediction' (and 'references', 'categories', 'benchmark'); got {type(outputs).__name__}"
            )
        self.records.update(
            outputs["pair_id"],
            outputs["prediction"],
            outputs.get("references", batch.get("captions")),
            outputs.get("categories", batch.get("categories")),
            outputs.get("benchmark", batch.get("benchmark")),
            outputs.get("subset", batch.get("subset")),
        )

    def _evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        records = self.records.compute()  # collective: every rank takes part in the gather
        self.records.reset()
        payload: dict[str, Any] = {}
        if trainer.is_global_zero:
            try:
                payload = {"scalars": self._score(trainer, stage, unique_pairs(records))}
            except Exception as err:  # the other ranks wait in broadcast: tell them, then fail everywhere
                payload = {"error": f"{type(err).__name__}: {err}"}
                log.exception("scoring failed")
        payload = trainer.strategy.broadcast(payload, src=0)
        if "error" in payload:
            raise RuntimeError(f"caption scoring failed on rank 0: {payload['error']}")
        # Every rank logs the same values; sync_dist with max keeps them bit-identical and silences
        # Lightning's "use sync_dist=True for epoch-level logging" advice.
        for key, value in payload["scalars"].items():
            pl_module.log(key, float(value), sync_dist=True, reduce_fx="max")

    def _score(self, trainer: L.Trainer, stage: str, pairs: dict[str, dict[str, Any]]) -> dict[str, float]:
        if not pairs:
            log.warning("%s: no predictions collected, nothing to score", stage)
            return {}
        dm: PairDataModule = trainer.datamodule
        categories = self.categories if self.categories is not None else list(dm.categories)
        groups = self.groups if self.groups is not None else dict(dm.groups)
        subsets = build_subsets(pairs, categories, groups)
        references = {pid: rec["references"] for pid, rec in pairs.items()}
        predictions = {pid: rec["prediction"] for pid, rec in pairs.items()}
        log.info(
            "%s: scoring %d pairs (%d subsets)", stage, len(pairs), sum(len(v) for v in subsets.values())
        )
        report = self.scorer.score(references, predictions, subsets)
        scalars = log_keys(report, stage)
        scalars[f"{stage}/num_pairs"] = float(len(pairs))

        split = "val" if stage == "val" else "test"
        baselines = self._baselines(dm, split) if self.baselines else {}
        for name, scores in baselines.items():
            for m in REFERENCE_METRICS:
                if m in scores:
                    scalars[f"{stage}/{name}/{m}"] = scores[m]
        change_id, confusion = self._change_identification(dm, split, pairs)
        scalars.update({f"{stage}/change_id/{k}": v for k, v in change_id.items()})

        folder = self._folder(trainer, stage)
        self._write(folder, trainer, stage, pairs, subsets, report, baselines, change_id, confusion)
        if self.bar_charts:
            log_bar_charts(trainer, stage, report)
        if confusion is not None:
            log_confusion(trainer, stage, confusion)
        for line in report.notes:
            log.warning("%s: %s", stage, line)
        log.info("%s scores (files in %s):\n%s", stage, folder, report.to_markdown())
        self.last_dir = folder
        return {k: v for k, v in scalars.items() if math.isfinite(v)}

    def _change_identification(
        self, dm: PairDataModule, split: str, pairs: dict[str, dict[str, Any]]
    ) -> tuple[dict[str, float], ConfusionMatrix | None]:
        """The DataModule's change-identification scores and category confusion matrix (both hooks' neutral
        defaults, ``{}``, mean: nothing to report)."""
        if not self.change_id:
            return {}, None
        # The DataModule knows its pairs by their own ids (not the benchmark-prefixed keys of a mixture).
        own_ids = {rec["pair_id"]: rec["prediction"] for rec in pairs.values()}
        change_id = {str(k): float(v) for k, v in dm.change_identification(split, own_ids).items()}
        readout = dm.category_confusion(split, own_ids)
        confusion = (
            confusion_matrix(readout["classes"], readout["truth"], readout["read"]) if readout else None
        )
        return change_id, confusion

    def _baselines(self, dm: PairDataModule, split: str) -> dict[str, dict[str, float]]:
        """The DataModule's reference baselines (``ceiling``, ``trivial``), scored once per split."""
        if split not in self._baseline_scores:
            scores: dict[str, dict[str, float]] = {}
            for name, (refs, preds) in dm.baseline_predictions(split).items():
                log.info("scoring the %r baseline (%d pairs, once)", name, len(preds))
                scores[name] = self.scorer.score(refs, preds).overall
            self._baseline_scores[split] = scores
        return self._baseline_scores[split]

    def _folder(self, trainer: L.Trainer, stage: str) -> Path:
        root = self.output_dir or Path(trainer.log_dir or trainer.default_root_dir) / "eval"
        return root / f"{stage}-step{trainer.global_step}" if self.subfolders else root

    def _write(
        self,
        folder: Path,
        trainer: L.Trainer,
        stage: str,
        pairs: dict[str, dict[str, Any]],
        subsets: dict[str, dict[str, list[str]]],
        report: ScoreReport,
        baselines: dict[str, dict[str, float]],
        change_id: dict[str, float],
        confusion: ConfusionMatrix | None = None,
    ) -> None:
        """gt.json, pred.json, subsets.json, metrics.json, metrics.md, and confusion.json when there is a
        confusion matrix (each written atomically)."""
        dump = lambda obj: json.dumps(obj, indent=1, ensure_ascii=False) + "\n"  # noqa: E731
        atomic_write_text(
            folder / "gt.json", dump(coco_ground_truth({p: r["references"] for p, r in pairs.items()}))
        )
        atomic_write_text(
            folder / "pred.json", dump(coco_predictions({p: r["prediction"] for p, r in pairs.items()}))
        )
        atomic_write_text(folder / "subsets.json", dump(subsets))
        metrics = {
            **report.to_json(),
            "stage": stage,
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "baselines": baselines,
            "change_id": change_id,
        }
        atomic_write_text(folder / "metrics.json", dump(metrics))
        extra = [(f"baseline/{name}", None, scores) for name, scores in baselines.items()]
        md = [
            f"# {stage} scores, epoch {trainer.current_epoch}, step {trainer.global_step}\n",
            report.to_markdown(extra),
        ]
        if change_id:
            md.append("\n| change identification | score |\n|---|---:|\n")
            md.extend(f"| {k} | {v:.4f} |\n" for k, v in change_id.items())
        if confusion is not None:
            atomic_write_text(folder / "confusion.json", dump(confusion.to_json()))
            md.append(
                "\n## Change category: true (rows) vs read from the caption (columns)\n\n"
                "Counts (row %); each row is one true category, read back with the benchmark's own grammar.\n\n"
            )
            md.append(confusion.to_markdown())
        md.append(
            f"\nRescore with: `make score GT={folder / 'gt.json'} PRED={folder / 'pred.json'} "
            f"CATEGORIES={folder / 'subsets.json'}`\n"
        )
        atomic_write_text(folder / "metrics.md", "".join(md))


def log_confusion(trainer: L.Trainer, stage: str, confusion: ConfusionMatrix) -> None:
    """The confusion matrix as a TensorBoard image, ``<stage>/confusion``, one per evaluation."""
    writers = tensorboard_writers(trainer)
    if not writers:
        return
    fig = confusion.figure(
        f"{stage} step {trainer.global_step}: change category, true vs read from the caption"
    )
    for writer in writers:
        writer.add_figure(f"{stage}/confusion", fig, global_step=trainer.global_step, close=False)
    import matplotlib.pyplot as plt  # after figure(): it picks the Agg backend first

    plt.close(fig)
