"""Drawing the embedded benchmark's scenes with PIL (see :mod:`datamodules.synthetic.scenes` for what is drawn).

Plain polygons and lines without anti-aliasing, so an object's pixels are exactly its mask; everything is in
world coordinates scaled to the requested pixel size. The camera (viewpoint change) and the lighting
(illumination change) are applied to the whole picture after drawing. Caches (fonts, text masks, stripe
patterns) are per process, so DataLoader workers each build their own.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from datamodules.synthetic.scenes import (
    COLORS,
    MEMBER_SPACING,
    VIEW_MARGIN,
    Background,
    Camera,
    Obj,
    Scene,
)

ATTACHMENT_COLORS = {"hat": (25, 25, 30), "sticker": (250, 250, 250), "stripe": (250, 250, 250)}
FIGURE_ARMS = {"up": (25, 25), "down": (155, 155), "out": (90, 90), "one_up": (25, 155)}  # degrees from up


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
# Where a hat's brim sits above the centre: the top edge, or a little below a pointed top (it is "worn").
_TOP = {
    name: -min(y for _, y in poly) * (0.72 if name in ("triangle", "star") else 1.0)
    for name, poly in UNIT_POLYGONS.items()
}
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
