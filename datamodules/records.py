"""The base of the DataModules that read annotation files: :class:`RecordDataModule`.

Each benchmark module only *parses its annotation files* into :class:`~datamodules.annotations.PairRecord` s
(its :meth:`~RecordDataModule.index`); this base does the rest: the ``data.on_error`` policy per split
(:mod:`datamodules.errors`), image-file checks, the dataset (:mod:`datamodules.record_dataset`) and the
seeded, resumable training order.

Two layers, on purpose:

* **index** (:meth:`RecordDataModule.records`): annotation files only. No image is opened, so pair counts,
  references, categories and the evaluation ground truth (:meth:`RecordDataModule.reference_captions`) are
  available without the images (``make data-info``, the tests on the released annotation files).
* **load** (:class:`~datamodules.record_dataset.RecordDataset`): opens the two images of a record when a sample
  is requested.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from datamodules.annotations import PairRecord
from datamodules.base import PairDataConfig, PairDataModule, check_choice
from datamodules.errors import ConfigError, DataError, MissingFile, Problems
from datamodules.images import DEFAULT_MAX_IMAGE_PIXELS, ImageLoadError, load_image
from datamodules.record_dataset import RecordDataset, per_caption

log = logging.getLogger("m3diff.data")

SAMPLE_PER = ("pair", "caption")


# ------------------------------------------------------------------------------------------------ image files
IMAGE_NOT_FOUND = "image file not found"


def _image_problem(path: str, *, decode: bool, max_pixels: int | None) -> str | None:
    """Why ``path`` cannot be used, or ``None``. Without ``decode`` only existence and size are checked."""
    if decode:
        try:
            load_image(path, max_pixels=max_pixels)
        except ImageLoadError as err:
            return err.reason
        return None
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return IMAGE_NOT_FOUND
    except OSError as err:
        return f"cannot read image file ({err.strerror or err})"
    return "empty image file (0 bytes)" if size == 0 else None


def check_image_files(
    records: Sequence[PairRecord],
    problems: Problems,
    *,
    decode: bool,
    max_pixels: int | None,
    status: dict[str, str | None] | None = None,
    every_file: bool = False,
) -> list[PairRecord]:
    """The records whose files are all usable; the others are reported (each distinct file checked once).

    Default: one problem per unusable record (its first bad file). ``every_file`` (``make data-info``): every file
    of every record is checked and each bad file is reported once, naming the first pair that uses it.
    ``status`` (filled in): every file checked -> its problem or ``None``.
    """
    status = {} if status is None else status
    kept = []
    for record in records:
        usable = True
        for path in record.files:
            new = path not in status
            if new:
                status[path] = _image_problem(path, decode=decode, max_pixels=max_pixels)
            if status[path]:
                usable = False
                if new or not every_file:
                    problems.add(status[path], file=path, record=f"pair {record.pair_id!r} ({record.source})")
                if not every_file:
                    break
        if usable:
            kept.append(record)
    return kept


# ------------------------------------------------------------------------------------------------ DataModule
@dataclass
class SplitReport:
    """What ``make data-info`` prints for one split."""

    pairs: int = 0
    unique_ids: int = 0
    references: int | None = 0  # None: the caption file is missing, references unknown
    blank_references: int = 0
    categories: dict[str, int] = field(default_factory=dict)
    # pairs per subset (data.subsets: OmniDiff's real / render), when there are any
    subsets: dict[str, int] = field(default_factory=dict)
    # distinct image files not found; None: not checked (--check-images=none)
    missing_images: int | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class RecordDataConfig(PairDataConfig):
    """Keys of every benchmark read from annotation files."""

    # Images with more pixels are refused (decompression-bomb limit); null = Pillow's.
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
    # pair: one training sample per pair and epoch, a reference drawn per step | caption: every reference a
    # sample of its own (the epoch counts captions, as the paper's 896K). Evaluation is per pair either way.
    sample_per: str = "pair"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("sample_per", self.sample_per, SAMPLE_PER)


class RecordDataModule(PairDataModule):
    """Base of the real-benchmark DataModules: subclasses implement :meth:`index` (annotation parsing).

    ``config``: a :class:`RecordDataConfig`; ``data.root`` must be an existing folder.
    """

    benchmark = "records"
    config_class = RecordDataConfig
    train_swap_prob: float = 0.0  # CLEVR-Change sets this from its config

    def __init__(self, config: RecordDataConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        if not config.root:
            raise ConfigError(
                f"data.root is not set: point it at the {self.benchmark} folder "
                f"(make ... DATA={self.benchmark} ARGS='data.root=/path/to/{self.benchmark}')"
            )
        self.root_path = Path(config.root).expanduser()
        if not self.root_path.is_dir():
            raise DataError(
                f"dataset folder not found: set ROOT= (data.root) to the {self.benchmark} folder you downloaded",
                file=self.root_path,
            )
        self._records: dict[str, list[PairRecord]] = {}
        self.skipped: dict[str, int] = {}  # split -> records dropped under on_error=skip

    @property
    def sample_per(self) -> str:  # the hook (datamodules.contract), from data.sample_per
        return self.config.sample_per

    # ---------------------------------------------------------------- to implement per benchmark
    def index(self, split: str, problems: Problems) -> list[PairRecord]:
        """Parse the annotation files of ``split`` into records, in file order. Report record-level problems
        through ``problems`` (and drop the record when ``add`` returns); raise :class:`DataError` for
        file-level ones (``problems.missing_file`` for a missing caption file)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- public
    def missing_split(self, split: str) -> str | None:
        """Why ``split`` is absent (one line), or ``None`` if it has pairs: not one of this benchmark's splits,
        or its annotation file is absent (an unreadable file still raises: that is an error, not an absent
        split)."""
        if split not in self.splits:
            return f"{self.benchmark} has no '{split}' split (its splits: {list(self.splits)})"
        try:
            records = self.records(split)
        except MissingFile as err:
            return str(err)
        return None if records else f"no pairs in its '{split}' split"

    def records(self, split: str) -> list[PairRecord]:
        """The indexed pairs of ``split`` under ``data.on_error`` (cached)."""
        if split not in self.splits:
            raise ValueError(f"{self.benchmark}: unknown split {split!r}; choose one of {list(self.splits)}")
        if split not in self._records:
            problems = Problems(self.config.on_error)
            records = self.index(split, problems)
            problems.warn(f"{self.benchmark} {split} annotations", kept=len(records))
            self.skipped[split] = len(problems)
            self._records[split] = records
        return self._records[split]

    def reference_captions(self, split: str) -> dict[str, list[str]]:
        """Evaluation ground truth: pair id -> every reference, in file order (for the COCO GT file)."""
        return {r.pair_id: list(r.captions) for r in self.records(split)}

    def pair_categories(self, split: str) -> dict[str, list[str]]:
        """Pair id -> its change categories (empty for benchmarks without labels)."""
        return {r.pair_id: list(r.categories) for r in self.records(split)}

    def inspect(self, split: str, *, check_images: str = "decode") -> SplitReport:
        """Counts and every problem of ``split`` (``check_images``: ``decode``, ``exists`` or ``none``), never
        raising for record-level problems; counts are of the indexed pairs, whether or not images exist."""
        if check_images not in ("decode", "exists", "none"):
            raise ValueError(f"check_images must be decode, exists or none, got {check_images!r}")
        problems = Problems("collect")
        records = self.index(split, problems)
        missing = None
        if check_images != "none":
            status: dict[str, str | None] = {}
            check_image_files(
                records,
                problems,
                decode=check_images == "decode",
                max_pixels=self.config.max_image_pixels,
                status=status,
                every_file=True,
            )
            missing = sum(1 for reason in status.values() if reason == IMAGE_NOT_FOUND)
        subsets = Counter(r.subset for r in records if r.subset)
        counts = Counter(c for r in records for c in r.categories)
        categories = {c: counts.pop(c, 0) for c in self.categories} | dict(sorted(counts.items()))
        known = bool(records) and all(r.captions for r in records)
        return SplitReport(
            pairs=len(records),
            unique_ids=len({r.pair_id for r in records}),
            references=sum(len(r.captions) for r in records) if known or not records else None,
            blank_references=sum(1 for r in records for c in r.captions if not c.strip()),
            categories=categories,
            subsets=dict(sorted(subsets.items())),
            missing_images=missing,
            problems=[str(p) for p in problems.items],
        )

    # ---------------------------------------------------------------- PairDataModule hooks
    def build_dataset(self, split: str) -> RecordDataset:
        records = self.records(split)
        problems = Problems(self.config.on_error)
        # Under skip, evaluation images are decoded now so a bad pair is dropped, never substituted.
        decode = self.config.on_error == "skip" and split != "train"
        records = check_image_files(records, problems, decode=decode, max_pixels=self.config.max_image_pixels)
        problems.warn(f"{self.benchmark} {split} images", kept=len(records))
        self.skipped[split] = self.skipped.get(split, 0) + len(problems)
        self._records[split] = records  # the ground truth is what is evaluated: without dropped pairs
        if split == "train":
            records = self._drop_blank_captions(records)
            if self.config.sample_per == "caption":
                records = per_caption(records)
        if not records:
            raise DataError(f"no usable pairs in split '{split}'", file=self.root_path)
        return RecordDataset(
            records,
            benchmark=self.benchmark,
            transform=self.transform,
            on_error=self.config.on_error,
            max_pixels=self.config.max_image_pixels,
            swap_prob=self.train_swap_prob if split == "train" else 0.0,
            seed=self.seed,
        )

    def _drop_blank_captions(self, records: list[PairRecord]) -> list[PairRecord]:
        """Blank references are released data (Spot-the-Diff has ``""``) and stay in the evaluation ground
        truth, but are no training target: drop them from training pairs, and pairs left with none."""
        out = []
        for record in records:
            keep = [i for i, c in enumerate(record.captions) if c.strip()]
            if len(keep) == len(record.captions):
                out.append(record)
            elif keep:
                out.append(
                    record._replace(
                        captions=tuple(record.captions[i] for i in keep),
                        instructions=tuple(record.instructions[i] for i in keep)
                        if record.instructions
                        else (),
                    )
                )
        if len(out) < len(records):
            log.info(
                "%s train: %d pair(s) with only blank references not trained on",
                self.benchmark,
                len(records) - len(out),
            )
        return out

    def train_dataloader(self) -> DataLoader:
        dataset = self.dataset("train")
        return self.train_loader(dataset, self.train_sampler(len(dataset)))  # seeded per epoch, resumable
