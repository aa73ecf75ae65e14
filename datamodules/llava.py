"""LLaVA-style multi-image instruction files (the form of M³Diff's released training set).

A JSON list, or JSON Lines (``.jsonl``), of records::

    {"id": "omni_00017",                                   unique within the file (a number is read as text)
     "image": ["scenes/017_a.jpg", "scenes/017_b.jpg"],     exactly two: before, after (``images`` also read);
                                                            relative to data.root (data.image_dir), inside it
     "conversations": [
        {"from": "human", "value": "<image>\\n<image>\\nDescribe what changed between the two images."},
        {"from": "gpt",   "value": "The red mug on the left of the table is gone ..."}]}

The human turn holds exactly two ``<image>`` placeholders (one per image) and the instruction; the gpt turn that
follows holds the caption. One exchange per record (a ``system`` turn before it is allowed and ignored);
``user`` / ``assistant`` are read as ``human`` / ``gpt``.

**Training**: each record is one sample: its caption, with its instruction (the human turn without the
placeholders) in the sample's optional ``instruction`` key, which a model with a chat template uses as the user
turn's text (``data.sample_per: caption``, this format's default). **Evaluation**: records showing the same two
images are one pair whose references are all their captions (file order); its id is the first record's ``id``, its
instruction the first record's. ``data.sample_per: pair`` trains on merged pairs instead (a reference is drawn per
step; the instruction is then the pair's first).

Where the files are (``data.annotations``): relative to the root, ``{split}`` for one file per split (the default,
``{split}.json``); a name without ``{split}`` is one file holding the ``data.default_split`` split only (M³Diff's
release is one training file). A split whose file is absent has no pairs (a mixture leaves it out of validation).

Errors name the file and record: not two images, no gpt turn (or none after the human turn), a placeholder count
other than two, a path leaving the root, a duplicate id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datamodules.annotations import Fields, PairRecord, PathGuard, read_records
from datamodules.base import SPLITS, check_choice
from datamodules.errors import MissingFile, Problems
from datamodules.records import RecordDataConfig, RecordDataModule
from datamodules.registry import register_datamodule

PLACEHOLDER = "<image>"
HUMAN, GPT, SYSTEM = ("human", "user"), ("gpt", "assistant"), ("system",)


def instruction_text(value: str) -> str:
    """The human turn without its ``<image>`` placeholders: ``"<image>\\n<image>\\nWhat changed?"`` ->
    ``"What changed?"`` (whitespace left by a placeholder is collapsed)."""
    text = re.sub(r"[ \t]*<image>[ \t]*\n?", " ", value)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


@dataclass
class LlavaConfig(RecordDataConfig):
    name: str = "llava"
    # Relative to root; "{split}" = one file per split (.json list or .jsonl).
    annotations: str = "{split}.json"
    image_dir: str | None = None  # image paths are relative to root/<image_dir>; null = root
    default_split: str = "train"  # the split of a single file named without "{split}"
    sample_per: str = "caption"  # every record is a training sample (with its own instruction)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("default_split", self.default_split, SPLITS)


@register_datamodule("llava")
class LlavaDataModule(RecordDataModule):
    """LLaVA-style instruction files; ``config``: a :class:`LlavaConfig` (``conf/data/llava.yaml``)."""

    benchmark = "llava"
    config_class = LlavaConfig
    config: LlavaConfig

    def annotation_file(self, split: str) -> Path:
        annotations, default_split = self.config.annotations, self.config.default_split
        if "{split}" not in annotations and split != default_split:
            raise MissingFile(
                f"no '{split}' split: data.annotations={annotations!r} holds the "
                f"'{default_split}' split only (use '{{split}}' in the name for one file per split)",
                file=self.root_path / annotations,
            )
        path = self.root_path / annotations.format(split=split)
        if not path.is_file():
            raise MissingFile(f"annotation file of split '{split}' not found (data.annotations)", file=path)
        return path

    def index(self, split: str, problems: Problems) -> list[PairRecord]:
        path = self.annotation_file(split)
        image_dir = self.config.image_dir
        guard = PathGuard(self.root_path / image_dir if image_dir else self.root_path)
        pairs: dict[tuple[str, str], dict[str, Any]] = {}
        first: dict[str, str] = {}
        for where, item in read_records(path, problems):
            fields = Fields(item, file=path, where=where, problems=problems)
            record_id = self._id(fields)
            images = self._images(fields)
            exchange = self._exchange(fields)
            if fields.bad:
                continue
            if record_id in first:
                fields.fail(f"duplicate id {record_id!r} (first at {first[record_id]})")
                continue
            try:
                files = (guard(images[0]), guard(images[1]))
            except ValueError as err:
                fields.fail(f"field 'image': {err}")
                continue
            first[record_id] = where
            instruction, caption = exchange
            pair = pairs.setdefault(
                files, {"id": record_id, "where": where, "captions": [], "instructions": []}
            )
            pair["captions"].append(caption)
            pair["instructions"].append(instruction)
        return [
            PairRecord(
                pair_id=pair["id"],
                before=files[0],
                after=files[1],
                captions=tuple(pair["captions"]),
                instructions=tuple(pair["instructions"]),
                source=f"{path.name} {pair['where']}, id {pair['id']!r}",
            )
            for files, pair in pairs.items()
        ]

    # ------------------------------------------------------------------ one record's fields
    @staticmethod
    def _id(fields: Fields) -> str | None:
        value = fields.record.get("id") if not fields.bad else None
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return fields.str("id")

    @staticmethod
    def _images(fields: Fields) -> list[str] | None:
        key = "images" if fields.has("images") and not fields.has("image") else "image"
        if fields.has(key) and isinstance(fields.record[key], str):
            fields.fail(f"field '{key}' is one image path; expected a list of two: [before, after]")
            return None
        images = fields.str_list(key)
        if images is not None and len(images) != 2:
            fields.fail(f"field '{key}' has {len(images)} image(s); expected two: [before, after]")
            return None
        return images

    @staticmethod
    def _exchange(fields: Fields) -> tuple[str, str] | None:
        """(instruction, caption) of the record's one human -> gpt exchange."""
        if fields.bad or not fields.has("conversations"):
            fields.fail("missing field 'conversations' (a list of {'from', 'value'} turns)")
            return None
        turns = fields.record["conversations"]
        if not isinstance(turns, list) or not all(
            isinstance(t, dict) and isinstance(t.get("from"), str) and isinstance(t.get("value"), str)
            for t in turns
        ):
            fields.fail("field 'conversations' must be a list of {'from': str, 'value': str} turns")
            return None
        roles = [t["from"].lower() for t in turns]
        unknown = sorted({r for r in roles if r not in (*HUMAN, *GPT, *SYSTEM)})
        if unknown:
            fields.fail(
                f"conversations: unknown role(s) {unknown}; expected human/user, gpt/assistant, system"
            )
            return None
        talk = [(r, t["value"]) for r, t in zip(roles, turns) if r not in SYSTEM]
        if not talk or talk[0][0] not in HUMAN:
            fields.fail("conversations: no human turn before the first gpt turn (the instruction)")
            return None
        if len(talk) < 2 or talk[1][0] not in GPT:
            fields.fail(
                "conversations: no gpt turn after the human turn (the caption to train on and score against)"
            )
            return None
        if len(talk) > 2:
            fields.fail(
                f"conversations: {len(talk)} turns; one human -> gpt exchange per record is supported"
            )
            return None
        question, answer = talk[0][1], talk[1][1]
        placeholders = question.count(PLACEHOLDER)
        if placeholders != 2:
            fields.fail(
                f"the human turn has {placeholders} '{PLACEHOLDER}' placeholder(s); expected 2, one per image"
            )
            return None
        if not answer.strip():
            fields.fail("the gpt turn is empty (no caption)")
            return None
        return instruction_text(question), answer.strip()
