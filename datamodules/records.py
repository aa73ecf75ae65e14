"""Shared machinery of the real-benchmark DataModules.

Each benchmark module only *parses its annotation files* into :class:`PairRecord` s; this module does the rest:
errors that name the file and record, the ``data.on_error`` policy, path-escape checks, image-file checks, the
dataset that turns records into contract samples, and a seeded per-epoch sampler.

Two layers, on purpose:

* **index** (:meth:`RecordDataModule.records`): annotation files only. No image is opened, so pair counts,
  references, categories and the evaluation ground truth (:meth:`RecordDataModule.reference_captions`) are
  available without the images (``make data-info``, the tests on the released annotation files).
* **load** (:class:`RecordDataset`): opens the two images of a record when a sample is requested.

Error policy (``data.on_error``):

* *File-level* problems (annotation file missing or empty, not UTF-8, malformed JSON, wrong top-level type)
  always raise :class:`DataError`: nothing sensible can be loaded from such a file.
* *Record-level* problems (missing field, wrong field type, empty caption list, duplicate id, id without
  captions, a path escaping the dataset root, a missing or empty image file) raise under ``raise``. Under
  ``skip`` the record is dropped and counted, and one warning per split gives the count and the first problems.
* *Image decode* problems (truncated/corrupt file, decompression bomb) show when a sample is loaded. Under
  ``raise`` they raise naming the file and record. Under ``skip`` the training split substitutes the next
  readable pair (each substitution is logged with a running count); evaluation splits are instead decoded once
  in ``setup``, so unreadable pairs are dropped before any prediction is made (a substitute would give another
  pair's id a second prediction).
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from torch.utils.data import DataLoader, Dataset

from datamodules.base import PairDataConfig, PairDataModule
from datamodules.config import ConfigError
from datamodules.contract import PairSample
from datamodules.images import DEFAULT_MAX_IMAGE_PIXELS, ImageLoadError, ImageTransform, load_image
from datamodules.samplers import ResumableSampler

log = logging.getLogger("m3diff.data")

SPLITS = ("train", "val", "test")
SAMPLE_PER = ("pair", "caption")
# A run of this many unreadable pairs in a row under on_error=skip means the data is broken, not noisy.
MAX_SUBSTITUTIONS = 64


# ------------------------------------------------------------------------------------------------ errors
class DataError(ValueError):
    """Data cannot be read. ``str()`` is ``"<file>: <record>: <reason>"``; the parts are attributes too."""

    def __init__(self, reason: str, *, file: str | Path | None = None, record: str | None = None) -> None:
        self.file = None if file is None else str(file)
        self.record = record
        self.reason = reason
        where = ": ".join(part for part in (self.file, record) if part)
        super().__init__(f"{where}: {reason}" if where else reason)


class MissingFile(DataError):
    """A file that is not there (rather than unreadable): for a split's own annotation file, the split is absent."""


@dataclass(frozen=True)
class Problem:
    file: str
    record: str | None
    reason: str

    def __str__(self) -> str:
        return ": ".join(part for part in (self.file, self.record, self.reason) if part)


class Problems:
    """Record-level problems under a policy: ``raise`` (at the first), ``skip`` (drop and count) or
    ``collect`` (``data-info``: keep going, also past missing caption files, and list everything)."""

    def __init__(self, on_error: str) -> None:
        if on_error not in ("raise", "skip", "collect"):
            raise ValueError(f"on_error must be raise, skip or collect, got {on_error!r}")
        self.on_error = on_error
        self.items: list[Problem] = []

    def add(self, reason: str, *, file: str | Path, record: str | None = None) -> None:
        """Report a bad record: raises under ``raise``; the caller drops the record otherwise."""
        if self.on_error == "raise":
            raise DataError(reason, file=file, record=record)
        self.items.append(Problem(str(file), record, reason))

    def missing_file(self, reason: str, *, file: str | Path) -> None:
        """A file every record needs is absent: fatal, except when only inspecting (counts still matter)."""
        if self.on_error != "collect":
            raise DataError(reason, file=file)
        self.items.append(Problem(str(file), None, reason))

    def __len__(self) -> int:
        return len(self.items)

    def warn(self, what: str, *, kept: int) -> None:
        """Under ``skip``: one warning with the count and the first problems (skipping is never silent)."""
        if self.items and self.on_error == "skip":
            first = "\n  ".join(str(p) for p in self.items[:5])
            more = f"\n  ... and {len(self.items) - 5} more" if len(self.items) > 5 else ""
            log.warning(
                "%s: data.on_error=skip dropped %d record(s), kept %d:\n  %s%s",
                what,
                len(self.items),
                kept,
                first,
                more,
            )


