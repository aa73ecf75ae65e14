"""SigLIP pretraining of a tiny open_clip model on single scenes and their descriptions (``make pretrain``).

The whole open_clip model (vision tower, MAP head, a 2-layer text tower over the fixed scene vocabulary) is
trained with open_clip's own sigmoid loss (``SigLipLoss``): every image against every description of the
batch, positive on the diagonal. What the kit keeps is the vision tower (``backbone.pretrained=<file>``); the
text tower only exists to give the images something to be told apart by.

Validation is zero-shot retrieval over held-out scenes: for each image, is its own description the most
similar of all ``N`` (``val/i2t_R@1``), and for each description its own image (``val/t2i_R@1``); chance is
``1/N``.
"""

from __future__ import annotations

import lightning as L
import open_clip
import torch
from open_clip.loss import SigLipLoss
from torch import Tensor

from lightning_modules.schedules import warmup_cosine
from mdp.open_clip_adapter import register_tiny_configs


class ScenePretrainer(L.LightningModule):
    """Thin LightningModule: the open_clip model ``model_name`` built from these values (random init).

    Args (keyword-only):
        model_name: an open_clip model config (``mdp-ViT-T-16-SigLIP`` is the default backbone's).
        image_size: input side in pixels.
        lr, weight_decay: AdamW; ``lr`` warms up linearly over ``warmup_steps`` then follows a cosine to 5 %
            of itself at ``max_steps``.
    """

    def __init__(
        self,
        *,
        model_name: str = "mdp-ViT-T-16-SigLIP",
        image_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_steps: int = 100,
        max_steps: int = 1000,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        register_tiny_configs()
        self.model = open_clip.create_model(model_name, force_image_size=image_size)
        self.loss = SigLipLoss()
        self._val: list[tuple[Tensor, Tensor]] = []

    def forward(self, images: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, 3, H, W)`` images, ``(B, L)`` token ids -> L2-normalised features ``(B, E)``, ``(B, E)``."""
        return (
            self.model.encode_image(images, normalize=True),
            self.model.encode_text(tokens, normalize=True),
        )

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        image_features, text_features = self(*batch)
        loss = self.loss(image_features, text_features, self.model.logit_scale.exp(), self.model.logit_bias)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/logit_scale", self.model.logit_scale.exp())
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._val.append(tuple(f.float().cpu() for f in self(*batch)))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        images = torch.cat([i for i, _ in self._val])
        texts = torch.cat([t for _, t in self._val])
        self._val.clear()
        for name, value in retrieval_recall(images, texts).items():
            self.log(f"val/{name}", value)

    def configure_optimizers(self):
        # No weight decay on gains, biases, embeddings' scale and the logit scale / bias (as open_clip's trainer).
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            (no_decay if p.ndim < 2 or "logit_" in name else decay).append(p)
        hp = self.hparams
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=hp.lr,
            betas=(0.9, 0.98),
        )

        scheduler = warmup_cosine(
            optimizer, warmup_steps=hp.warmup_steps, total_steps=hp.max_steps, min_lr_ratio=0.05
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def retrieval_recall(image_features: Tensor, text_features: Tensor) -> dict[str, float]:
    """Recall@1 both ways for ``N`` matching rows of ``(N, E)`` normalised features, and the chance level."""
    similarity = image_features @ text_features.T
    truth = torch.arange(len(similarity))
    return {
        "i2t_R@1": (similarity.argmax(dim=1) == truth).float().mean().item(),
        "t2i_R@1": (similarity.argmax(dim=0) == truth).float().mean().item(),
        "chance": 1.0 / len(similarity),
    }
