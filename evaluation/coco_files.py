"""The COCO caption files the field's scripts read and write, and the atomic write that keeps them whole."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


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
