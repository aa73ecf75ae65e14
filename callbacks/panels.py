"""What people look at in TensorBoard besides the scalars: image panels of fixed validation pairs.

* :class:`PanelsCallback`: each validation epoch, the first ``metrics.num_panels`` validation pairs (always
  the same ones) as ``before | after | after + MDP difference heatmap``, with the generated caption and the
  references as text. Contract with the LightningModule: ``pl_module.explain(batch) -> {"captions":
  list[str], "heatmaps": Tensor (B, h, w) in [0, 1] or None}`` for a collated contract batch on the module's
  device; images are denormalised with ``trainer.datamodule.transform.denormalize``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from callbacks.tensorboard import tensorboard_writers
from datamodules.contract import collate_pairs

log = logging.getLogger("m3diff.panels")

GAP = 4  # white pixels between the panels of a pair


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
            dataset = trainer.datamodule.dataset("val")
            if len(dataset) == 0:
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
        denorm = trainer.datamodule.transform.denormalize
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
