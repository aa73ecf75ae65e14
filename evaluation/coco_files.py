"""The COCO caption files the field's scripts read and write, and the atomic write that keeps them whole.

Reading is strict: a ground truth, prediction or category file that cannot be scored raises
:class:`ScoreInputError` naming the file and the record."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evaluation.report import SUBSET_KINDS

log = logging.getLogger("m3diff.score")


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import (os.umask can only be read by setting it)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder + ``os.replace``: a crash leaves
    either the old file or the new one, never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def coco_ground_truth(references: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The COCO caption ground truth the field's scripts read (RCC's "reformat" files), string ids."""
    images, annotations = [], []
    for pair_id, refs in references.items():
        images.append({"id": pair_id, "filename": pair_id})
        for caption in refs:
            annotations.append({"image_id": pair_id, "id": len(annotations), "caption": caption})
    return {
        "info": {"description": "dummy"},
        "licenses": {"url": "dummy"},
        "type": "captions",
        "images": images,
        "annotations": annotations,
    }


def coco_predictions(predictions: Mapping[str, str]) -> list[dict[str, str]]:
    """The COCO result list ``[{"image_id", "caption"}]``."""
    return [{"image_id": pair_id, "caption": caption} for pair_id, caption in predictions.items()]


class ScoreInputError(ValueError):
    """A GT / prediction / category file that cannot be scored; the message names the file and record."""


def _read_json(path: str | Path, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ScoreInputError(f"{what} file not found: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as err:
        raise ScoreInputError(
            f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from err
    except UnicodeDecodeError as err:
        raise ScoreInputError(f"{path}: not UTF-8 text ({err})") from err


def load_ground_truth(path: str | Path) -> dict[str, list[str]]:
    """COCO caption GT -> id (as str) -> references, in file order."""
    data = _read_json(path, "GT")
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise ScoreInputError(f"{path}: not a COCO caption file (needs an 'annotations' list)")
    refs: dict[str, list[str]] = {}
    raw: dict[str, Any] = {}
    for n, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or not isinstance(ann.get("caption"), str):
            raise ScoreInputError(
                f"{path}: annotations[{n}] needs 'image_id' and a string 'caption', got {ann!r:.200}"
            )
        key = str(ann["image_id"])
        if key in raw and raw[key] != ann["image_id"]:
            raise ScoreInputError(f"{path}: ids {raw[key]!r} and {ann['image_id']!r} collide as strings")
        raw[key] = ann["image_id"]
        refs.setdefault(key, []).append(ann["caption"])
    return refs


def load_predictions(path: str | Path) -> dict[str, str]:
    """COCO result list -> id (as str) -> caption; duplicate ids are an error (pycocoevalcap would assert)."""
    data = _read_json(path, "PRED")
    if not isinstance(data, list):
        raise ScoreInputError(f"{path}: predictions must be a JSON list of {{'image_id', 'caption'}}")
    preds: dict[str, str] = {}
    for n, rec in enumerate(data):
        if not isinstance(rec, dict) or "image_id" not in rec or not isinstance(rec.get("caption"), str):
            raise ScoreInputError(
                f"{path}: record [{n}] needs 'image_id' and a string 'caption', got {rec!r:.200}"
            )
        key = str(rec["image_id"])
        if key in preds:
            raise ScoreInputError(f"{path}: record [{n}]: a second prediction for id {rec['image_id']!r}")
        preds[key] = rec["caption"]
    return preds


def load_subsets(path: str | Path, known_ids: set[str]) -> dict[str, dict[str, list[str]]]:
    """A category mapping file -> ``{"categories": {name: ids}}`` (or the kinds of a kit ``subsets.json``)."""
    data = _read_json(path, "CATEGORIES")
    if not isinstance(data, dict) or not data:
        raise ScoreInputError(f"{path}: expected a non-empty JSON object")
    if all(isinstance(v, dict) for v in data.values()):  # the kit's own subsets.json
        unknown = sorted(set(data) - set(SUBSET_KINDS))
        if unknown:
            log.info("%s: extra subset kinds %s are scored too", path, unknown)
        return {kind: _name_to_ids(path, named, known_ids) for kind, named in data.items()}
    return {"categories": _name_to_ids(path, data, known_ids)}


def _name_to_ids(path: str | Path, data: Mapping[str, Any], known_ids: set[str]) -> dict[str, list[str]]:
    """category -> ids, or id -> category / categories (told apart by which side holds the GT ids)."""
    for key, value in data.items():
        if not isinstance(value, (str, list)) or (
            isinstance(value, list) and not all(isinstance(v, (str, int)) for v in value)
        ):
            raise ScoreInputError(
                f"{path}: entry {key!r}: expected a string or a list of strings, got {value!r:.100}"
            )
    values = [str(v) for value in data.values() for v in (value if isinstance(value, list) else [value])]
    # Every entry an empty list (a kit subsets.json group that no pair of a small split has): nothing to orient by.
    if not values:
        return {str(name): [] for name in data}
    keys_hit = sum(str(k) in known_ids for k in data) / len(data)
    values_hit = sum(v in known_ids for v in values) / max(1, len(values))
    if keys_hit == 0 and values_hit == 0:
        raise ScoreInputError(
            f"{path}: none of its ids match an id of the ground truth (e.g. {list(data)[:3]})"
        )
    out: dict[str, list[str]] = {}
    if keys_hit > values_hit:  # id -> category(s)
        for pair_id, cats in data.items():
            for cat in cats if isinstance(cats, list) else [cats]:
                out.setdefault(str(cat), []).append(str(pair_id))
    else:  # category -> ids
        for cat, ids in data.items():
            out[str(cat)] = [str(i) for i in (ids if isinstance(ids, list) else [ids])]
    return out
