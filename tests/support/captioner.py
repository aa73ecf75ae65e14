"""A captioner built from the config alone (no run assembly) with the tiny model, eight learnable pairs, and a
few-step fit: for tests of the LightningModule itself."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import Dataset

from datamodules.base import PairDataConfig, PairDataModule
from experiments.common.config import load_config, to_container
from lightning_modules.captioner import CaptionerModule
from lightning_modules.model.tokenizer import train_caption_tokenizer
from support.tiny import TINY_MODEL

TINY_MODULE = [
    *TINY_MODEL,
    "model.max_caption_tokens=16",  # modules built here, not by the run assembly: no limits measured on data
    "generation.max_new_tokens=8",
]
CAPTIONS = [
    "the red square moved left",
    "a blue circle was added",
    "nothing has changed",
    "the green bar is gone",
]


class TinyPairs(Dataset):
    """Eight fixed pairs whose caption is a function of the pair: learnable in a few steps."""

    def __init__(self, n: int = 8, size: int = 32) -> None:
        gen = torch.Generator().manual_seed(0)
        self.before = torch.randn(n, 3, size, size, generator=gen)
        self.after = self.before.clone()
        for i in range(n):
            self.after[i, :, : 8 * (1 + i % 4), :8] += 2.0
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {
            "pair_id": f"p{i}",
            "before": self.before[i],
            "after": self.after[i],
            "captions": [CAPTIONS[i % 4]],
            "categories": ["color"] if i % 2 else ["addition"],
            "benchmark": "tiny",
        }


class TinyPairsModule(PairDataModule):
    benchmark = "tiny"

    def build_dataset(self, split: str) -> Dataset:
        return TinyPairs()


def make_module(*overrides: str) -> CaptionerModule:
    cfg = load_config(overrides=[*TINY_MODULE, *overrides])
    tokenizer_json = train_caption_tokenizer(CAPTIONS * 10, vocab_size=cfg.model.lm.vocab_size)
    return CaptionerModule(config=to_container(cfg), tokenizer_json=tokenizer_json)


def batch_of(n: int = 4) -> dict:
    from datamodules.contract import collate_pairs

    data = TinyPairs()
    return collate_pairs([data[i] for i in range(n)])


def fit(module: CaptionerModule, steps: int, tmp_path) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    config = PairDataConfig(batch_size=4, num_workers=0)
    datamodule = TinyPairsModule(config, image_size=224, mean=(0.5,) * 3, std=(0.5,) * 3, seed=0)
    trainer.fit(module, datamodule=datamodule)
    return trainer
