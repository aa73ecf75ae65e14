"""Birds-to-Words (Forbes et al., EMNLP 2019): paragraph-length comparisons of two iNaturalist bird photos.

Read as released by google-research-datasets/birds-to-words: one tab-separated file,
``birds-to-words-v1.0.tsv``, with a header row and one row per description, eleven columns::

    img1ObservationURL img1ImgURL img1Species img1Selection
    img2ObservationURL img2ImgURL img2Species img2Selection split annN description

``split`` is ``train`` / ``val`` / ``test``; ``annN`` numbers the (up to five) descriptions of one image pair, one
per row. The rows of one (img1, img2) pair make one pair here, their descriptions its references in file order.
Image 1 (the left one, "animal 1") is the "before" image, image 2 the "after" one.

**Images** are not part of the release: the user downloads them from the ``img1ImgURL`` / ``img2ImgURL`` columns.
The naming rule is the iNaturalist *photo id*, the number after ``/photos/`` in the image URL, saved under
``<root>/images/`` (``data.image_dir``)::

    https://static.inaturalist.org/photos/5595152/medium.jpg?1479246390  ->  images/5595152.jpg

``.jpg``, ``.jpeg`` and ``.png`` (any case) are found; a photo with none of them is expected as
``images/<photo id>.jpg``, and ``make data-info DATA=birds_to_words ROOT=...`` lists those still missing.

**Evaluation id**: ``"<photo id 1>_<photo id 2>"``, from the URLs, so it does not depend on row order or on
which rows a copy of the file keeps.

**Duplicates**: a row repeated verbatim (all eleven columns) is read once; ``make data-info`` lists it.

**Parsing**: one row per line, columns split at tabs (descriptions hold no tabs or line breaks); a field written
CSV-style in double quotes (``"..."`` with ``""`` inside, as spreadsheet exports write it) is unquoted.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datamodules.annotations import PairRecord, PathGuard, decode_utf8, read_bytes
from datamodules.base import SPLITS
from datamodules.errors import DataError, Problems
from datamodules.records import RecordDataConfig, RecordDataModule
from datamodules.registry import register_datamodule

COLUMNS = (
    "img1ObservationURL",
    "img1ImgURL",
    "img1Species",
    "img1Selection",
    "img2ObservationURL",
    "img2ImgURL",
    "img2Species",
    "img2Selection",
    "split",
    "annN",
    "description",
)
TSV_NAME = "birds-to-words-v1.0.tsv"
PHOTO_ID = re.compile(r"/photos/(\d+)(?:[/?#.]|$)")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def unquote(field: str) -> str:
    """``"a ""b"" c"`` -> ``a "b" c`` (a CSV-quoted field); anything else unchanged."""
    if len(field) >= 2 and field[0] == field[-1] == '"':
        return field[1:-1].replace('""', '"')
    return field


def photo_id(row: dict[str, str], image: int) -> str | None:
    """The iNaturalist photo id of image 1 or 2: from its image URL, else from its observation URL."""
    for column in (f"img{image}ImgURL", f"img{image}ObservationURL"):
        match = PHOTO_ID.search(row[column])
        if match:
            return match.group(1)
    return None


def read_tsv(path: Path) -> list[tuple[int, dict[str, str] | str]]:
    """``[(line number, row dict | why the line is unreadable), ...]``; header problems are file-level errors."""
    text = decode_utf8(read_bytes(path), file=path)
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.strip())  # read_bytes refused a blank file
    header = [unquote(h.strip()) for h in lines[start].rstrip("\r").split("\t")]
    absent = [c for c in COLUMNS if c not in header]
    if absent:
        raise DataError(
            f"line {start + 1}: not the Birds-to-Words header: column(s) {absent} missing "
            f"(found {header}; expected the eleven tab-separated columns {list(COLUMNS)})",
            file=path,
        )
    rows: list[tuple[int, dict[str, str] | str]] = []
    for number, line in enumerate(lines[start + 1 :], start + 2):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            rows.append(
                (
                    number,
                    f"{len(fields)} tab-separated fields, expected {len(header)} "
                    "(a tab or a line break inside a description?)",
                )
            )
            continue
        rows.append((number, {h: unquote(f) for h, f in zip(header, fields)}))
    return rows


def row_problem(row: dict[str, str]) -> str | None:
    """What is wrong with a row of the release (its split, photo ids, annotator number), or None."""
    if row["split"] not in SPLITS:
        return f"column 'split' must be one of {list(SPLITS)}, got {row['split']!r}"
    for image in (1, 2):
        if photo_id(row, image) is None:
            return (
                f"no iNaturalist photo id ('/photos/<number>') in img{image}ImgURL "
                f"{row[f'img{image}ImgURL']!r} or img{image}ObservationURL"
            )
    if not row["annN"].strip().isdigit():
        return f"column 'annN' must be a whole number, got {row['annN']!r}"
    return None


@dataclass
class BirdsToWordsConfig(RecordDataConfig):
    name: str = "birds_to_words"
    annotations: str = TSV_NAME  # the tsv, relative to root
    # <photo id>.jpg / .jpeg / .png, the id being the number after /photos/ in the URL
    image_dir: str = "images"


@register_datamodule("birds_to_words")
class BirdsToWordsDataModule(RecordDataModule):
    """Birds-to-Words; ``config``: a :class:`BirdsToWordsConfig` (``conf/data/birds_to_words.yaml``)."""

    benchmark = "birds_to_words"
    config_class = BirdsToWordsConfig
    config: BirdsToWordsConfig

    def __init__(self, config: BirdsToWordsConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._rows: list[tuple[int, dict[str, str] | str]] | None = None

    @property
    def tsv(self) -> Path:
        return self.root_path / self.config.annotations

    def rows(self) -> list[tuple[int, dict[str, str] | str]]:
        """The parsed tsv (read once for all splits)."""
        if self._rows is None:
            self._rows = read_tsv(self.tsv)
        return self._rows

    def image_names(self) -> dict[str, str]:
        """photo id -> the file name found for it in the image folder (one directory listing, no image opened)."""
        folder = self.root_path / self.config.image_dir
        found: dict[str, str] = {}
        try:
            entries = sorted(os.listdir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return found
        for name in entries:
            stem, ext = os.path.splitext(name)
            if ext.lower() in IMAGE_EXTENSIONS and stem.isdigit():
                found.setdefault(stem, name)
        return found

    def index(self, split: str, problems: Problems) -> list[PairRecord]:
        path = self.tsv
        guard = PathGuard(self.root_path)
        names = self.image_names()
        pairs: dict[str, dict[str, Any]] = {}
        seen: dict[tuple[str, ...], int] = {}  # row -> its first line
        for number, row in self.rows():
            where = f"line {number}"
            if isinstance(row, str):
                problems.add(row, file=path, record=where)
                continue
            first = seen.setdefault(tuple(row.values()), number)
            if first != number:  # the same description twice would be two references of the pair
                if row["split"] == split:
                    problems.note(f"repeats line {first} verbatim; read once", file=path, record=where)
                continue
            # A row of another split is checked only for its split's name (its own split reports the rest).
            in_scope = row["split"] not in SPLITS or row["split"] == split
            if in_scope and (problem := row_problem(row)) is not None:
                problems.add(problem, file=path, record=where)
                continue
            if row["split"] != split:
                continue
            ids = (photo_id(row, 1), photo_id(row, 2))
            pair_id = f"{ids[0]}_{ids[1]}"
            if pair_id not in pairs:
                try:
                    files = [
                        guard(os.path.join(self.config.image_dir, names.get(i, f"{i}.jpg"))) for i in ids
                    ]
                except ValueError as err:
                    problems.add(f"data.image_dir: {err}", file=path, record=where)
                    continue
                pairs[pair_id] = {"files": files, "captions": [], "where": where}
            pairs[pair_id]["captions"].append(row["description"])
        return [
            PairRecord(
                pair_id=pair_id,
                before=pair["files"][0],
                after=pair["files"][1],
                captions=tuple(pair["captions"]),
                source=f"{path.name} {pair['where']}",
            )
            for pair_id, pair in pairs.items()
        ]
