"""IEdit / Image Editing Request (Tan et al., ACL 2019), read as released by airsplay/VisualRelationships::

    {train,valid,test}.json   [{"img0": before file, "img1": after file, "sents": [str, ...], "uid": str}, ...]
    images/                   one flat folder with every image (jpg, png, JPG, jpeg and gif, mixed sizes)

``val.json`` is accepted for ``valid.json`` (FINER-MLLM's name). One sample per ``uid`` (the same image pair can
appear under several uids with different requests: each is its own sample and evaluation item); the evaluation
id is the uid. Every image is converted to 8-bit RGB (:func:`datamodules.images.load_image`; the gif too). The
text is kept raw (mixed case, punctuation): the official ground truth is raw too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datamodules.annotations import Fields, PairRecord, PathGuard, first_existing, read_records
from datamodules.errors import Problems
from datamodules.records import RecordDataConfig, RecordDataModule
from datamodules.registry import register_datamodule

SPLIT_FILES = {"train": ("train.json",), "val": ("valid.json", "val.json"), "test": ("test.json",)}


@dataclass
class IEditConfig(RecordDataConfig):
    name: str = "iedit"
    image_dir: str | None = (
        None  # the image folder under the root; null = images/ if it exists, else the root itself
    )


@register_datamodule("iedit")
class IEditDataModule(RecordDataModule):
    """IEdit; ``config``: an :class:`IEditConfig` (``conf/data/iedit.yaml``)."""

    benchmark = "iedit"
    config_class = IEditConfig
    config: IEditConfig

    def image_folder(self) -> Path:
        if self.config.image_dir:
            return self.root_path / self.config.image_dir
        return first_existing(self.root_path, ("images",), folder=True, default=".")

    def annotation_file(self, split: str) -> Path:
        return first_existing(self.root_path, SPLIT_FILES[split], what=f"annotation file of split '{split}'")

    def index(self, split: str, problems: Problems) -> list[PairRecord]:
        path = self.annotation_file(split)
        guard = PathGuard(self.image_folder())
        records: list[PairRecord] = []
        first: dict[str, str] = {}
        for where, item in read_records(path, problems):
            fields = Fields(item, file=path, where=where, problems=problems)
            uid = fields.str("uid")
            img0 = fields.str("img0")
            img1 = fields.str("img1")
            sents = fields.str_list("sents", captions=True)
            if fields.bad:
                continue
            if uid in first:
                problems.add(f"duplicate uid {uid!r} (first at {first[uid]})", file=path, record=where)
                continue
            try:
                before, after = guard(img0), guard(img1)
            except ValueError as err:
                problems.add(str(err), file=path, record=where)
                continue
            first[uid] = where
            records.append(
                PairRecord(
                    pair_id=uid,
                    before=before,
                    after=after,
                    captions=tuple(sents),
                    source=f"{path.name} {where}, uid {uid!r}",
                )
            )
        return records
