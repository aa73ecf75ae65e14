"""The base LightningDataModule every benchmark shares: splits -> datasets -> DataLoaders.

A benchmark declares its ``data`` keys once, as a dataclass (a subclass of :class:`PairDataConfig`, checks in
its ``__post_init__``), subclasses :class:`PairDataModule` (whose constructor takes that config object), sets
``benchmark`` and ``config_class``, registers it (``@register_datamodule``) and implements
:meth:`~PairDataModule.build_dataset`; everything else (loaders, collation, workers, the image transform, the
optional hooks' neutral defaults) is here. :func:`pair_loader` is the one place a DataLoader is built, for every
DataModule and split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning as L
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data import DataLoader, Dataset, Sampler

from datamodules.contract import PairInfo, collate_pairs
from datamodules.errors import ConfigError
from datamodules.images import ImageTransform
from datamodules.samplers import ResumableSampler, worker_init_fn

SPLITS = ("train", "val", "test")
ON_ERROR = ("raise", "skip")


@dataclass
class PairDataConfig:
    """The ``data`` keys every benchmark has. A benchmark's own keys: a subclass beside its DataModule.

    Each key is declared here once (type, default, comment); ``__post_init__`` checks the values, so a bad one
    fails when the config is composed. A subclass adding checks calls ``super().__post_init__()``.
    """

    name: str = "base"  # the DataModule: synthetic, clevr_change, ... (DATA=)
    root: str | None = None  # the dataset folder (real benchmarks); null for the embedded benchmark
    batch_size: int = 32
    eval_batch_size: int = 64
    num_workers: int = 2  # DataLoader worker processes (0 = load in the main process)
    categories: list[str] = field(default_factory=list)  # change categories scored separately
    groups: dict[str, list[str]] = field(default_factory=dict)  # extra scored groups: name -> categories
    # raise: stop at the first bad record, naming file and record | skip: drop it (counted and logged)
    on_error: str = "raise"

    def __post_init__(self) -> None:
        check_choice("on_error", self.on_error, ON_ERROR)


def check_choice(key: str, value: object, choices: Sequence[object]) -> None:
    """``data.<key>`` must be one of ``choices`` (a :class:`ConfigError` naming the key otherwise)."""
    if value not in choices:
        raise ConfigError(f"data.{key} must be one of {list(choices)}, got {value!r}")


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
    """The base of every DataModule: its ``data`` keys come in as one config object.

    Args:
        config: the ``data`` section as this DataModule's ``config_class`` (built, and its values checked, by
            :func:`datamodules.config.data_object`); the keys are read from it, never redeclared here.
        image_size / mean / std / pipeline: the backbone's preprocessing (its ``mdp.ImageSpec``; :class:`ImageTransform`).
        seed: the run's seed (generated data, the training order, train-time augmentation).

    The optional hooks callbacks and the runner call (categories, baselines, ...) are attributes and methods
    of this class with neutral defaults; the table in :mod:`datamodules.contract` lists them.
    """

    benchmark: str = "base"
    config_class: type[PairDataConfig] = PairDataConfig  # the keys of its ``data`` config section
    splits: tuple[str, ...] = SPLITS

    def __init__(
        self,
        config: PairDataConfig,
        *,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        pipeline: str = "kit",
        seed: int,
    ) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__} "
                "(datamodules.build_datamodule builds it from a data section)"
            )
        self.config = config
        self.transform = ImageTransform(size=image_size, mean=tuple(mean), std=tuple(std), pipeline=pipeline)
        self.seed = seed
        self.categories = list(config.categories)  # hooks (see datamodules.contract); a mixture derives them
        self.groups = {k: list(v) for k, v in config.groups.items()}
        self.datasets: dict[str, Dataset] = {}
        self._sampler_resume: dict[str, int] | None = None  # from a checkpoint, for the next training sampler

    # ------------------------------------------------------------------ to implement per benchmark
    def build_dataset(self, split: str) -> Dataset:
        """The dataset of ``split`` (``train``, ``val`` or ``test``) yielding contract samples."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared
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
        return pair_loader(
            dataset, batch_size=self.config.batch_size, num_workers=self.config.num_workers, sampler=sampler
        )

    def eval_loader(self, dataset: Dataset) -> DataLoader:
        """An evaluation DataLoader over ``dataset``, in order (:func:`pair_loader`)."""
        return pair_loader(
            dataset, batch_size=self.config.eval_batch_size, num_workers=self.config.num_workers
        )

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
                "consumed": int(done * self.config.batch_size * trainer.world_size),
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

    # ------------------------------------------------------------------ optional hooks (datamodules.contract)
    # What callbacks, the runner and `make data-info` ask every DataModule. Each default is neutral ("none",
    # "nothing to add"); a benchmark overrides what it has. The table in datamodules/contract.py lists them.
    subsets: Mapping[
        str, str
    ] = {}  # read-only here; parts scored separately: name -> rule (OmniDiff's real / render)
    sample_per: str | None = None  # what one training sample is: "pair" | "caption" (None: not stated)
    baseline_names: tuple[str, ...] = ()  # the reference points baseline_predictions scores
    identifies_changes: bool = False  # change_identification scores captions against the true change

    @property
    def benchmarks(self) -> list[str]:
        """The benchmarks evaluation is grouped by (a mixture: its members)."""
        return [self.benchmark]

    def missing_split(self, split: str) -> str | None:
        """Why ``split`` has no pairs (one line), or ``None`` when it has them."""
        return None

    def has_split(self, split: str) -> bool:
        """Whether ``split`` has pairs (a mixture leaves members without a ``val`` split out of validation)."""
        return self.missing_split(split) is None

    def reference_captions(self, split: str) -> dict[str, list[str]]:
        """Evaluation ground truth: pair id -> every reference. Default: read from the split's samples (their
        images are loaded too); a DataModule that knows its pairs without images overrides it."""
        dataset = self.dataset(split)
        samples = (dataset[i] for i in range(len(dataset)))
        return {s["pair_id"]: list(s["captions"]) for s in samples}

    def training_captions(self, limit: int) -> list[str]:
        """Training references for a tiny LM's caption tokenizer (and the caption token limits). Default: every
        reference of the training pairs, in order, at most ``limit * 5``; generated data makes ``limit`` pairs."""
        captions = [c for refs in self.reference_captions("train").values() for c in refs]
        return captions[: limit * 5]

    def specs(self, split: str) -> Sequence[PairInfo] | None:
        """Every pair of ``split`` (``pair_id``, ``captions``, ``categories``) without loading images, when the
        DataModule can say so (the embedded benchmark regenerates them); ``None``: it cannot."""
        return None

    def epoch_parts(self) -> dict[str, int]:
        """Training samples per part when an epoch is a plain concatenation of parts (a mixture with
        ``weights: null``): part -> samples, for the epoch summary; ``{}`` otherwise."""
        return {}

    def baseline_predictions(self, split: str) -> dict[str, tuple[dict[str, list[str]], dict[str, str]]]:
        """Reference points to score beside the model: name (one of ``baseline_names``) -> (references by pair
        id, one prediction by pair id). None by default."""
        return {}

    def change_identification(self, split: str, predictions: Mapping[str, str]) -> dict[str, float]:
        """Scores of generated captions (pair id -> caption) against each pair's true change, name -> value in
        [0, 1] (when ``identifies_changes``). None by default."""
        return {}

    def category_confusion(self, split: str, predictions: Mapping[str, str]) -> dict[str, list[str]]:
        """The change category each caption states beside the true one, for the confusion matrix
        (``callbacks/confusion.py``): ``{"classes": [...], "truth": [...], "read": [...]}``, one ``truth`` / ``read``
        entry per true change (``read`` may be ``"unreadable"``). ``{}`` by default: nothing to count."""
        return {}
