"""How a run reads in TensorBoard beyond the raw scalar cards: CUSTOM SCALARS, bar charts, the HPARAMS tab.

* :class:`ScalarLayout`: a validation logs ~150 scalars (7 metrics x every category, group and benchmark,
  change identification, reference points), which TensorBoard's SCALARS tab puts in one ``val`` card group.
  The layout groups them into charts a person reads: overall scores beside the ``ceiling`` / ``trivial``
  reference points, CIDEr by category, losses, change identification, and one chart per metric across the
  benchmarks of a mixture. Chart lines are tag regexes (TensorBoard's multiline charts take regexes), built
  from what the DataModule declares, so a category absent from a small validation set leaves no hole.
* :func:`log_bar_charts`: one figure per metric (IMAGES tab), a bar per category, group and subset.
* :class:`HparamsCallback`: the run's knobs (backbone, MDP switches, LM, data) in the HPARAMS tab, with the
  metric columns named directly after the logged scalars (``val/CIDEr``, ``test/CIDEr``, ...): TensorBoard
  shows each column's latest value, so nothing is copied to extra tags.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import lightning as L

from datamodules.base import PairDataModule
from evaluation import HEADLINE_METRICS, REFERENCE_METRICS, ScoreReport

#: The reference points DataModules score with ``baseline_predictions`` (their REFERENCE_METRICS are logged).
REFERENCE_POINTS = ("ceiling", "trivial")


def tensorboard_writers(trainer: L.Trainer) -> list[Any]:
    """The SummaryWriters of the trainer's TensorBoard loggers (empty without one)."""
    return [lg.experiment for lg in trainer.loggers if hasattr(getattr(lg, "experiment", None), "add_image")]


# ---------------------------------------------------------------------------------------------- layout
def _exact(tag: str) -> str:
    return f"^{re.escape(tag)}$"


def _one_of(prefix: str, names: Iterable[str], suffix: str = "") -> str:
    """``^<prefix>(a|b|c)<suffix>$`` with every part escaped."""
    alternatives = "|".join(re.escape(n) for n in names)
    return f"^{re.escape(prefix)}({alternatives}){re.escape(suffix)}$"


def _overall_charts(stage: str, metrics: Sequence[str], *, reference_points: bool) -> dict[str, list[Any]]:
    """One chart per overall metric; CIDEr and Bleu_4 beside the ``ceiling`` / ``trivial`` reference points."""
    charts: dict[str, list[Any]] = {}
    for m in metrics:
        tags = [_exact(f"{stage}/{m}")]
        if reference_points and m in REFERENCE_METRICS:
            tags.append(_one_of(f"{stage}/", REFERENCE_POINTS, f"/{m}"))
        title = f"{m} (with the ceiling and trivial reference points)" if len(tags) > 1 else m
        charts[title] = ["Multiline", tags]
    return charts


def _category_charts(stage: str, scored: Mapping[str, Sequence[str]]) -> dict[str, list[Any]]:
    """CIDEr / Bleu_4 / METEOR by category, group and subset (``scored``: kind -> names), each with the
    overall line."""
    charts: dict[str, list[Any]] = {}
    for m in ("CIDEr", "Bleu_4", "METEOR"):
        for kind, names in scored.items():
            if names:
                charts[f"{m} by {kind}"] = [
                    "Multiline",
                    [_exact(f"{stage}/{m}"), _one_of(f"{stage}/{m}/", names)],
                ]
    return charts


def scalar_layout(
    *,
    categories: Sequence[str] = (),
    groups: Sequence[str] = (),
    subsets: Sequence[str] = (),
    benchmarks: Sequence[str] = (),
    reference_points: bool = False,
    change_id: bool = False,
    spice: bool = False,
    training: bool = True,
    stage: str = "val",
) -> dict[str, dict[str, list[Any]]]:
    """The CUSTOM SCALARS layout, in ``SummaryWriter.add_custom_scalars``' form:
    ``{category: {chart title: ["Multiline", [tag regex, ...]]}}``.

    Args:
        categories / groups / subsets: the change categories, groups and subsets (OmniDiff's real / render)
            scored separately (``<stage>/CIDEr/<name>``).
        benchmarks: the benchmarks of a mixture (``<stage>/<benchmark>/CIDEr``); fewer than two: no chart.
        reference_points: the DataModule scores ``ceiling`` / ``trivial`` baselines.
        change_id: change identification is logged (``<stage>/change_id/<key>[/<category>]``).
        spice: SPICE is computed.
        training: chart the captioner's training scalars (loss, token accuracy, perplexity, learning rate).
    """
    s = stage
    metrics = [m for m in HEADLINE_METRICS if m != "SPICE" or spice]
    layout = {f"{s}: overall": _overall_charts(s, metrics, reference_points=reference_points)}
    by_category = _category_charts(s, {"category": categories, "group": groups, "subset": subsets})
    if by_category:
        layout[f"{s}: by category"] = by_category
    if training:
        layout["losses"] = {
            "loss (train, val)": ["Multiline", [_exact("train/loss"), _exact(f"{s}/loss")]],
            "token accuracy (train)": ["Multiline", [_exact("train/token_acc")]],
            "perplexity (train)": ["Multiline", [_exact("train/perplexity")]],
            "learning rate per parameter group": ["Multiline", ["^lr-"]],
        }
    if change_id:
        prefix = re.escape(f"{s}/change_id/")
        layout[f"{s}: change identification"] = {
            "change identification": ["Multiline", [f"^{prefix}[^/]+$"]],
            "exact by category": ["Multiline", [f"^{prefix}exact/[^/]+$"]],
        }
    if len(benchmarks) > 1:
        layout[f"{s}: per benchmark"] = {
            f"{m} per benchmark": ["Multiline", [_one_of(f"{s}/", benchmarks, f"/{m}")]] for m in metrics
        }
    return layout