# ------------------------------------------------------------------------------------------------ reading
def decode_utf8(raw: bytes, *, file: str | Path, record: str | None = None) -> str:
    """Strict UTF-8 (a BOM is allowed); the error gives the line and column of the first bad byte."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        at = f"column {column}" if record else f"line {line}, column {column}"
        raise DataError(
            f"not UTF-8 text: byte 0x{raw[err.start]:02x} at {at} (re-save the file as UTF-8)",
            file=file,
            record=record,
        ) from None


def read_bytes(path: Path, *, what: str = "annotation file") -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MissingFile(f"{what} not found", file=path) from None
    except OSError as err:
        raise DataError(f"cannot read {what}: {err.strerror or err}", file=path) from None
    if not raw.strip():
        raise DataError(f"{what} is empty", file=path)
    return raw


def read_json(path: Path, *, what: str = "annotation file") -> Any:
    """Parse a JSON file; every failure is a :class:`DataError` naming the file (and line/column)."""
    text = decode_utf8(read_bytes(path, what=what), file=path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(
            f"malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}", file=path
        ) from None


def read_json_dict(path: Path, *, what: str = "annotation file") -> dict:
    data = read_json(path, what=what)
    if not isinstance(data, dict):
        raise DataError(f"expected a JSON object at the top level, got a {type(data).__name__}", file=path)
    return data


def read_records(path: Path, problems: Problems) -> list[tuple[str, Any]]:
    """A JSON list of records or a JSON Lines file (``.jsonl``) -> ``[(locator, record), ...]``.

    Locators are ``record [i]`` (0-based position in the JSON list) or ``line N`` (1-based JSONL line). A bad
    JSONL line (malformed, not UTF-8) is a record-level problem; a malformed JSON list is fatal.
    """
    if path.suffix.lower() == ".jsonl":
        out = []
        for number, line in enumerate(read_bytes(path).split(b"\n"), 1):
            if not line.strip():
                continue
            where = f"line {number}"
            try:
                out.append((where, json.loads(decode_utf8(line, file=path, record=where))))
            except DataError as err:
                problems.add(err.reason, file=path, record=where)
            except json.JSONDecodeError as err:
                problems.add(f"malformed JSON at column {err.colno}: {err.msg}", file=path, record=where)
        return out
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(f"expected a JSON list of records, got a {type(data).__name__}", file=path)
    return [(f"record [{i}]", item) for i, item in enumerate(data)]


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _type(value: Any) -> str:
    """JSON's name for the type of ``value`` (what the user sees in the file)."""
    names = {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string"}
    return names.get(type(value), {dict: "object", list: "list"}.get(type(value), type(value).__name__))


_MISSING = object()


class Fields:
    """Typed access to one annotation record. The first problem is reported (file, record, field) and marks
    the record ``bad``; later getters return ``None`` quietly, so a record is counted once."""

    def __init__(self, record: Any, *, file: str | Path, where: str, problems: Problems) -> None:
        self.record = record
        self.file = file
        self.where = where
        self.problems = problems
        self.bad = False
        if not isinstance(record, dict):
            self.fail(f"expected a JSON object, got {_type(record)} {_short(record)}")

    def fail(self, reason: str) -> None:
        if not self.bad:
            self.bad = True
            self.problems.add(reason, file=self.file, record=self.where)

    def has(self, key: str) -> bool:
        return not self.bad and key in self.record

    def keys(self) -> list[str]:
        return sorted(self.record) if isinstance(self.record, dict) else []

    def _get(self, key: str, *, optional: bool) -> Any:
        if self.bad:
            return _MISSING
        if key not in self.record or (optional and self.record[key] is None):
            if not optional:
                self.fail(f"missing field '{key}' (fields found: {self.keys()})")
            return _MISSING
        return self.record[key]

    def str(self, key: str, *, optional: bool = False) -> str | None:
        """A non-blank string."""
        value = self._get(key, optional=optional)
        if value is _MISSING:
            return None
        if not isinstance(value, str):
            self.fail(f"field '{key}' must be a string, got {_type(value)} {_short(value)}")
            return None
        if not value.strip():
            self.fail(f"field '{key}' is empty")
            return None
        return value

    def str_list(self, key: str, *, optional: bool = False, captions: bool = False) -> list[str] | None:
        """A list of strings; with ``captions=True`` an empty list is a problem (blank strings are kept:
        released data has them, and they are part of the official ground truth)."""
        value = self._get(key, optional=optional)
        if value is _MISSING:
            return None
        if not isinstance(value, list):
            self.fail(f"field '{key}' must be a list of strings, got {_type(value)} {_short(value)}")
            return None
        if not value and captions:
            self.fail(f"field '{key}' is an empty caption list (each pair needs at least one reference)")
            return None
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.fail(f"field '{key}' item {i} must be a string, got {_type(item)} {_short(item)}")
                return None
        return list(value)


class PathGuard:
    """Joins annotation paths onto ``base`` and rejects any that leave it (absolute, ``../``, or a symlinked
    file or folder pointing elsewhere). ``base`` itself (the dataset root or its image folder, chosen by the
    user) may be a symlink: only what the annotation adds is checked. Folders are resolved once each."""

    def __init__(self, base: str | Path) -> None:
        self.base = os.path.realpath(base)
        self._folders: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        if not name or "\x00" in name:
            raise ValueError(f"invalid path {name!r}")
        if os.path.isabs(name):
            raise ValueError(f"path {name!r} is absolute; annotation paths must be relative to {self.base}")
        head, tail = os.path.split(os.path.join(self.base, name))
        if tail in ("", ".", ".."):
            raise ValueError(f"path {name!r} does not name a file")
        if head not in self._folders:
            self._folders[head] = os.path.realpath(head)
        path = os.path.join(self._folders[head], tail)
        if os.path.islink(path):
            path = os.path.realpath(path)
        if not path.startswith(self.base + os.sep):
            raise ValueError(f"path {name!r} escapes the dataset folder {self.base} (resolves to {path})")
        return path


def resolve_inside(base: str | Path, name: str) -> str:
    """``PathGuard(base)(name)`` for one path."""
    return PathGuard(base)(name)


# ------------------------------------------------------------------------------------------------ records
class PairRecord(NamedTuple):
    """One indexed pair: what the annotation files say, before any image is opened.

    (A NamedTuple with ``str`` paths: indexing CLEVR-Change builds 80k of these, and dataclasses/``Path`` objects
    made that take seconds.)
    """

    pair_id: str
    before: str  # image file paths
    after: str
    captions: tuple[str, ...]  # () only when inspecting without the caption file
    categories: tuple[str, ...] = ()
    source: str = ""  # where it came from, for error messages ("splits.json test id 123")
    swapped: tuple[str, str] | None = None  # train-time swap alternative (before, after): CLEVR-Change
    swap_key: str = ""  # pairs with the same key swap together in an epoch (CLEVR-Change: the scene)
    instructions: tuple[str, ...] = ()  # one per caption, same order (LLaVA-style files); () = none
    subset: str = ""  # the part of the benchmark it belongs to, scored separately (OmniDiff: real / render)

    @property
    def files(self) -> tuple[str, ...]:
        return (self.before, self.after, *(self.swapped or ()))


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


# ------------------------------------------------------------------------------------------------ loading
# The seeded, resumable per-epoch order (``epoch * n + index`` keys) lives in datamodules/samplers.py, shared by
# every DataModule; the old name stays importable.
EpochSampler = ResumableSampler


def per_caption(records: Sequence[PairRecord]) -> list[PairRecord]:
    """One training record per reference (``data.sample_per=caption``), each with its own instruction."""
    out = []
    for record in records:
        for i, caption in enumerate(record.captions):
            instructions = (record.instructions[i],) if record.instructions else ()
            out.append(record._replace(captions=(caption,), instructions=instructions))
    return out


class RecordDataset(Dataset):
    """Records -> contract samples. Keys may carry the epoch (see :class:`EpochSampler`)."""

    def __init__(
        self,
        records: Sequence[PairRecord],
        *,
        benchmark: str,
        transform: ImageTransform,
        on_error: str = "raise",
        max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
        swap_prob: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.records = list(records)
        self.benchmark = benchmark
        self.transform = transform
        self.on_error = on_error
        self.max_pixels = max_pixels
        self.swap_prob = swap_prob
        self.seed = seed
        self.unreadable: set[int] = set()  # indices found unreadable in this process (skip policy)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int) -> PairSample:
        epoch, index = divmod(int(key), len(self.records))
        return self.get(index, epoch)

    def get(self, index: int, epoch: int = 0) -> PairSample:
        """Sample ``index``; under ``skip`` an unreadable pair is replaced by the next readable one."""
        n = len(self.records)
        for step in range(min(n, MAX_SUBSTITUTIONS)):
            i = (index + step) % n
            if i in self.unreadable:
                continue
            try:
                return self._load(self.records[i], epoch)
            except DataError as err:
                if self.on_error == "raise":
                    raise
                self.unreadable.add(i)
                log.warning(
                    "%s -- data.on_error=skip: substituted the next readable pair (%d unreadable pair(s) so far "
                    "in this process)",
                    err,
                    len(self.unreadable),
                )
        raise DataError(f"no readable pair among {min(n, MAX_SUBSTITUTIONS)} tried from index {index}")

    def swaps(self, record: PairRecord, epoch: int) -> bool:
        """Deterministic in (seed, epoch, swap key): reproducible with any number of workers."""
        if record.swapped is None or self.swap_prob <= 0:
            return False
        return random.Random(f"{self.seed}:{epoch}:{record.swap_key}").random() < self.swap_prob

    def _load(self, record: PairRecord, epoch: int) -> PairSample:
        before, after = record.swapped if self.swaps(record, epoch) else (record.before, record.after)
        tensors = []
        for path in (before, after):
            try:
                tensors.append(self.transform(load_image(path, max_pixels=self.max_pixels)))
            except ImageLoadError as err:
                raise DataError(
                    err.reason, file=path, record=f"pair {record.pair_id!r} ({record.source})"
                ) from None
        sample: PairSample = {
            "pair_id": record.pair_id,
            "before": tensors[0],
            "after": tensors[1],
            "captions": list(record.captions),
            "categories": list(record.categories),
            "benchmark": self.benchmark,
        }
        if record.subset:
            sample["subset"] = record.subset
        if record.instructions and record.instructions[0]:
            # the pair's own prompt (a training sample: its caption's; an evaluation pair: its first record's)
            sample["instruction"] = record.instructions[0]
        return sample


# ------------------------------------------------------------------------------------------------ module
@dataclass
class SplitReport:
    """What ``make data-info`` prints for one split."""

    pairs: int = 0
    unique_ids: int = 0
    references: int | None = 0  # None: the caption file is missing, references unknown
    blank_references: int = 0
    categories: dict[str, int] = field(default_factory=dict)
    subsets: dict[str, int] = field(
        default_factory=dict
    )  # pairs per subset (data.subsets), when there are any
    missing_images: int | None = (
        None  # distinct image files not found; None: not checked (--check-images=none)
    )
    problems: list[str] = field(default_factory=list)


@dataclass
class RecordDataConfig(PairDataConfig):
    """Keys of every benchmark read from annotation files."""

    # Images with more pixels are refused (decompression-bomb limit); null = Pillow's.
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
    # pair: one training sample per pair and epoch, a reference drawn per step | caption: every reference a sample
    sample_per: str = "pair"


class RecordDataModule(PairDataModule):
    """Base of the real-benchmark DataModules: subclasses implement :meth:`index` (annotation parsing).

    Args (keyword-only, on top of :class:`PairDataModule`'s):
        max_image_pixels: images with more pixels are refused (decompression-bomb limit); ``null`` = Pillow's.
        sample_per: what one training sample is: ``pair`` (one per pair and epoch, a reference drawn per step) or
            ``caption`` (every reference is a sample of its own: the epoch counts captions, as the paper's 896K).
            Evaluation is per pair either way.
    """

    benchmark = "records"
    config_class = RecordDataConfig
    splits: tuple[str, ...] = SPLITS
    train_swap_prob: float = 0.0  # CLEVR-Change sets this from its config

    def __init__(
        self,
        *,
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
        sample_per: str = "pair",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if sample_per not in SAMPLE_PER:
            raise ValueError(f"data.sample_per must be one of {list(SAMPLE_PER)}, got {sample_per!r}")
        self.sample_per = sample_per
        if not self.root:
            raise ConfigError(
                f"data.root is not set: point it at the {self.benchmark} folder "
                f"(make ... DATA={self.benchmark} ARGS='data.root=/path/to/{self.benchmark}')"
            )
        self.root_path = Path(self.root).expanduser()
        if not self.root_path.is_dir():
            raise DataError(
                f"dataset folder not found: set ROOT= (data.root) to the {self.benchmark} folder you downloaded",
                file=self.root_path,
            )
        self.max_image_pixels = max_image_pixels
        self._records: dict[str, list[PairRecord]] = {}
        self.skipped: dict[str, int] = {}  # split -> records dropped under on_error=skip

    # ---------------------------------------------------------------- to implement per benchmark
    def index(self, split: str, problems: Problems) -> list[PairRecord]:
        """Parse the annotation files of ``split`` into records, in file order. Report record-level problems
        through ``problems`` (and drop the record when ``add`` returns); raise :class:`DataError` for
        file-level ones (``problems.missing_file`` for a missing caption file)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- public
    def has_split(self, split: str) -> bool:
        """``False`` when the split is not one of this benchmark's or its annotation file is absent (an
        unreadable file still raises: that is an error, not an absent split)."""
        return self.missing_split(split) is None

    def missing_split(self, split: str) -> str | None:
        """Why ``split`` is absent (one line), or ``None`` if it has pairs."""
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
            problems = Problems(self.on_error)
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
                max_pixels=self.max_image_pixels,
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
        problems = Problems(self.on_error)
        # Under skip, evaluation images are decoded now so a bad pair is dropped, never substituted.
        decode = self.on_error == "skip" and split != "train"
        records = check_image_files(records, problems, decode=decode, max_pixels=self.max_image_pixels)
        problems.warn(f"{self.benchmark} {split} images", kept=len(records))
        self.skipped[split] = self.skipped.get(split, 0) + len(problems)
        self._records[split] = records  # the ground truth is what is evaluated: without dropped pairs
        if split == "train":
            records = self._drop_blank_captions(records)
            if self.sample_per == "caption":
                records = per_caption(records)
        if not records:
            raise DataError(f"no usable pairs in split '{split}'", file=self.root_path)
        return RecordDataset(
            records,
            benchmark=self.benchmark,
            transform=self.transform,
            on_error=self.on_error,
            max_pixels=self.max_image_pixels,
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
