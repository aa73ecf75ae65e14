"""Spot-the-Diff (Jhamtani & Berg-Kirkpatrick, EMNLP 2018), read as released by harsh19/spot-the-diff::

    annotations/{train,val,test}.json   [{"img_id": "256", "sentences": [str, ...]}, ...]
    resized_images/<img_id>.png          "before" (224 x 224)
    resized_images/<img_id>_2.png        "after"      (<img_id>_diff.jpg is ignored)

The same ``img_id`` can appear in several records (different annotators): they are merged, in file order, into
one pair whose references are every sentence of every record of that id. The evaluation id is
``"<img_id>.png"`` (CLIP4IDC's ground truth, ``eval-gt/spot_total_change_captions_reformat.json``).
``{split}.json`` directly in the root and an ``images/`` folder (CLIP4IDC's layout) are accepted too.

Blank sentences (``""``, a few records of the release) are kept: they are in the official ground truth. Training
does not use them as targets (see :meth:`RecordDataModule._drop_blank_captions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datamodules.annotations import Fields, PairRecord, PathGuard, first_existing, read_records
from datamodules.errors import Problems
from datamodules.records import RecordDataConfig, RecordDataModule
from datamodules.registry import register_datamodule


@dataclass
class SpotTheDiffConfig(RecordDataConfig):
    name: str = "spot_the_diff"
    image_dir: str | None = (
        None  # the image folder under the root; null = resized_images/ (or images/, CLIP4IDC's name)
    )


@register_datamodule("spot_the_diff")
class SpotTheDiffDataModule(RecordDataModule):
    """Spot-the-Diff; ``config``: a :class:`SpotTheDiffConfig` (``conf/data/spot_the_diff.yaml``)."""

    benchmark = "spot_the_diff"
    config_class = SpotTheDiffConfig
    config: SpotTheDiffConfig

    def image_folder(self) -> Path:
        if self.config.image_dir:
            return self.root_path / self.config.image_dir
        return first_existing(
            self.root_path, ("resized_images", "images"), folder=True, default="resized_images"
        )

    def annotation_file(self, split: str) -> Path:
        names = (f"annotations/{split}.json", f"{split}.json")
        return first_existing(self.root_path, names, what=f"annotation file of split '{split}'")

    def index(self, split: str, problems: Problems) -> list[PairRecord]:
        path = self.annotation_file(split)
        guard = PathGuard(self.image_folder())
        merged: dict[str, list[str]] = {}
        first: dict[str, str] = {}
        paths: dict[str, tuple[str, str]] = {}
        for where, item in read_records(path, problems):
            fields = Fields(item, file=path, where=where, problems=problems)
            img_id = fields.str("img_id")
            sentences = fields.str_list("sentences", captions=True)
            if fields.bad:
                continue
            if img_id not in paths:
                try:
                    paths[img_id] = (guard(f"{img_id}.png"), guard(f"{img_id}_2.png"))
                except ValueError as err:
                    problems.add(f"img_id: {err}", file=path, record=where)
                    continue
                first[img_id] = where
            merged.setdefault(img_id, []).extend(sentences)
        return [
            PairRecord(
                pair_id=f"{img_id}.png",
                before=paths[img_id][0],
                after=paths[img_id][1],
                captions=tuple(sentences),
                source=f"{path.name} {first[img_id]}, img_id {img_id!r}",
            )
            for img_id, sentences in merged.items()
        ]
