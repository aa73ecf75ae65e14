"""Scenes of the embedded benchmark: what is in a picture, how it is sampled, and how it is drawn.

A scene lives in world coordinates ``[0, 1]²`` (y points down), divided into a 3×3 grid of **cells**; each
object occupies its own cell, so "the small red triangle in the top left" always names exactly one object.
Object kinds:

- ``shape``: a circle, square, triangle, star or cross; small or large; any orientation; it may carry an
  **attachment** (a hat on top, a sticker in the middle, a stripe across it) that turns with it.
- ``figure``: an articulated stick figure (small or large) with a **pose** (arms up / down / out / one up).
- ``sign``: a board on a post with a short **word** on it (drawn with PIL's built-in font, no download).
- ``group``: 2–5 identical small shapes in one cell (its **count**).

Backgrounds are muted, textured (mottled, striped, checkered, grainy) so that objects stand out by colour
while the encoder still has to ignore texture. Drawing is in :mod:`datamodules.synthetic.render`.
"""

from __future__ import annotations

import colorsys
import math
import random
from dataclasses import dataclass, replace

# ---------------------------------------------------------------------------------------------- vocabulary
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 38, 38),
    "orange": (245, 135, 20),
    "yellow": (240, 215, 35),
    "green": (40, 160, 60),
    "cyan": (40, 200, 215),
    "blue": (40, 75, 215),
    "purple": (135, 55, 190),
    "pink": (245, 130, 190),
}
SHAPES = ("circle", "square", "triangle", "star", "cross")
SIZES = ("small", "large")
ATTACHMENTS = ("hat", "sticker", "stripe")
POSES = ("up", "down", "out", "one_up")
WORDS = ("stop", "open", "exit", "sale", "cafe", "park", "bank", "taxi")
TEXTURES = ("mottled", "striped", "checkered", "grainy")
KINDS = ("shape", "figure", "sign", "group")
KIND_WEIGHTS = (0.55, 0.15, 0.15, 0.15)
GROUP_COUNTS = (2, 3, 4, 5)
CELL_NAMES = (
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)

# Radii are circumradii in world units (a cell is 1/3 wide). Objects are jittered inside their cell with
# room for their largest possible extent, so a size change never pushes an object out of its cell.
RADIUS = {
    ("shape", "small"): (0.060, 0.072),
    ("shape", "large"): (0.108, 0.122),
    ("figure", "small"): (0.076, 0.084),
    ("figure", "large"): (0.128, 0.140),
}
SIGN_RADIUS = 0.14  # half the board's width
MEMBER_RADIUS = 0.036  # a group member
MEMBER_SPACING = 0.092  # group members sit on a 3x3 sub-grid of the cell
HAT_EXTENT = 1.3  # a hat reaches this far above the centre, in radii
CELL_HALF = 1 / 6
VIEW_MARGIN = 0.13  # extra canvas around the frame (fraction of the side) for camera moves


@dataclass(frozen=True)
class Obj:
    """One object. ``x``, ``y``, ``radius`` in world units; ``angle`` in degrees, clockwise on screen."""

    kind: str
    cell: int
    color: str
    shape: str = ""  # shapes: the shape; groups: the members' shape
    size: str = ""  # shapes and figures: small | large
    x: float = 0.5
    y: float = 0.5
    radius: float = 0.1
    angle: float = 0.0
    attachment: str | None = None
    pose: str | None = None
    word: str | None = None
    members: tuple[int, ...] = ()  # groups: occupied slots of the 3x3 sub-grid

    @property
    def count(self) -> int:
        return len(self.members)


@dataclass(frozen=True)
class Background:
    texture: str
    color: tuple[int, int, int]
    color2: tuple[int, int, int]
    period: float  # pattern period, fraction of the side
    angle: float  # stripe direction, radians
    seed: int  # the mottling noise


@dataclass(frozen=True)
class Scene:
    objects: tuple[Obj, ...]
    background: Background

    def by_cell(self) -> dict[int, Obj]:
        return {o.cell: o for o in self.objects}


@dataclass(frozen=True)
class Camera:
    """A viewpoint change: ``kind`` is the caption's word (left/right/up/down: the camera pans that way;
    clockwise/counterclockwise: it rolls; in/out: it zooms). ``dx``/``dy`` are in fractions of the side."""

    kind: str
    dx: float = 0.0
    dy: float = 0.0
    degrees: float = 0.0
    zoom: float = 1.0


CAMERA_KINDS = ("left", "right", "up", "down", "clockwise", "counterclockwise", "in", "out")


