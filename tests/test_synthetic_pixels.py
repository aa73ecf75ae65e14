"""The embedded benchmark's pixels: each category changes the images the way its name says, and nothing else
(the config names the twelve categories in operation order; their weights select them)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from support.synthetic import LABELS, make_dm, only

from datamodules.synthetic.captions import parse_caption
from datamodules.synthetic.changes import sample_pair
from datamodules.synthetic.datamodule import render_pair
from datamodules.synthetic.render import camera_affine, render
from datamodules.synthetic.scenes import Background, Scene
from datamodules.synthetic.spec import OPERATIONS, GeneratorConfig

SIDE = 96  # pixel tests: big enough for every object, small enough to be quick


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


_BLACK = Background("mottled", (0, 0, 0), (0, 0, 0), 0.1, 0.0, 0)


def mask(obj) -> np.ndarray:
    """The object's pixels (drawn alone on black; drawing has no anti-aliasing, so this is exact)."""
    if obj is None:
        return np.zeros((SIDE, SIDE), bool)
    return pixels(render(Scene((obj,), _BLACK), SIDE)).sum(axis=2) > 0


def changed(before: Image.Image, after: Image.Image) -> np.ndarray:
    return np.any(pixels(before) != pixels(after), axis=2)


def centroid(m: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(m)
    return np.array([xs.mean(), ys.mean()])


# ---------------------------------------------------------------------------------------------- config
def test_config_names_the_twelve_categories_in_operation_order():
    assert LABELS == OPERATIONS  # the shipped labels; the generator only reads them from config
    dm = make_dm(categories=[f"cat_{op}" for op in OPERATIONS])
    spec = sample_pair(dm.generator, "val", 0)
    assert all(c.startswith("cat_") or c == "no_change" for c in spec.categories)
    with pytest.raises(ValueError, match="12 distinct labels"):
        make_dm(categories=list(OPERATIONS[:6]))
    with pytest.raises(ValueError, match="unknown categories"):
        make_dm(category_weights={"colour": 1.0})
    with pytest.raises(ValueError, match="must not be one of"):
        make_dm(no_change_label="color")


def test_category_weights_select_categories():
    dm = make_dm(
        category_weights={op: 0.0 for op in OPERATIONS if op not in ("color", "text")}, no_change_fraction=0
    )
    cats = {c for s in dm.specs("val")[:100] for c in s.categories}
    assert cats == {"color", "text"}


# ---------------------------------------------------------------------------------------------- pixels
OBJECT_OPS = [op for op in OPERATIONS if op not in ("viewpoint", "illumination")]


@pytest.mark.parametrize("op", OBJECT_OPS)
def test_object_changes_touch_only_the_changed_object(op):
    gen = only(op)
    for index in range(6):
        spec = sample_pair(gen, "test", index)
        (change,) = spec.changes
        before, after = render_pair(spec, SIDE)
        diff = changed(before, after)
        m_before, m_after = mask(change.before), mask(change.after)
        assert diff.any(), f"{op}: the images are identical"
        assert not (diff & ~(m_before | m_after)).any(), f"{op}: pixels changed outside the changed object"
        PIXEL_CHECKS[op](change, before, after, m_before, m_after, diff)


def _addition(change, before, after, m_before, m_after, diff):
    assert not m_before.any() and m_after.any()
    assert diff[m_after].mean() > 0.9  # the new object covers background


def _disappearance(change, before, after, m_before, m_after, diff):
    assert m_before.any() and not m_after.any()
    assert diff[m_before].mean() > 0.9


def _removal(change, before, after, m_before, m_after, diff):
    assert change.before.attachment and change.after.attachment is None
    assert (m_after & ~m_before).sum() == 0  # nothing new is drawn
    assert change.before.shape == change.after.shape and change.before.color == change.after.color
    # the changed pixels were the attachment's colour
    attachment_rgb = {"hat": (25, 25, 30), "sticker": (250, 250, 250), "stripe": (250, 250, 250)}
    assert (pixels(before)[diff] == attachment_rgb[change.before.attachment]).all()


def _replacement(change, before, after, m_before, m_after, diff):
    assert change.after.shape != change.before.shape
    assert (m_before != m_after).any()
    assert np.abs(centroid(m_before) - centroid(m_after)).max() < 0.06 * SIDE


def _size(change, before, after, m_before, m_after, diff):
    ratio = m_after.sum() / m_before.sum()
    assert ratio > 1.6 if change.after.size == "large" else ratio < 1 / 1.6
    assert np.abs(centroid(m_before) - centroid(m_after)).max() < 0.06 * SIDE


def _color(change, before, after, m_before, m_after, diff):
    assert (m_before == m_after).all()  # same mask ...
    mean_before = pixels(before)[m_before].mean(axis=0)  # ... and a different mean colour over it
    mean_after = pixels(after)[m_before].mean(axis=0)
    assert np.abs(mean_after - mean_before).max() > 25


def _orientation(change, before, after, m_before, m_after, diff):
    assert change.before.shape != "circle"
    assert (m_before != m_after).any()
    assert abs(m_after.sum() / m_before.sum() - 1) < 0.15  # same size
    assert np.abs(centroid(m_before) - centroid(m_after)).max() < 2.0  # turned about its centre
    assert (pixels(before)[m_before & m_after & ~diff] == pixels(after)[m_before & m_after & ~diff]).all()


def _pose(change, before, after, m_before, m_after, diff):
    assert change.after.pose != change.before.pose
    assert (m_before != m_after).any()
    assert abs(int(m_before.sum()) - int(m_after.sum())) < 0.5 * m_before.sum()


def _text(change, before, after, m_before, m_after, diff):
    assert change.after.word != change.before.word
    assert (m_before == m_after).all()  # same board and post; only the glyphs differ, inside the board
    sign = change.before
    ys, xs = np.nonzero(diff)
    left, right = (sign.x - sign.radius) * SIDE, (sign.x + sign.radius) * SIDE
    top, bottom = (sign.y - 0.75 * sign.radius) * SIDE, (sign.y + 0.1 * sign.radius) * SIDE
    assert left <= xs.min() and xs.max() <= right and top <= ys.min() and ys.max() <= bottom


def _count(change, before, after, m_before, m_after, diff):
    ratio = m_after.sum() / m_before.sum()
    assert abs(ratio - change.after.count / change.before.count) < 0.12
    if change.after.count < change.before.count:
        assert not (m_after & ~m_before).any()  # the remaining members did not move
    else:
        assert not (m_before & ~m_after).any()


PIXEL_CHECKS = {
    "addition": _addition,
    "disappearance": _disappearance,
    "removal": _removal,
    "replacement": _replacement,
    "size": _size,
    "color": _color,
    "orientation": _orientation,
    "pose": _pose,
    "text": _text,
    "count": _count,
}


def test_viewpoint_is_a_global_transform():
    gen = only("viewpoint")
    kinds = set()
    for index in range(24):
        spec = sample_pair(gen, "test", index)
        before, after = render_pair(spec, SIDE)
        kinds.add(spec.camera.kind)
        # the after image is the before image seen through the camera move (better than no move at all)
        warped = before.transform(
            before.size,
            Image.Transform.AFFINE,
            camera_affine(spec.camera, SIDE, 0),
            Image.Resampling.BILINEAR,
        )
        crop = slice(SIDE // 4, 3 * SIDE // 4)
        err_move = np.abs(pixels(warped) - pixels(after))[crop, crop].mean()
        err_still = np.abs(pixels(before) - pixels(after))[crop, crop].mean()
        assert err_move < 0.5 * err_still, (spec.camera, err_move, err_still)
    assert len(kinds) >= 6  # pans, rolls and zooms all occur


def test_illumination_changes_the_light_only():
    gen = only("illumination")
    seen = set()
    for index in range(30):
        spec = sample_pair(gen, "test", index)
        before, after = (pixels(im).astype(float) for im in render_pair(spec, SIDE))
        light = spec.light
        seen.add(light)
        if light == "brighter":
            assert after.mean() > before.mean() + 15
        elif light == "darker":
            assert after.mean() < before.mean() - 15
        elif light in ("warmer", "cooler"):
            warmth_before = (before[..., 0] - before[..., 2]).mean()
            warmth_after = (after[..., 0] - after[..., 2]).mean()
            assert (
                (warmth_after > warmth_before + 10)
                if light == "warmer"
                else (warmth_after < warmth_before - 10)
            )
        else:
            half = {"left": np.s_[:, : SIDE // 2], "right": np.s_[:, SIDE // 2 :],
                    "top": np.s_[: SIDE // 2], "bottom": np.s_[SIDE // 2 :]}  # fmt: skip
            side = light.removeprefix("shadow_")
            other = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}[side]
            assert after[half[side]].mean() < 0.7 * before[half[side]].mean()
            assert (after[half[other]] == before[half[other]]).all()
        # geometry is kept: where the before image has an edge, the after image has one too
        edges_before = np.abs(np.diff(before.sum(axis=2), axis=1)) > 60
        edges_after = np.abs(np.diff(after.sum(axis=2), axis=1)) > 10
        assert edges_after[edges_before].mean() > 0.9
    assert len(seen) >= 6


def test_no_change_pairs_are_identical_up_to_noise():
    gen = GeneratorConfig(labels=LABELS, no_change_fraction=1.0)
    for index in range(4):
        spec = sample_pair(gen, "val", index)
        assert spec.changes == () and spec.categories == ("no_change",)
        before, after = render_pair(spec, SIDE)
        assert before.tobytes() == after.tobytes()
        assert parse_caption(spec.captions[0]).no_change
    noisy = replace(gen, noise=4.0)
    before, after = render_pair(sample_pair(noisy, "val", 0), SIDE, noisy.noise)
    diff = np.abs(pixels(before) - pixels(after))
    assert 0 < diff.mean() < 3 * 4.0
    assert sample_pair(replace(gen, no_change_label=None), "val", 0).categories == ()
