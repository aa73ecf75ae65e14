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
while the encoder still has to ignore texture. Rendering is plain PIL polygons and lines (no anti-aliasing,
so an object's pixels are exactly its mask), at the requested pixel size; the camera (viewpoint change) and
the lighting (illumination change) are applied to the whole picture after drawing.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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
    ("figure", "small"): (0.088, 0.096),
    ("figure", "large"): (0.128, 0.140),
}
SIGN_RADIUS = 0.14  # half the board's width
MEMBER_RADIUS = 0.036  # a group member
MEMBER_SPACING = 0.092  # group members sit on a 3x3 sub-grid of the cell
HAT_EXTENT = 1.3  # a hat reaches this far above the centre, in radii
CELL_HALF = 1 / 6
VIEW_MARGIN = 0.13  # extra canvas around the frame (fraction of the side) for camera moves

ATTACHMENT_COLORS = {"hat": (25, 25, 30), "sticker": (250, 250, 250), "stripe": (250, 250, 250)}
FIGURE_ARMS = {"up": (25, 25), "down": (155, 155), "out": (90, 90), "one_up": (25, 155)}  # degrees from up


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
LIGHTS = (
    "brighter",
    "darker",
    "warmer",
    "cooler",
    "shadow_left",
    "shadow_right",
    "shadow_top",
    "shadow_bottom",
)


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


# ---------------------------------------------------------------------------------------------- geometry
def _regular(n: int, radius: float = 1.0, start: float = -90.0) -> tuple[tuple[float, float], ...]:
    return tuple(
        (
            radius * math.cos(math.radians(start + 360 * k / n)),
            radius * math.sin(math.radians(start + 360 * k / n)),
        )
        for k in range(n)
    )


def _star() -> tuple[tuple[float, float], ...]:
    outer, inner = _regular(5), _regular(5, 0.45, -90 + 36)
    return tuple(p for pair in zip(outer, inner) for p in pair)


_W = 0.34  # half-width of a cross's arm
# Unit polygons (circumradius 1, y down, "pointing" up). A circle is a 20-gon so everything is a polygon.
UNIT_POLYGONS: dict[str, tuple[tuple[float, float], ...]] = {
    "circle": _regular(20),
    "square": _regular(4, 1.0, -135),
    "triangle": _regular(3),
    "star": _star(),
    "cross": tuple(
        (x * 0.94, y * 0.94)
        for x, y in (
            (-_W, -1),
            (_W, -1),
            (_W, -_W),
            (1, -_W),
            (1, _W),
            (_W, _W),
            (_W, 1),
            (-_W, 1),
            (-_W, _W),
            (-1, _W),
            (-1, -_W),
            (-_W, -_W),
        )
    ),  # fmt: skip
}
_TOP = {name: -min(y for _, y in poly) for name, poly in UNIT_POLYGONS.items()}  # distance centre -> top edge
STICKER = _regular(12, 0.3)


def _clip_band(poly, half: float):
    """Sutherland-Hodgman: the part of ``poly`` with ``|y| <= half`` (a stripe across the shape)."""
    for sign in (1.0, -1.0):  # keep sign*y <= half
        out = []
        for i, (x1, y1) in enumerate(poly):
            x0, y0 = poly[i - 1]
            in0, in1 = sign * y0 <= half, sign * y1 <= half
            if in0 != in1:
                t = (sign * half - y0) / (y1 - y0)
                out.append((x0 + t * (x1 - x0), sign * half))
            if in1:
                out.append((x1, y1))
        poly = out
    return poly


def _hat(top: float):
    t = -top
    return ((-0.62, t + 0.1), (0.62, t + 0.1), (0.62, t - 0.06), (0.36, t - 0.06),
            (0.36, t - 0.3), (-0.36, t - 0.3), (-0.36, t - 0.06), (-0.62, t - 0.06))  # fmt: skip


def _to_px(
    points, x: float, y: float, radius: float, angle: float, side: int, offset: int
) -> list[tuple[float, float]]:
    """Local unit coordinates -> canvas pixels (rotate clockwise by ``angle``, scale, translate)."""
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    r, ox, oy = radius * side, offset + x * side, offset + y * side
    return [(ox + r * (c * px - s * py), oy + r * (s * px + c * py)) for px, py in points]


# ---------------------------------------------------------------------------------------------- drawing
@lru_cache(maxsize=64)
def _font(pixels: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=pixels)


