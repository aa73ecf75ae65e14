"""The base LightningDataModule every benchmark shares: splits -> datasets -> DataLoaders.

A benchmark subclasses :class:`PairDataModule`, sets ``benchmark`` and implements
:meth:`build_dataset`; everything else (loaders, collation, workers, the image transform) is here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import lightning as L
from torch.utils.data import DataLoader, Dataset

from datamodules.contract import collate_pairs
from datamodules.images import ImageTransform


class PairDataModule(L.LightningDataModule):
    """Args (keyword-only; each is a key of the ``data`` config section):
    root: dataset folder (``None`` for generated data).
    batch_size / eval_batch_size: pairs per training / evaluation batch.
    num_workers: DataLoader worker processes (0 = load in the main process).
    categories: the change categories scored separately for this benchmark.
    groups: extra scored groups, name -> categories (e.g. CLEVR-Change's ``semantic``).
    on_error: ``raise`` stops at the first bad record naming file and record; ``skip`` drops it,
        counts it and logs the count.
    image_size / mean / std: the backbone's preprocessing.
    seed: the run's seed (generated data, train-time augmentation).
    """

    benchmark: str = "base"

    def __init__(
        self,
        *,
        root: str | None = None,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        num_workers: int = 2,
        categories: Sequence[str] = (),
        groups: Mapping[str, Sequence[str]] | None = None,
        on_error: str = "raise",
        image_size: int = 224,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        seed: int = 0,
    ) -> None:
        super().__init__()
        if on_error not in ("raise", "skip"):
            raise ValueError(f"data.on_error must be 'raise' or 'skip', got {on_error!r}")
        self.root = root
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.categories = list(categories)
        self.groups = {k: list(v) for k, v in (groups or {}).items()}
        self.on_error = on_error
        self.transform = ImageTransform(size=image_size, mean=tuple(mean), std=tuple(std))
        self.seed = seed
        self.datasets: dict[str, Dataset] = {}

    # ------------------------------------------------------------------ to implement per benchmark
    def build_dataset(self, split: str) -> Dataset:
        """The dataset of ``split`` (``train``, ``val`` or ``test``) yielding contract samples."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared
    def set_image_spec(self, *, size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        """Use the backbone's preprocessing (before any dataset is built: datasets keep the transform)."""
        if self.datasets:
            raise RuntimeError("set_image_spec() must be called before the datasets are built")
        self.transform = ImageTransform(size=size, mean=tuple(mean), std=tuple(std))

    def dataset(self, split: str) -> Dataset:
        if split not in self.datasets:
            self.datasets[split] = self.build_dataset(split)
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage or "fit", ("train", "val")):
            self.dataset(split)

    def _loader(self, split: str, *, train: bool) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            drop_last=train,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_pairs,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
