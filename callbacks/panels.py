"""What people look at in TensorBoard besides the scalars: image panels of fixed validation pairs and the
hparams tab.

* :class:`PanelsCallback`: each validation epoch, the first ``metrics.num_panels`` validation pairs (always
  the same ones) as ``before | after | after + MDP difference heatmap``, with the generated caption and the
  references as text. Contract with the LightningModule: ``pl_module.explain(batch) -> {"captions":
  list[str], "heatmaps": Tensor (B, h, w) in [0, 1] or None}`` for a collated contract batch on the module's
  device; images are denormalised with ``trainer.datamodule.transform.denormalize``.
* :class:`HparamsCallback`: writes the run's knobs (backbone, MDP switches, ...) to TensorBoard's hparams tab
  with ``hp/<metric>`` (latest validation) and ``hp/test_<metric>`` columns, so backbones compare side by side.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from datamodules.contract import collate_pairs

log = logging.getLogger("m3diff.panels")

GAP = 4  # white pixels between the panels of a pair


def tensorboard_writers(trainer: L.Trainer) -> list[Any]:
    """The SummaryWriters of the trainer's TensorBoard loggers (empty without one)."""
    return [lg.experiment for lg in trainer.loggers if hasattr(getattr(lg, "experiment", None), "add_image")]