@lru_cache(maxsize=512)
def _text_mask(word: str, pixels: int) -> Image.Image:
    """The word's glyphs as an ``L`` mask, cached per process (text is the slowest thing drawn)."""
    font = _font(pixels)
    x0, y0, x1, y1 = font.getbbox(word)
    mask = Image.new("L", (max(1, x1 - x0), max(1, y1 - y0)))
    ImageDraw.Draw(mask).text((-x0, -y0), word, font=font, fill=255)
    return mask


def draw_object(draw: ImageDraw.ImageDraw, image: Image.Image, obj: Obj, side: int, offset: int) -> None:
    fill = COLORS[obj.color]
    if obj.kind == "shape":
        poly = UNIT_POLYGONS[obj.shape]
        draw.polygon(_to_px(poly, obj.x, obj.y, obj.radius, obj.angle, side, offset), fill=fill)
        if obj.attachment:
            part = {"hat": lambda: _hat(_TOP[obj.shape]), "sticker": lambda: STICKER,
                    "stripe": lambda: _clip_band(poly, 0.17)}[obj.attachment]()  # fmt: skip
            pts = _to_px(part, obj.x, obj.y, obj.radius, obj.angle, side, offset)
            draw.polygon(pts, fill=ATTACHMENT_COLORS[obj.attachment])
    elif obj.kind == "group":
        poly = UNIT_POLYGONS[obj.shape]
        for slot in obj.members:
            mx = obj.x + (slot % 3 - 1) * MEMBER_SPACING
            my = obj.y + (slot // 3 - 1) * MEMBER_SPACING
            draw.polygon(_to_px(poly, mx, my, obj.radius, obj.angle, side, offset), fill=fill)
    elif obj.kind == "figure":
        _draw_figure(draw, obj, side, offset)
    else:
        _draw_sign(draw, image, obj, side, offset)


def _draw_figure(draw: ImageDraw.ImageDraw, obj: Obj, side: int, offset: int) -> None:
    fill = COLORS[obj.color]
    width = max(1, round(0.17 * obj.radius * side))

    def px(points):
        return _to_px(points, obj.x, obj.y, obj.radius, 0.0, side, offset)

    draw.line(px([(0, -0.5), (0, 0.2)]), fill=fill, width=width)  # body
    draw.line(px([(-0.38, 0.95), (0, 0.2), (0.38, 0.95)]), fill=fill, width=width)  # legs
    right, left = FIGURE_ARMS[obj.pose]
    shoulder = (0.0, -0.35)
    for sign, deg in ((1, right), (-1, left)):
        hand = (sign * 0.6 * math.sin(math.radians(deg)), -0.35 - 0.6 * math.cos(math.radians(deg)))
        draw.line(px([shoulder, hand]), fill=fill, width=width)
    (hx0, hy0), (hx1, hy1) = px([(-0.22, -0.98), (0.22, -0.54)])
    draw.ellipse((hx0, hy0, hx1, hy1), fill=fill)


def _draw_sign(draw: ImageDraw.ImageDraw, image: Image.Image, obj: Obj, side: int, offset: int) -> None:
    fill = COLORS[obj.color]
    (bx0, by0), (bx1, by1), (px0, py0), (px1, py1) = _to_px(
        [(-1, -0.75), (1, 0.1), (0, 0.1), (0, 0.95)], obj.x, obj.y, obj.radius, 0.0, side, offset
    )
    draw.line(((px0, py0), (px1, py1)), fill=(90, 90, 90), width=max(1, round(0.012 * side)))  # post
    draw.rectangle((bx0, by0, bx1, by1), fill=fill)
    mask = _text_mask(word=obj.word.upper(), pixels=max(6, round(0.075 * side)))
    ink = (20, 20, 20) if sum(fill) / 3 > 120 else (245, 245, 245)
    left = round((bx0 + bx1 - mask.width) / 2)
    top = round((by0 + by1 - mask.height) / 2)
    image.paste(ink, (left, top, left + mask.width, top + mask.height), mask)


def render_background(bg: Background, canvas: int, side: int) -> Image.Image:
    """The textured background on a ``canvas``-pixel square; the pattern scales with the frame ``side``.

    Built from 8-bit PIL operations (a blend mask between the two background colours): it is the largest
    drawing cost of a pair, so no float arrays of the full canvas are made."""
    # Mottling: a coarse random grid blown up smoothly, squeezed to 15-85 % of the way toward color2.
    coarse = np.random.default_rng(bg.seed).integers(38, 218, (5, 5), dtype=np.uint8)
    mask = Image.fromarray(coarse).resize((canvas, canvas), Image.Resampling.BICUBIC)
    period = max(2, round(bg.period * side))
    if bg.texture == "striped":
        mask = Image.blend(mask, _stripes(canvas, period, round(bg.angle / math.pi * 16) % 16), 0.6)
    elif bg.texture == "checkered":
        mask = Image.blend(mask, _checker(canvas, period), 0.6)
    elif bg.texture == "grainy":
        grain = np.random.default_rng(bg.seed + 1).integers(0, 256, (canvas, canvas), dtype=np.uint8)
        mask = Image.blend(mask, Image.fromarray(grain), 0.5)
    return Image.composite(
        Image.new("RGB", mask.size, bg.color2), Image.new("RGB", mask.size, bg.color), mask
    )


@lru_cache(maxsize=256)
def _stripes(canvas: int, period: int, angle_step: int) -> Image.Image:
    """Square-wave stripes (``L``, 0/255) across the canvas, direction in 16 steps of a half turn."""
    angle = angle_step * math.pi / 16
    yy, xx = np.mgrid[0:canvas, 0:canvas].astype(np.float32)
    wave = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * (2 * math.pi / period)) > 0
    return Image.fromarray((wave * 255).astype(np.uint8))


