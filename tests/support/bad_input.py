"""What the bad-input tests share: the loaders they run against, a tiny copy with its DataModule factory, and
the checks that skipping is counted and logged."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from support.data import build_mini, make_dm

LOADERS = ["clevr_change", "clevr_dc", "spot_the_diff", "iedit", "omnidiff", "pairs"]  # JSON annotations
ALL_LOADERS = [*LOADERS, "birds_to_words", "llava"]  # image and file-level checks apply to every loader


def mini_with_dm(tmp_path: Path, name: str, **overrides: Any):
    """The tiny copy of benchmark ``name`` and a factory of DataModules on it (``dm(on_error="skip")``)."""
    mini = build_mini(name, tmp_path / name)
    return mini, (lambda **more: make_dm(name, mini.root, **{**mini.overrides, **overrides, **more}))


def edit_json(path: Path, change: Callable[[Any], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=1))


def pair_ids(dm, split: str = "test") -> list[str]:
    """The pairs the dataset of ``split`` evaluates (after image checks)."""
    dataset = dm.dataset(split)
    return [r.pair_id for r in dataset.records]


def noise_png(path: Path, size: int = 64) -> None:
    pixels = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, "PNG")


def assert_skipped(dm, caplog, split: str = "test", at_least: int = 1) -> None:
    assert dm.skipped.get(split, 0) >= at_least
    assert any("on_error=skip dropped" in r.getMessage() for r in caplog.records), "skipping must be logged"