# ---------------------------------------------------------------------------------------------- sampling
def cell_center(cell: int) -> tuple[float, float]:
    return ((cell % 3 + 0.5) / 3, (cell // 3 + 0.5) / 3)


def max_extent(kind: str, attachment: str | None = None) -> float:
    """The farthest any part of an object of this kind may reach from its centre (any size, any angle)."""
    if kind == "shape":
        return RADIUS[("shape", "large")][1] * (HAT_EXTENT if attachment == "hat" else 1.0)
    if kind == "figure":
        return RADIUS[("figure", "large")][1]
    if kind == "sign":
        return SIGN_RADIUS
    return MEMBER_SPACING + MEMBER_RADIUS


def sample_radius(rng: random.Random, kind: str, size: str) -> float:
    if kind == "sign":
        return SIGN_RADIUS
    if kind == "group":
        return MEMBER_RADIUS
    return rng.uniform(*RADIUS[(kind, size)])


def place(rng: random.Random, kind: str, cell: int, attachment: str | None = None) -> tuple[float, float]:
    """A jittered centre in ``cell`` leaving room for the kind's largest extent."""
    cx, cy = cell_center(cell)
    room = max(0.0, CELL_HALF - max_extent(kind, attachment) - 0.006)
    return cx + rng.uniform(-room, room), cy + rng.uniform(-room, room)


def sample_object(rng: random.Random, cell: int, kind: str | None = None, **fixed) -> Obj:
    """A random object of ``kind`` (random kind if ``None``) in ``cell``; ``fixed`` pins attributes."""
    kind = kind or rng.choices(KINDS, KIND_WEIGHTS)[0]
    color = fixed.pop("color", None) or rng.choice(tuple(COLORS))
    attrs: dict = {"kind": kind, "cell": cell, "color": color}
    if kind in ("shape", "group"):
        attrs["shape"] = fixed.pop("shape", None) or rng.choice(SHAPES)
        attrs["angle"] = rng.uniform(0, 360) if attrs["shape"] != "circle" else 0.0
    if kind == "shape":
        attrs["size"] = rng.choice(SIZES)
        attrs["attachment"] = rng.choice(ATTACHMENTS) if rng.random() < 0.3 else None
    elif kind == "figure":
        attrs["size"] = rng.choice(SIZES)
        attrs["pose"] = rng.choice(POSES)
    elif kind == "sign":
        attrs["word"] = rng.choice(WORDS)
    elif kind == "group":
        attrs["members"] = tuple(sorted(rng.sample(range(9), rng.choice(GROUP_COUNTS))))
    attrs.update(fixed)
    attrs["radius"] = sample_radius(rng, kind, attrs.get("size", ""))
    attrs["x"], attrs["y"] = place(rng, kind, cell, attrs.get("attachment"))
    return Obj(**attrs)


def sample_background(rng: random.Random) -> Background:
    # Muted colours (low saturation, mid value) so that every object colour stands out.
    hue, sat, val = rng.random(), rng.uniform(0.04, 0.2), rng.uniform(0.42, 0.72)
    color = _hsv(hue, sat, val)
    color2 = _hsv(hue + rng.uniform(-0.08, 0.08), sat, val + rng.choice((-1, 1)) * rng.uniform(0.06, 0.12))
    return Background(
        texture=rng.choice(TEXTURES),
        color=color,
        color2=color2,
        period=rng.uniform(0.06, 0.12),
        angle=rng.uniform(0, math.pi),
        seed=rng.getrandbits(32),
    )


def sample_scene(rng: random.Random, min_objects: int, max_objects: int) -> Scene:
    n = rng.randint(min_objects, max_objects)
    cells = rng.sample(range(9), n)
    return Scene(tuple(sample_object(rng, c) for c in cells), sample_background(rng))


def with_objects(scene: Scene, objects: dict[int, Obj]) -> Scene:
    return replace(scene, objects=tuple(objects[c] for c in sorted(objects)))


def sample_camera(rng: random.Random) -> Camera:
    kind = rng.choice(CAMERA_KINDS)
    step = rng.uniform(0.08, 0.12)
    if kind in ("left", "right", "up", "down"):
        dx = {"left": -step, "right": step}.get(kind, 0.0)
        dy = {"up": -step, "down": step}.get(kind, 0.0)
        return Camera(kind, dx=dx, dy=dy)
    if kind in ("clockwise", "counterclockwise"):
        return Camera(kind, degrees=rng.uniform(8, 12) * (1 if kind == "clockwise" else -1))
    return Camera(kind, zoom=rng.uniform(1.15, 1.25) if kind == "in" else rng.uniform(0.8, 0.87))


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1))
    return (round(r * 255), round(g * 255), round(b * 255))
