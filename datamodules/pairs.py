"""Bring your own pairs: the kit's generic annotation format (also what the embedded benchmark's export writes).

A JSON list, or JSON Lines (``.jsonl``, one object per line), of records::

    {"id": "kitchen_003",                     unique within its split; the evaluation id (a number is read as text)
     "before": "images/kitchen_003_a.jpg",    relative to the data root, and must stay inside it
     "after": "images/kitchen_003_b.jpg",
     "captions": ["the red mug is gone", ...], at least one reference; every one is used in evaluation
     "categories": ["disappearance"],         optional: change categories (scored per category when configured)
     "split": "test"}                         optional: train | val | test (default: data.default_split)

Subsets (``data.subsets``, optional): parts of a benchmark scored separately, like categories (OmniDiff's Real and
Render). Each subset is a glob, matched case-insensitively against the ``before`` path (``data.subset_by: path``)
or against a record field's value (``data.subset_by: field:<name>``); a record matching none is in no subset, one
matching two is an error. E.g. ``subsets: {real: "*real*", render: "*render*"}`` or, with ``subset_by:
field:source``, ``{real: real, render: render}``.

Where the file is (``data.annotations``): a path relative to the root, containing ``{split}`` for one file per
split (``"{split}.jsonl"``); ``null`` searches ``pairs.json``, ``pairs.jsonl``, ``annotations.json`` (what
``make synth`` writes), ``annotations.jsonl``, ``{split}.json``, ``{split}.jsonl`` in that order. Records of a
one-file-per-split file belong to that split. Images can be any format Pillow reads; they are converted to RGB
and resized to the model's square input.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datamodules.annotations import Fields, PairRecord, PathGuard, first_existing, read_records
from datamodules.base import SPLITS, check_choice
from datamodules.errors import ConfigError, Problems
from datamodules.records import RecordDataConfig, RecordDataModule
from datamodules.registry import register_datamodule

# canonical field -> the names it may have in a file (the pairs format: exactly one each)
FIELD_NAMES: Mapping[str, tuple[str, ...]] = {
    "id": ("id",),
    "before": ("before",),
    "after": ("after",),
    "captions": ("captions",),
    "categories": ("categories",),
    "split": ("split",),
}
REQUIRED = ("id", "before", "after", "captions")
SEARCH = (
    "pairs.json",
    "pairs.jsonl",
    "annotations.json",
    "annotations.jsonl",
    "{split}.json",
    "{split}.jsonl",
)


@dataclass
class PairsConfig(RecordDataConfig):
    name: str = "pairs"
    # The annotation file relative to root, "{split}" for one file per split; null = the first of
    # pairs.json(l), annotations.json(l) (make synth), {split}.json(l).
    annotations: str | None = None
    default_split: str = "train"  # split of records without a "split" field
    # Parts scored separately: name -> glob on the before path (or on a field's value, with subset_by:
    # "field:<name>"), e.g. {real: "*real*", render: "*render*"}.
    subsets: dict[str, str] = field(default_factory=dict)
    subset_by: str = "path"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("default_split", self.default_split, SPLITS)
        if self.subset_by != "path" and not (self.subset_by.startswith("field:") and subset_field(self)):
            raise ConfigError(f"data.subset_by must be 'path' or 'field:<name>', got {self.subset_by!r}")


def subset_field(config: PairsConfig) -> str | None:
    """The record field ``data.subset_by: field:<name>`` names (``None``: subsets match the before path)."""
    return None if config.subset_by == "path" else config.subset_by.removeprefix("field:").strip()


@register_datamodule("pairs")
class PairsDataModule(RecordDataModule):
    """Bring your own pairs; ``config``: a :class:`PairsConfig` (``conf/data/pairs.yaml``)."""

    benchmark = "pairs"
    config_class = PairsConfig
    config: PairsConfig
    # Subclasses reading other schemas (OmniDiff) widen these.
    field_names: Mapping[str, tuple[str, ...]] = FIELD_NAMES
    single_values: bool = False  # accept "captions": "text" / "categories": "label" as one-item lists

    def __init__(self, config: PairsConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.subsets = {str(k): str(v) for k, v in config.subsets.items()}  # the hook (datamodules.contract)
        self.subset_field = subset_field(config)

    def annotation_file(self, split: str) -> tuple[Path, bool]:
        """(path, one file per split?)"""
        patterns = (self.config.annotations,) if self.config.annotations else SEARCH
        path = first_existing(
            self.root_path,
            [p.format(split=split) for p in patterns],
            what=f"annotation file of split '{split}'",
            hint="set data.annotations",
        )
        pattern = next(p for p in patterns if self.root_path / p.format(split=split) == path)
        return path, "{split}" in pattern

    # ------------------------------------------------------------------ hooks for other schemas
    def match_fields(self, fields: Fields) -> dict[str, str | None]:
        """canonical -> the key this record uses (``None`` for an absent optional field)."""
        found: dict[str, str | None] = {}
        for canonical, names in self.field_names.items():
            found[canonical] = next((n for n in names if fields.has(n)), None)
            if found[canonical] is None and canonical in REQUIRED and not fields.bad:
                fields.fail(self.missing_field_message(canonical, fields))
        return found

    def missing_field_message(self, canonical: str, fields: Fields) -> str:
        return f"missing field '{canonical}' (fields found: {fields.keys()})"

    def map_categories(self, categories: list[str], fields: Fields) -> tuple[str, ...]:
        return tuple(categories)

    def subset(self, fields: Fields, before: str) -> str:
        """The record's subset under ``data.subsets`` ("" = none); two matches mark the record bad."""
        if not self.subsets:
            return ""
        value = before
        if self.subset_field is not None:
            value = fields.str(self.subset_field, optional=True) or ""
        matches = [
            name for name, glob in self.subsets.items() if fnmatch.fnmatchcase(value.lower(), glob.lower())
        ]
        if len(matches) > 1:
            what = f"field '{self.subset_field}'" if self.subset_field else "'before' path"
            fields.fail(
                f"{what} {value!r} matches subsets {matches} (data.subsets: make the patterns exclusive)"
            )
        return matches[0] if len(matches) == 1 else ""

    # ------------------------------------------------------------------ index
    def _list(self, fields: Fields, key: str | None, *, captions: bool) -> list[str] | None:
        if key is None:
            return []
        if self.single_values and isinstance(fields.record.get(key), str):
            value = fields.str(key)
            return None if value is None else [value]
        return fields.str_list(key, captions=captions)

    def _id(self, fields: Fields, key: str) -> str | None:
        value = fields.record.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return fields.str(key)

    def index(self, split: str, problems: Problems) -> list[PairRecord]:
        path, per_split = self.annotation_file(split)
        guard = PathGuard(self.root_path)
        records: list[PairRecord] = []
        first: dict[str, str] = {}
        for where, item in read_records(path, problems):
            fields = Fields(item, file=path, where=where, problems=problems)
            names = self.match_fields(fields)
            # The split decides first: another split's records are not this split's problems.
            stated = fields.str(names["split"], optional=True) if names["split"] else None
            if fields.bad:
                continue
            if stated is not None and stated not in SPLITS:
                fields.fail(f"field '{names['split']}' must be one of {list(SPLITS)}, got {stated!r}")
                continue
            if per_split and stated is not None and stated != split:
                fields.fail(f"record says split {stated!r} but is in the '{split}' file")
                continue
            if (stated or (split if per_split else self.config.default_split)) != split:
                continue
            pair_id = self._id(fields, names["id"])
            before = fields.str(names["before"])
            after = fields.str(names["after"])
            captions = self._list(fields, names["captions"], captions=True)
            categories = self._list(fields, names["categories"], captions=False)
            if fields.bad:
                continue
            mapped = self.map_categories(categories, fields)
            subset = self.subset(fields, before)
            if fields.bad:
                continue
            if pair_id in first:
                fields.fail(f"duplicate id {pair_id!r} in split '{split}' (first at {first[pair_id]})")
                continue
            try:
                before_path, after_path = guard(before), guard(after)
            except ValueError as err:
                fields.fail(str(err))
                continue
            first[pair_id] = where
            records.append(
                PairRecord(
                    pair_id=pair_id,
                    before=before_path,
                    after=after_path,
                    captions=tuple(captions),
                    categories=mapped,
                    subset=subset,
                    source=f"{path.name} {where}, id {pair_id!r}",
                )
            )
        return records
