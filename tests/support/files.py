"""What the tiny benchmark copies are made of: small images, JSON files, the :class:`Mini` that says where
things are, and copies of the released annotation files (``BENCHMARKS``, read by the tests only)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
if not BENCHMARKS.is_dir():  # a checkout elsewhere: the shared folder next to the repository
    BENCHMARKS = Path("/work/shared/benchmarks")

# The colours of "before", "after" and CLEVR-Change's distractor images: a wrong pairing shows in the pixels.
DEFAULT, SEMANTIC, NONSEMANTIC = (200, 30, 30), (30, 200, 30), (30, 30, 200)


def write_image(
    path: Path, size: tuple[int, int] = (12, 8), color: tuple[int, int, int] = (200, 30, 30)
) -> Path:
    """A small RGB image in the format its extension names (png, jpg/jpeg/JPG, gif)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, color)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF"}.get(path.suffix.lower(), "PNG")
    image.save(path, fmt)
    return path


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


@dataclass
class Mini:
    name: str  # data config name
    root: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    images: dict[str, Path] = field(default_factory=dict)  # split -> an image of that split's first pair
    files: dict[str, Path] = field(default_factory=dict)  # split -> the annotation file listing its records

    def first_image(self, split: str = "test") -> Path:
        return self.images[split]

    def annotation(self, split: str = "test") -> Path:
        return self.files[split]


# ------------------------------------------------------------------------------------------------ real files
def copy_real(sub: str, root: Path) -> Path:
    """Copy the released annotation files of ``sub`` (e.g. ``spot-the-diff``) into ``root``."""
    shutil.copytree(BENCHMARKS / sub, root, dirs_exist_ok=True)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)  # the shared copy is read-only
    return root


def placeholder_images(paths: Any) -> int:
    """A 4x4 image under each name (format from the extension); returns the count."""
    n = 0
    for path in dict.fromkeys(paths):
        write_image(Path(path), (4, 4), tuple(int(x) for x in np.random.default_rng(n).integers(0, 255, 3)))
        n += 1
    return n
