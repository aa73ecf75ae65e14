"""The tiny evaluation parts the callback tests drive a real ``lightning.Trainer`` with: a DataModule of random
16x16 pairs in three categories (with the optional hooks) and a LightningModule that emits known captions."""

from __future__ import annotations

from collections import Counter

import lightning as L
import torch
from torch.utils.data import Dataset

from datamodules.base import PairDataConfig, PairDataModule

CATEGORIES = ["color", "move", "distractor"]
GROUPS = {"semantic": ["color", "move"]}
REFERENCES = {
    "color": ["the {o} turned red", "the {o} changed its color to red", "the color of the {o} changed"],
    "move": ["the {o} moved to the left", "the {o} changed its location", "the {o} is in a different place"],
    "distractor": ["no change was made", "the scene remains the same", "nothing has changed"],
}
OBJECTS = ["cube", "ball", "cylinder", "block"]
SIZE = 16


class ListDataset(Dataset):
    def __init__(self, samples: list[dict]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        return self.samples[i]


class TinyDataModule(PairDataModule):
    """Random 16x16 pairs in three categories, two benchmarks, with the optional DataModule extras."""

    benchmark = "tiny"
    benchmarks = ("tiny_a", "tiny_b")  # as a mixture declares its members (charted per benchmark)
    baseline_names = ("ceiling", "trivial")
    identifies_changes = True

    def __init__(self, sizes: dict[str, int] | None = None) -> None:
        config = PairDataConfig(
            batch_size=4, eval_batch_size=4, num_workers=0, categories=list(CATEGORIES), groups=GROUPS
        )
        super().__init__(config, image_size=SIZE, mean=(0.5,) * 3, std=(0.5,) * 3, seed=0)
        self.sizes = {"train": 8, "val": 9, "test": 7, **(sizes or {})}

    def build_dataset(self, split: str) -> Dataset:
        gen = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
        samples = []
        for i in range(self.sizes[split]):
            category = CATEGORIES[i % 3]
            obj = OBJECTS[i % 4]
            before = torch.rand(3, SIZE, SIZE, generator=gen) * 2 - 1
            after = before.clone()
            if category != "distractor":
                after[:, 4:9, 4:9] = 1.0
            samples.append(
                {
                    "pair_id": f"{split}{i:03d}.png",
                    "before": before,
                    "after": after,
                    "captions": [r.format(o=obj) for r in REFERENCES[category]],
                    "categories": [category],
                    "benchmark": "tiny_a" if i % 2 else "tiny_b",
                }
            )
        return ListDataset(samples)

    def references(self, split: str) -> dict[str, list[str]]:
        return {s["pair_id"]: s["captions"] for s in self.dataset(split).samples}

    def change_identification(self, split: str, predictions: dict[str, str]) -> dict[str, float]:
        said_change = [("no change" not in c) for c in predictions.values()]
        truth = [
            s["categories"] != ["distractor"]
            for s in self.dataset(split).samples
            if s["pair_id"] in predictions
        ]
        return {"accuracy": sum(a == b for a, b in zip(said_change, truth)) / len(truth)}

    def category_confusion(self, split: str, predictions: dict[str, str]) -> dict[str, list[str]]:
        """True category vs the one a caption names by its verb ("no change" reads as distractor)."""
        words = {"turned": "color", "moved": "move", "no change": "distractor"}
        samples = {s["pair_id"]: s for s in self.dataset(split).samples}
        read = [next((c for w, c in words.items() if w in p), "unreadable") for p in predictions.values()]
        return {
            "classes": CATEGORIES,
            "truth": [samples[p]["categories"][0] for p in predictions],
            "read": read,
        }

    def baseline_predictions(self, split: str) -> dict[str, tuple[dict, dict]]:
        refs = self.references(split)
        common = Counter(c for cs in refs.values() for c in cs).most_common(1)[0][0]
        return {
            "ceiling": ({k: v[1:] for k, v in refs.items()}, {k: v[0] for k, v in refs.items()}),
            "trivial": (refs, {k: common for k in refs}),
        }


def known_caption(pair_id: str, references: list[str]) -> str:
    """A deterministic function of the pair id: right for 2 pairs out of 3, "no change" otherwise."""
    n = int(pair_id[-7:-4])
    return references[0] if n % 3 != 1 else "no change was made"


class TinyCaptioner(L.LightningModule):
    """Emits known captions; explain() gives |after - before| heatmaps at a quarter of the resolution."""

    def __init__(self, backbone: str = "tiny-test", mdp_enabled: bool = True) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(3, 1)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self.layer(batch["before"].mean((2, 3))).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def _step(self, batch: dict) -> dict:
        return {
            "pair_id": batch["pair_id"],
            "prediction": [known_caption(p, r) for p, r in zip(batch["pair_id"], batch["captions"])],
            "references": batch["captions"],
            "categories": batch["categories"],
            "benchmark": batch["benchmark"],
        }

    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        return self._step(batch)

    def test_step(self, batch: dict, batch_idx: int) -> dict:
        return self._step(batch)

    def explain(self, batch: dict) -> dict:
        diff = (batch["after"] - batch["before"]).abs().mean(1, keepdim=True)
        heat = torch.nn.functional.avg_pool2d(diff, 4)[:, 0]
        heat = heat / heat.amax((1, 2), keepdim=True).clamp(min=1e-6)
        return {"captions": self._step(batch)["prediction"], "heatmaps": heat}