# ---------------------------------------------------------------------------------------------- panels
def heat_colors(heat: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` in [0, 1] -> ``(3, H, W)`` RGB through matplotlib's ``inferno`` colormap."""
    from matplotlib import colormaps

    rgba = colormaps["inferno"](heat.clamp(0, 1).cpu().numpy())
    return torch.from_numpy(rgba[..., :3]).permute(2, 0, 1).float()


def compose_panel(
    before: torch.Tensor, after: torch.Tensor, heatmap: torch.Tensor | None, alpha: float = 0.75
) -> torch.Tensor:
    """``before | after | after with the heatmap overlaid`` as one ``(3, H, W')`` image in [0, 1].

    ``before`` / ``after``: denormalised ``(3, H, W)``; ``heatmap``: ``(h, w)`` in [0, 1] (any size, upsampled
    bilinearly) or ``None`` (then only the two images).
    """
    before, after = before.detach().float().cpu().clamp(0, 1), after.detach().float().cpu().clamp(0, 1)
    _, height, _ = after.shape
    gap = torch.ones(3, height, GAP)
    parts = [before, gap, after]
    if heatmap is not None:
        heat = heatmap.detach().float().cpu()[None, None]
        heat = F.interpolate(heat, size=after.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        weight = alpha * heat.clamp(0, 1)  # blend by heat: where nothing changed the image stays as it is
        parts += [gap, (1 - weight) * after + weight * heat_colors(heat)]
    return torch.cat(parts, dim=2)


def panel_text(pair_id: str, caption: str, references: Sequence[str], categories: Sequence[str]) -> str:
    """Markdown shown next to a panel in TensorBoard's text tab."""
    refs = "\n".join(f"- {r}" for r in references)
    cats = ", ".join(categories) or "–"
    return f"**{pair_id}** (categories: {cats})\n\n**generated:** {caption}\n\n**references:**\n\n{refs}"


class PanelsCallback(L.Callback):
    """Logs ``num_panels`` fixed validation pairs each validation epoch (rank 0 only).

    Tags: ``val_panels/<i>`` (image and text). Needs ``pl_module.explain``; without it, or without a
    TensorBoard logger, it does nothing (and says so once).
    """

    def __init__(self, num_panels: int = 4, every_n_epochs: int = 1) -> None:
        self.num_panels = num_panels
        self.every_n_epochs = max(1, every_n_epochs)
        self._batch: dict[str, Any] | None = None
        self._warned = False

    def _fixed_batch(self, trainer: L.Trainer) -> dict[str, Any] | None:
        """The first ``num_panels`` validation samples, collated once and kept (always the same pairs)."""
        if self._batch is None:
            dm = trainer.datamodule
            dataset = (
                dm.dataset("val")
                if hasattr(dm, "dataset")
                else getattr(trainer.val_dataloaders, "dataset", None)
            )
            if dataset is None or len(dataset) == 0:
                return None
            self._batch = collate_pairs([dataset[i] for i in range(min(self.num_panels, len(dataset)))])
        return self._batch

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or self.num_panels <= 0:
            return
        if trainer.current_epoch % self.every_n_epochs:
            return
        writers = tensorboard_writers(trainer)
        if not writers or not callable(getattr(pl_module, "explain", None)):
            if not self._warned:
                self._warned = True
                log.warning("panels skipped: needs a TensorBoard logger and pl_module.explain(batch)")
            return
        batch = self._fixed_batch(trainer)
        if batch is None:
            return
        on_device = {
            k: v.to(pl_module.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
        }
        with torch.no_grad():
            out = pl_module.explain(on_device)
        transform = getattr(trainer.datamodule, "transform", None)
        denorm = transform.denormalize if transform is not None else (lambda t: t.clamp(0, 1))
        heatmaps = out.get("heatmaps")
        for i, pair_id in enumerate(batch["pair_id"]):
            image = compose_panel(
                denorm(batch["before"][i]),
                denorm(batch["after"][i]),
                None if heatmaps is None else heatmaps[i],
            )
            text = panel_text(pair_id, out["captions"][i], batch["captions"][i], batch["categories"][i])
            for writer in writers:
                writer.add_image(f"val_panels/{i}", image, global_step=trainer.global_step)
                writer.add_text(f"val_panels/{i}", text, global_step=trainer.global_step)


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
    """TensorBoard hparams tab: the run's knobs next to its latest scores.

    Args:
        hparams: the (nested or flat) values to show, e.g. backbone name and MDP switches; ``None`` uses
            ``pl_module.hparams`` flattened.
        metrics: metric names copied to ``hp/<name>`` after each validation (from ``val/<name>``) and to
            ``hp/test_<name>`` after a test.

    Use with ``TensorBoardLogger(default_hp_metric=False)`` so this is the only hparams entry of the run.
    """

    def __init__(
        self,
        hparams: Mapping[str, Any] | None = None,
        metrics: Sequence[str] = ("CIDEr", "Bleu_4", "METEOR", "ROUGE_L"),
    ) -> None:
        self.hparams = hparams
        self.metrics = list(metrics)
        self._written = False

    def _write_hparams(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._written or not trainer.is_global_zero:
            return
        self._written = True
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        params = flatten_hparams(self.hparams if self.hparams is not None else dict(pl_module.hparams))
        declared = {f"hp/{m}": 0.0 for m in self.metrics} | {f"hp/test_{m}": 0.0 for m in self.metrics}
        for logger in trainer.loggers:
            writer = getattr(logger, "experiment", None)
            if not hasattr(writer, "_get_file_writer"):
                continue
            logger.log_hyperparams(params)  # kept in hparams.yaml
            # The hparams summary only declares the hp/* columns; their values are the scalars logged later
            # (writing it by hand avoids a fake first point, which log_hyperparams(metrics=...) would log).
            for summary in hparams_summary(params, declared):
                writer._get_file_writer().add_summary(summary)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write_hparams(trainer, pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write_hparams(trainer, pl_module)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write_hparams(trainer, pl_module)

    def _copy(self, trainer: L.Trainer, stage: str, prefix: str) -> None:
        if not trainer.is_global_zero:
            return
        values = {
            f"{prefix}{m}": float(trainer.callback_metrics[f"{stage}/{m}"])
            for m in self.metrics
            if f"{stage}/{m}" in trainer.callback_metrics
        }
        if values:
            for logger in trainer.loggers:
                logger.log_metrics(values, step=trainer.global_step)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._copy(trainer, "val", "hp/")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._copy(trainer, "test", "hp/test_")
