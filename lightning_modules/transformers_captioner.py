"""The thin LightningModule that scores a released transformers vision-language model zero-shot
(``make eval MODEL=<folder>``; :class:`~lightning_modules.model.transformers_vlm.TransformersCaptioner`).

Its validation / test step returns the per-pair records :class:`~lightning_modules.captioner.CaptionerModule`
returns, so the same :class:`~callbacks.caption_metrics.CaptionMetricsCallback` gathers them from every process,
keeps each pair once, scores them per category and subset and writes the same COCO files. The DataModule hands it
the images as loaded (``mdp.ImageSpec.pipeline="processor"``: 8-bit, each at its own size): the model's own
processor prepares them. There is no teacher-forced loss (nothing is trained; a template's caption end differs
per family); ``<stage>/cut_captions`` counts the captions that ran into ``generation.max_new_tokens``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from PIL import Image

from lightning_modules.model.transformers_vlm import TransformersCaptioner, to_pil
from lightning_modules.pair_metrics import PairCount, evaluation_record


class TransformersCaptionerModule(L.LightningModule):
    """Args:
    config: the resolved run config (plain dicts): ``model.lm.name`` is the model folder, ``model.lm.dtype`` its
        weights' dtype, ``model.prompt`` the instruction of a pair without its own, ``model.system_prompt`` the
        system turn (null: none sent), ``generation`` the decoding.
    processor: the folder's processor, already loaded and checked (``None``: load and check it).
    """

    def __init__(self, *, config: dict[str, Any], processor: Any = None) -> None:
        super().__init__()
        self.config = config
        model = config["model"]
        self.captioner = TransformersCaptioner(
            model["lm"]["name"],
            dtype=model["lm"]["dtype"],
            system_prompt=model.get("system_prompt"),
            processor=processor,
        )
        self.cut_captions = torch.nn.ModuleDict({"val": PairCount(), "test": PairCount()})

    def instructions(self, batch_instructions: Sequence[str | None] | None, size: int) -> list[str]:
        """Each pair's own instruction, else ``model.prompt``."""
        default = self.config["model"]["prompt"]
        return [text or default for text in (batch_instructions or [None] * size)]

    @torch.no_grad()
    def caption(
        self,
        before: Sequence[torch.Tensor | Image.Image],
        after: Sequence[torch.Tensor | Image.Image],
        *,
        instructions: Sequence[str | None] | None = None,
        **overrides: Any,
    ) -> tuple[list[str], list[bool]]:
        """Captions of pairs (raw images: PIL or 8-bit ``(3, H, W)`` tensors) with the configured decoding, and
        whether each was cut by ``max_new_tokens``."""
        generation = {**self.config["generation"], **overrides}
        pairs = [(to_pil(b), to_pil(a)) for b, a in zip(before, after)]
        sequences, cut = self.captioner.generate(
            pairs, self.instructions(instructions, len(pairs)), **generation
        )
        return self.captioner.decode(sequences), cut

    def evaluation_step(self, batch: dict, stage: str) -> dict[str, list]:
        predictions, cut = self.caption(
            batch["before"], batch["after"], instructions=batch.get("instruction")
        )
        keys = [f"{b}/{p}" for b, p in zip(batch["benchmark"], batch["pair_id"])]
        flags = torch.tensor(cut, device=self.device)
        self.cut_captions[stage].update(keys, flags, torch.ones_like(flags))
        return evaluation_record(batch, predictions)

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict[str, list]:
        return self.evaluation_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict[str, list]:
        return self.evaluation_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_cut("val")

    def on_test_epoch_end(self) -> None:
        self._log_cut("test")

    def _log_cut(self, stage: str) -> None:
        metric = self.cut_captions[stage]
        if metric.update_count:
            # Every rank holds the same gathered value; "max" keeps it bit-exact.
            self.log(f"{stage}/cut_captions", metric.compute(), sync_dist=True, reduce_fx="max")
        metric.reset()