class ScalarLayout(L.Callback):
    """Writes :func:`scalar_layout` once per run (rank 0), from what ``trainer.datamodule`` declares (its hooks,
    :mod:`datamodules.contract`): ``categories``, ``groups``, ``subsets``, ``benchmarks`` (a mixture),
    ``baseline_names`` (reference points) and ``identifies_changes``.

    Args:
        change_id / spice: the metrics callback's switches (``metrics.change_id`` / ``metrics.spice``).
        training: chart the captioner's training scalars (off for a module that does not log them).
    """

    def __init__(self, *, change_id: bool = True, spice: bool = False, training: bool = True) -> None:
        self.change_id = change_id
        self.spice = spice
        self.training = training
        self._written = False

    def layout(self, datamodule: PairDataModule) -> dict[str, dict[str, list[Any]]]:
        """The layout for this DataModule."""
        return scalar_layout(
            categories=list(datamodule.categories),
            groups=list(datamodule.groups),
            subsets=list(datamodule.subsets),
            benchmarks=list(datamodule.benchmarks),
            reference_points=bool(datamodule.baseline_names),
            change_id=self.change_id and datamodule.identifies_changes,
            spice=self.spice,
            training=self.training,
        )

    def _write(self, trainer: L.Trainer) -> None:
        if self._written or not trainer.is_global_zero:
            return
        self._written = True
        layout = self.layout(trainer.datamodule)
        for writer in tensorboard_writers(trainer):
            writer.add_custom_scalars(layout)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer)


# ---------------------------------------------------------------------------------------------- bar charts
def log_bar_charts(trainer: L.Trainer, stage: str, report: ScoreReport) -> None:
    """One TensorBoard figure per metric: a bar per category, group and subset, the overall score as a line."""
    writers = tensorboard_writers(trainer)
    rows = [
        (name, kind, scores)
        for kind in ("categories", "groups", "subsets")
        for name, scores in report.subsets.get(kind, {}).items()
    ]
    if not writers or not rows:
        return
    import matplotlib

    matplotlib.use("Agg", force=False)  # no display on servers; a no-op when a backend is already set
    import matplotlib.pyplot as plt

    for metric in report.metrics:
        fig, ax = plt.subplots(figsize=(max(4.0, 0.55 * len(rows) + 1.5), 3.2), dpi=100)
        names = [name for name, _, _ in rows]
        values = [100 * scores.get(metric, float("nan")) for _, _, scores in rows]
        palette = {"categories": "tab:blue", "groups": "tab:orange", "subsets": "tab:green"}
        colors = [palette[kind] for _, kind, _ in rows]
        bars = ax.bar(range(len(rows)), values, color=colors)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.margins(y=0.15)  # room for the labels
        ax.axhline(100 * report.overall.get(metric, float("nan")), color="black", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(rows)), names, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel(f"{metric} x100")
        ax.set_title(
            f"{stage} {metric} by category\n(orange: groups, green: subsets, dashed: overall)", fontsize=9
        )
        fig.tight_layout()
        for writer in writers:
            writer.add_figure(
                f"{stage}/by_category/{metric}", fig, global_step=trainer.global_step, close=False
            )
        plt.close(fig)


# ---------------------------------------------------------------------------------------------- hparams
def flatten_hparams(params: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> ``{"a.b": value}`` with values TensorBoard accepts (bool/int/float/str)."""
    out: dict[str, Any] = {}
    items = params.items() if hasattr(params, "items") else []
    for key, value in items:
        name = f"{prefix}{key}"
        if hasattr(value, "items"):
            out.update(flatten_hparams(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:  # lists, None, paths: shown as text
            out[name] = str(
                list(value) if isinstance(value, Sequence) and not isinstance(value, str) else value
            )
    return out


class HparamsCallback(L.Callback):
    """TensorBoard's HPARAMS tab: the run's knobs next to its latest scores.

    Args:
        hparams: the (nested or flat) values to show, e.g. backbone name and MDP switches; ``None`` uses
            ``pl_module.hparams`` flattened.
        metrics: metric names whose ``val/<name>`` and ``test/<name>`` scalars are the tab's columns.

    Use with ``TensorBoardLogger(default_hp_metric=False)`` so this is the only hparams entry of the run.
    """

    def __init__(
        self,
        hparams: Mapping[str, Any] | None = None,
        metrics: Sequence[str] = HEADLINE_METRICS,
    ) -> None:
        self.hparams = hparams
        self.metrics = list(metrics)
        self._written = False

    def columns(self) -> list[str]:
        """The logged scalar tags shown as metric columns."""
        return [f"{stage}/{m}" for stage in ("val", "test") for m in self.metrics]

    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._written or not trainer.is_global_zero:
            return
        self._written = True
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        params = flatten_hparams(self.hparams if self.hparams is not None else dict(pl_module.hparams))
        # The experiment summary only names the metric columns (their values are the scalars the run logs);
        # Lightning's log_hyperparams(params, metrics) would also log each metric once at a made-up step.
        summaries = hparams_summaries(params, dict.fromkeys(self.columns(), 0.0))
        for logger in trainer.loggers:
            writer = getattr(logger, "experiment", None)
            if getattr(writer, "file_writer", None) is None:  # not a TensorBoard SummaryWriter
                continue
            logger.log_hyperparams(params)  # hparams.yaml beside the event file
            for summary in summaries:
                writer.file_writer.add_summary(summary)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, pl_module)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, pl_module)
