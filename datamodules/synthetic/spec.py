"""The embedded benchmark's data types: the generator config, one change, one pair (no pixels), pair ids.

Everything else of the embedded benchmark builds on these (:mod:`.changes` samples them, :mod:`.grammar` and
:mod:`.captions` describe them, :mod:`.render` draws them), so this module imports nothing but the scenes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from datamodules.synthetic.scenes import Camera, Obj, Scene

OPERATIONS = (
    "viewpoint", "illumination", "addition", "disappearance", "removal", "replacement",
    "size", "color", "orientation", "pose", "text", "count",
)  # fmt: skip
LIGHT_CHOICES = (
    "brighter",
    "darker",
    "warmer",
    "cooler",
    "shadow_left",
    "shadow_right",
    "shadow_top",
    "shadow_bottom",
)


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything that decides the data (the ``data`` config keys of the embedded benchmark)."""

    labels: tuple[str, ...]  # the 12 category labels, in OPERATIONS order
    caption_style: str = "short"
    min_references: int = 3
    max_references: int = 5
    max_changes: int = 1
    no_change_fraction: float = 0.1
    no_change_label: str | None = "no_change"
    weights: tuple[float, ...] = (1.0,) * len(OPERATIONS)
    min_objects: int = 3
    max_objects: int = 6
    noise: float = 3.0
    jitter: float = 0.04
    data_seed: int = 0

    def __post_init__(self) -> None:
        if len(self.labels) != len(OPERATIONS) or len(set(self.labels)) != len(OPERATIONS):
            raise ValueError(
                f"data.categories must list {len(OPERATIONS)} distinct labels, one per change operation in this "
                f"order: {list(OPERATIONS)}; got {list(self.labels)}"
            )
        if self.no_change_label in self.labels:
            raise ValueError(
                f"data.no_change_label {self.no_change_label!r} must not be one of data.categories"
            )
        if self.caption_style not in ("short", "long"):
            raise ValueError(f"data.caption_style must be 'short' or 'long', got {self.caption_style!r}")
        if not 1 <= self.min_references <= self.max_references:
            raise ValueError("data.min_references / max_references: need 1 <= min <= max")
        if not 1 <= self.max_changes <= 3:
            raise ValueError(f"data.max_changes must be 1, 2 or 3, got {self.max_changes}")
        if not 0.0 <= self.no_change_fraction <= 1.0:
            raise ValueError(f"data.no_change_fraction must be in [0, 1], got {self.no_change_fraction}")
        if not 1 <= self.min_objects <= self.max_objects <= 8:
            raise ValueError(
                "data.min_objects / max_objects: need 1 <= min <= max <= 8 (9 cells, one kept free)"
            )
        if len(self.weights) != len(OPERATIONS) or min(self.weights) < 0 or sum(self.weights) <= 0:
            raise ValueError("data.category_weights must be >= 0 with at least one > 0")

    def label(self, op: str) -> str:
        return self.labels[OPERATIONS.index(op)]


@dataclass(frozen=True)
class Change:
    """One change. Object changes name the cell and the object before/after (``None`` when absent)."""

    op: str
    cell: int | None = None
    before: Obj | None = None
    after: Obj | None = None
    camera: Camera | None = None
    light: str | None = None


@dataclass(frozen=True)
class PairSpec:
    """A pair without pixels: both scenes, the changes, the references. Rendering is separate (and optional)."""

    split: str
    index: int
    seed: int
    before: Scene
    after: Scene
    changes: tuple[Change, ...]
    captions: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    camera: Camera | None = field(default=None)
    light: str | None = field(default=None)

    @property
    def pair_id(self) -> str:
        return pair_id(self.split, self.index)


def pair_id(split: str, index: int) -> str:
    return f"{split}/{index:06d}"


def parse_pair_id(value: str) -> tuple[str, int]:
    """``"val/000123"`` -> ``("val", 123)``."""
    split, sep, index = value.rpartition("/")
    if not sep or not split or not index.isdigit():
        raise ValueError(
            f"not a synthetic pair id (expected '<split>/<index>', e.g. 'val/000123'): {value!r}"
        )
    return split, int(index)


def pair_seed(data_seed: int, split: str, index: int) -> int:
    """A 64-bit seed from (data_seed, split, index); a stable hash, unlike Python's ``hash``."""
    digest = hashlib.blake2b(f"m3diff-synthetic/{data_seed}/{split}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")
