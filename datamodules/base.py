"""The base LightningDataModule every benchmark shares: splits -> datasets -> DataLoaders.

A benchmark subclasses :class:`PairDataModule`, sets ``benchmark`` and implements
:meth:`build_dataset`; everything else (loaders, collation, workers, the image transform) is here.
:func:`pair_loader` is the one place a DataLoader is built, for every DataModule and split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning as L
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data import DataLoader, Dataset, Sampler

from datamodules.contract import collate_pairs
from datamodules.images import ImageTransform
from datamodules.samplers import ResumableSampler, worker_init_fn


@dataclass
class PairDataConfig:
    """The ``data`` keys every benchmark has. A benchmark's own keys: a subclass beside its DataModule."""

    name: str = "base"  # the DataModule: synthetic, clevr_change, ... (DATA=)
    root: str | None = None  # the dataset folder (real benchmarks); null for the embedded benchmark
    batch_size: int = 32
    eval_batch_size: int = 64
    num_workers: int = 2  # DataLoader worker processes (0 = load in the main process)
    categories: list[str] = field(default_factory=list)  # change categories scored separately
    groups: dict[str, list[str]] = field(default_factory=dict)  # extra scored groups: name -> categories
    on_error: str = "raise"  # raise | skip (skipped records are counted and logged)


def pair_loader(
    dataset: Dataset, *, batch_size: int, num_workers: int, sampler: Sampler[int] | None = None
) -> DataLoader:
    """The DataLoader of every DataModule: a training loader when ``sampler`` is given, else an evaluation one.

    Training: batches in the sampler's order, no ragged last batch unless the whole epoch is smaller than one
    batch (mini copies of a benchmark). Evaluation: every pair, in dataset order. Both collate contract
    samples and start their workers with :func:`~datamodules.samplers.worker_init_fn`, so Ctrl+C / SIGTERM
    stop the main process cleanly instead of killing workers under it.
    """
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        drop_last=sampler is not None and len(sampler) > batch_size,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        worker_init_fn=worker_init_fn,
        collate_fn=collate_pairs,
    )


class PairDataModule(L.LightningDataModule):
    """Args (keyword-only; each is a key of the ``data`` config section):
    root: dataset folder (``None`` for generated data).
    batch_size / eval_batch_size: pairs per training / evaluation batch.
    num_workers: DataLoader worker processes (0 = load in the main process).
    categories: the change categories scored separately for this benchmark.
    groups: extra scored groups, name -> categories (e.g. CLEVR-Change's ``semantic``).
    on_error: ``raise`` stops at the first bad record naming file and record; ``skip`` drops it,
        counts it and logs the count.
    image_size / mean / std / pipeline: the backbone's preprocessing (``mdp.ImageSpec``; :class:`ImageTransform`).
    seed: the run's seed (generated data, train-time augmentation).
    """

    benchmark: str = "base"
    config_class: type = PairDataConfig  # the keys of its ``data`` config section

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
        pipeline: str = "kit",
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
        self.transform = ImageTransform(size=image_size, mean=tuple(mean), std=tuple(std), pipeline=pipeline)
        self.seed = seed
        self.datasets: dict[str, Dataset] = {}
        self._sampler_resume: dict[str, int] | None = None  # from a checkpoint, for the next training sampler

    # ------------------------------------------------------------------ to implement per benchmark
    def build_dataset(self, split: str) -> Dataset:
        """The dataset of ``split`` (``train``, ``val`` or ``test``) yielding contract samples."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared
    def has_split(self, split: str) -> bool:
        """Whether ``split`` has pairs (a mixture leaves members without a ``val`` split out of validation)."""
        return True

    def dataset(self, split: str) -> Dataset:
        if split not in self.datasets:
            self.datasets[split] = self.build_dataset(split)
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage or "fit", ("train", "val")):
            self.dataset(split)

    def train_loader(self, dataset: Dataset, sampler: Sampler[int]) -> DataLoader:
        """A training DataLoader over ``dataset`` in ``sampler``'s order (:func:`pair_loader`)."""
        return pair_loader(dataset, batch_size=self.batch_size, num_workers=self.num_workers, sampler=sampler)

    def eval_loader(self, dataset: Dataset) -> DataLoader:
        """An evaluation DataLoader over ``dataset``, in order (:func:`pair_loader`)."""
        return pair_loader(dataset, batch_size=self.eval_batch_size, num_workers=self.num_workers)

    # ------------------------------------------------------------------ resuming mid-epoch
    def train_sampler(self, n: int, **kwargs: Any) -> Sampler[int]:
        """The training sampler (seeded by the run's seed), positioned where a resumed checkpoint stopped.

        With several processes it is sharded here, without shuffling: Lightning's automatic wrapper would
        shuffle the order once more with its own seed, and after a mid-epoch resume that second shuffle would
        deal other pairs to the remaining steps.
        """
        sampler = ResumableSampler(n, seed=self.seed, **kwargs)
        if self._sampler_resume:
            sampler.resume(**self._sampler_resume)
            self._sampler_resume = None
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            return DistributedSamplerWrapper(
                sampler, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
            )
        return sampler

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: where the training order stands (epoch, samples consumed in it).

        Computed from Lightning's own progress counters at save time, not from the sampler, which DataLoader
        workers and Lightning's prefetching have already run ahead of.
        """
        trainer = self.trainer
        if trainer is None or trainer.state.fn != TrainerFn.FITTING:
            return {}
        epochs = trainer.fit_loop.epoch_progress.current
        epoch, done = epochs.processed, 0
        if epochs.processed < epochs.ready:  # mid-epoch (once an epoch is closed, a resume starts the next)
            # Batches of this epoch done on this rank (it continues after them).
            done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
            if done >= trainer.num_training_batches:  # saved after its last batch: the next epoch, from 0
                epoch, done = epoch + 1, 0
        # Every rank consumed `done` batches; the sampler's order is shared (a DistributedSampler deals it out).
        return {
            "train_sampler": {
                "epoch": int(epoch),
                "consumed": int(done * self.batch_size * trainer.world_size),
            }
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """On resume (before the training DataLoader is built): continue the interrupted epoch's order."""
        resume = state_dict.get("train_sampler")
        self._sampler_resume = (
            {"epoch": int(resume["epoch"]), "consumed": int(resume["consumed"])} if resume else None
        )

    def train_dataloader(self) -> DataLoader:
        dataset = self.dataset("train")
        # Plain indices: these datasets are a pure function of the index (no per-epoch augmentation).
        return self.train_loader(dataset, self.train_sampler(len(dataset), encode_epoch=False))

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader(self.dataset("val"))

    def test_dataloader(self) -> DataLoader:
        return self.eval_loader(self.dataset("test"))
