"""CLEVR-DC (Kim et al., ICCV 2021): CLEVR scenes whose after-image camera moves, one of six actions per pair.

Two layouts are read (``data.layout``; ``auto`` picks by which image folders exist):

``raw`` (the official release: ``split.json`` + ``captions.json`` from hsgkim/clevr-dc, ``bef.tar.gz``/``aft.tar.gz``)::

    split.json      {"train": [int, ...], "val": [...], "test": [...]}    (ids 0..47999)
    captions.json   {"<int>": [caption, ...]}
    bef/<int>.png   aft/<int>.png                                         (not zero-padded)

``renamed`` (the DIRL preparation that most follow-up work uses)::

    splits.json  change_captions.json {"%06d.png": [...]}  images/%06d.png  sc_images/%06d.png

Either caption file and either key form is accepted in both layouts. The evaluation id is ``"%06d.png"`` for every
pair (distractors included: CLEVR-DC has no ``_n`` ids).

Change categories: the ids form blocks of ``block_size`` (8000), one per action. The ORDER of the actions across
blocks is UNVERIFIED (no type file is released); ``block_types`` defaults to the order of the official README
(color, texture, add, drop = "remove", move, distractor). Check it against a few captions of your download
(``make data-info``) and set ``data.block_types`` if it differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datamodules.annotations import Fields, PairRecord, first_existing, read_json_dict, split_ids
from datamodules.base import check_choice
from datamodules.errors import ConfigError, Problems
from datamodules.records import RecordDataConfig, RecordDataModule
from datamodules.registry import register_datamodule

README_BLOCK_ORDER = ("color", "texture", "add", "drop", "move", "distractor")
LAYOUTS = ("auto", "raw", "renamed")


@dataclass
class ClevrDCConfig(RecordDataConfig):
    name: str = "clevr_dc"
    categories: list[str] = field(default_factory=lambda: list(README_BLOCK_ORDER))
    groups: dict[str, list[str]] = field(
        default_factory=lambda: {"semantic": ["color", "texture", "add", "drop", "move"]}
    )
    # auto | raw (bef/<int>.png, aft/<int>.png) | renamed (images/%06d.png, sc_images/%06d.png)
    layout: str = "auto"
    # UNVERIFIED: the action of each block of block_size ids. Default = the order the official README lists
    # them; check a few captions per block with `make data-info` on your download and reorder if needed.
    block_types: list[str] = field(default_factory=lambda: list(README_BLOCK_ORDER))
    block_size: int = 8000

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("layout", self.layout, LAYOUTS)
        if self.block_size <= 0 or not self.block_types:
            raise ConfigError("data.block_size must be positive and data.block_types non-empty")


@register_datamodule("clevr_dc")
class ClevrDCDataModule(RecordDataModule):
    """CLEVR-DC; ``config``: a :class:`ClevrDCConfig` (``conf/data/clevr_dc.yaml``)."""

    benchmark = "clevr_dc"
    config_class = ClevrDCConfig
    config: ClevrDCConfig

    def resolved_layout(self) -> str:
        if self.config.layout != "auto":
            return self.config.layout
        # The renamed layout only when its folder is there; otherwise the release form (also with no images).
        return (
            "renamed"
            if (self.root_path / "images").is_dir() and not (self.root_path / "bef").is_dir()
            else "raw"
        )

    def image_paths(self, pair: int, layout: str | None = None) -> tuple[str, str]:
        root = self.root_path
        if (layout or self.resolved_layout()) == "raw":
            return f"{root}/bef/{pair}.png", f"{root}/aft/{pair}.png"
        return f"{root}/images/{pair:06d}.png", f"{root}/sc_images/{pair:06d}.png"

    def index(self, split: str, problems: Problems) -> list[PairRecord]:
        split_file = first_existing(self.root_path, ("split.json", "splits.json"), what="split file")
        captions, caption_file = self._captions(problems)
        layout = self.resolved_layout()
        block_types, block_size = self.config.block_types, self.config.block_size
        records: list[PairRecord] = []
        for pair, where in split_ids(split_file, split, problems):
            block = pair // block_size
            if block >= len(block_types):
                problems.add(
                    f"id {pair} is beyond the {len(block_types)} blocks of {block_size} "
                    "(data.block_types / data.block_size)",
                    file=split_file,
                    record=where,
                )
                continue
            if captions is not None and pair not in captions:
                problems.add(
                    f"id is in {split_file.name} {where} but has no captions",
                    file=caption_file,
                    record=f"id {pair}",
                )
                continue
            found = self._references(captions, pair, caption_file, problems)
            if found is None:
                continue
            before, after = self.image_paths(pair, layout)
            records.append(
                PairRecord(
                    pair_id=f"{pair:06d}.png",
                    before=before,
                    after=after,
                    captions=found,
                    categories=(block_types[block],),
                    source=f"{split_file.name} {where}, id {pair}",
                )
            )
        return records

    @staticmethod
    def _references(
        captions: dict[int, tuple[str, Any]] | None, pair: int, path: Path, problems: Problems
    ) -> tuple[str, ...] | None:
        """The captions of ``pair``; ``()`` when the caption file is missing (inspection), ``None`` after a
        problem."""
        if captions is None:
            return ()
        key, value = captions[pair]
        found = Fields({key: value}, file=path, where=f"key {key!r}", problems=problems).str_list(
            key, captions=True
        )
        return None if found is None else tuple(found)

    def _captions(self, problems: Problems) -> tuple[dict[int, tuple[str, Any]] | None, Path]:
        """int id -> (key as written, value), from ``captions.json`` or ``change_captions.json``."""
        path = first_existing(
            self.root_path, ("captions.json", "change_captions.json"), default="captions.json"
        )
        if not path.exists():
            problems.missing_file(
                "caption file not found (captions.json from hsgkim/clevr-dc, or DIRL's change_captions.json); "
                "references cannot be counted",
                file=path,
            )
            return None, path
        out: dict[int, tuple[str, Any]] = {}
        for key, value in read_json_dict(path, what="caption file").items():
            stem = key[:-4] if key.endswith(".png") else key
            if not stem.isdigit():
                problems.add('expected a key like "123" or "000123.png"', file=path, record=f"key {key!r}")
                continue
            if int(stem) in out:
                problems.add(f"same id as key {out[int(stem)][0]!r}", file=path, record=f"key {key!r}")
                continue
            out[int(stem)] = (key, value)
        return out, path