@lru_cache(maxsize=256)
def _checker(canvas: int, period: int) -> Image.Image:
    yy, xx = np.mgrid[0:canvas, 0:canvas]
    return Image.fromarray(((((xx // period) + (yy // period)) % 2) * 255).astype(np.uint8))


def camera_affine(camera: Camera, side: int, margin: int) -> tuple[float, ...]:
    """PIL ``AFFINE`` data: output pixel (in the ``side`` frame) -> source pixel on a canvas with ``margin``.

    The camera pans by (dx, dy) of the side, rolls by ``degrees`` (clockwise on screen when positive) and
    zooms by ``zoom`` about the frame's centre: the source point is ``c + R (p - c) / zoom + d``.
    """
    rad = math.radians(camera.degrees)
    a, b = math.cos(rad) / camera.zoom, -math.sin(rad) / camera.zoom
    d, e = math.sin(rad) / camera.zoom, math.cos(rad) / camera.zoom
    half = side / 2
    c = margin + half + camera.dx * side - (a + b) * half
    f = margin + half + camera.dy * side - (d + e) * half
    return (a, b, c, d, e, f)


def _lut(r: float, g: float, b: float, add: float = 0.0) -> list[int]:
    return [min(255, max(0, round(v * k + add))) for k in (r, g, b) for v in range(256)]


_LIGHT_LUTS = {
    "brighter": _lut(1.3, 1.3, 1.3, 12),
    "darker": _lut(0.58, 0.58, 0.58),
    "warmer": _lut(1.12, 1.0, 0.7, 6),
    "cooler": _lut(0.72, 0.95, 1.15, 6),
    "shadow": _lut(0.5, 0.5, 0.55),
}


def apply_light(image: Image.Image, light: str) -> Image.Image:
    """Relight a picture: a global gain / colour cast, or a shadow over one half."""
    if not light.startswith("shadow_"):
        return image.point(_LIGHT_LUTS[light])
    w, h = image.size
    box = {
        "shadow_left": (0, 0, w // 2, h),
        "shadow_right": (w // 2, 0, w, h),
        "shadow_top": (0, 0, w, h // 2),
        "shadow_bottom": (0, h // 2, w, h),
    }[light]
    image = image.copy()
    image.paste(image.crop(box).point(_LIGHT_LUTS["shadow"]), box[:2])
    return image


def render(
    scene: Scene,
    side: int,
    *,
    camera: Camera | None = None,
    light: str | None = None,
    with_margin: bool = False,
    background: Image.Image | None = None,
) -> Image.Image:
    """Draw ``scene`` as a ``side``-pixel RGB image.

    ``with_margin`` draws on a larger canvas (needed when either image of the pair has a camera move, so
    that the moved view still shows textured background and objects entering from outside the frame);
    ``background`` reuses an already rendered background of the right canvas size.
    """
    margin = math.ceil(VIEW_MARGIN * side) if (with_margin or camera is not None) else 0
    canvas = side + 2 * margin
    image = background.copy() if background is not None else render_background(scene.background, canvas, side)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        draw_object(draw, image, obj, side, margin)
    if camera is not None:
        data = camera_affine(camera, side, margin)
        image = image.transform((side, side), Image.Transform.AFFINE, data, Image.Resampling.BILINEAR)
    elif margin:
        image = image.crop((margin, margin, margin + side, margin + side))
    if light:
        image = apply_light(image, light)
    return image


def background_canvas(scene: Scene, side: int, with_margin: bool) -> Image.Image:
    margin = math.ceil(VIEW_MARGIN * side) if with_margin else 0
    return render_background(scene.background, side + 2 * margin, side)


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1))
    return (round(r * 255), round(g * 255), round(b * 255))
