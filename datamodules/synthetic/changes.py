"""The changes of the embedded benchmark and the sampling of a whole pair, deterministic by (seed, split, index).

The twelve change operations, in the order in which ``data.categories`` names them (the label strings come
from config; the operations are fixed here):

==============  ============================================================================================
operation       meaning (what differs between the before and after images)
==============  ============================================================================================
viewpoint       the camera moves: the whole picture, background included, pans left/right/up/down, rolls
                clockwise/counterclockwise or zooms in/out; nothing in the scene itself changes
illumination    the lighting changes: the whole picture gets brighter/darker/warmer/cooler, or a shadow
                falls over one half; every object keeps its place, shape and paint
addition        an object (shape, figure, sign or group) appears in an empty cell
disappearance   a whole object is gone; its cell shows only background
removal         an attachment (hat, sticker, stripe) is taken off a shape; the shape itself stays unchanged
replacement     a shape becomes a different shape (of a possibly different colour) of the same size, in place
size            a shape or figure grows (small -> large) or shrinks (large -> small) around its centre
color           an object (shape, figure, sign board or every member of a group) is repainted; same mask
orientation     a shape (not a circle) is rotated in place; same colour, size and centre
pose            a figure moves its arms to another pose (arms up / down / out / one arm up)
text            the word on a sign changes; the board keeps its colour and place
count           a group gains or loses members (counts 2-5); the remaining members do not move
==============  ============================================================================================

A configurable fraction of pairs has **no change**: both images come from one rendering (identical pixels
unless ``noise`` is on); their category list is ``[no_change_label]`` (``"no_change"`` by default, deliberately
not one of the twelve, so the per-category scores stay clean while the no-change pairs can still be scored as
their own group; ``null`` makes it an empty list).

A pair has 1..``max_changes`` changes, each on a different object (viewpoint and illumination at most once).
Every random decision of a pair comes from one ``random.Random`` seeded by a hash of (data_seed, split, index):
workers, order and batch size never change the data, and the splits are separate seed streams.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from datamodules.synthetic.captions import write_references
from datamodules.synthetic.scenes import (
    ATTACHMENTS,
    COLORS,
    GROUP_COUNTS,
    POSES,
    SHAPES,
    WORDS,
    Obj,
    sample_camera,
    sample_object,
    sample_radius,
    sample_scene,
    with_objects,
)
from datamodules.synthetic.spec import LIGHT_CHOICES, OPERATIONS, Change, GeneratorConfig, PairSpec, pair_seed


# ---------------------------------------------------------------------------------------------- the pair
def sample_pair(cfg: GeneratorConfig, split: str, index: int) -> PairSpec:
    """Sample pair ``index`` of ``split``: scenes, changes, categories and references (no rendering)."""
    seed = pair_seed(cfg.data_seed, split, index)
    rng = random.Random(seed)
    scene = sample_scene(rng, cfg.min_objects, cfg.max_objects)
    changes: list[Change] = []
    if rng.random() >= cfg.no_change_fraction:
        before, after = scene.by_cell(), scene.by_cell()
        touched: set[int] = set()
        k = rng.randint(1, cfg.max_changes)
        for op in _pick_operations(rng, cfg.weights, k):
            changes.append(APPLY[op](rng, before, after, touched))
        scene_before, scene_after = with_objects(scene, before), with_objects(scene, after)
    else:
        scene_before = scene_after = scene
    spec = PairSpec(
        split=split,
        index=index,
        seed=seed,
        before=scene_before,
        after=scene_after,
        changes=tuple(changes),
        categories=tuple(cfg.label(c.op) for c in changes)
        or ((cfg.no_change_label,) if cfg.no_change_label else ()),
        camera=next((c.camera for c in changes if c.camera), None),
        light=next((c.light for c in changes if c.light), None),
    )
    n_refs = rng.randint(cfg.min_references, cfg.max_references)
    return replace(spec, captions=tuple(write_references(spec, rng, n_refs, cfg.caption_style)))


def _pick_operations(rng: random.Random, weights: Sequence[float], k: int) -> list[str]:
    """``k`` distinct operations drawn by weight (without replacement)."""
    pool = [(op, w) for op, w in zip(OPERATIONS, weights) if w > 0]
    picked = []
    for _ in range(min(k, len(pool))):
        op = rng.choices([p[0] for p in pool], [p[1] for p in pool])[0]
        picked.append(op)
        pool = [p for p in pool if p[0] != op]
    return picked


# ---------------------------------------------------------------------------------------------- operations
# Each takes (rng, before, after, touched): ``before``/``after`` map cell -> object and are edited in place;
# ``touched`` holds the cells already changed, so that two changes never hit the same object. When the scene
# has no object the change can apply to, one is made first (in both images, so it is not itself a change).
def _target(rng, before, after, touched, eligible, kind: str, **fixed) -> Obj:
    cells = sorted(c for c, o in before.items() if c not in touched and c in after and eligible(o))
    if cells:
        cell = rng.choice(cells)
    else:
        free = sorted(c for c in range(9) if c not in touched)
        cell = rng.choice(free)
        before[cell] = after[cell] = sample_object(rng, cell, kind, **fixed)
    touched.add(cell)
    return before[cell]


def _viewpoint(rng, before, after, touched) -> Change:
    return Change("viewpoint", camera=sample_camera(rng))


def _illumination(rng, before, after, touched) -> Change:
    return Change("illumination", light=rng.choice(LIGHT_CHOICES))


def _addition(rng, before, after, touched) -> Change:
    empty = sorted(c for c in range(9) if c not in before and c not in touched)
    if not empty:  # a full scene: clear an untouched cell first (in both images)
        cell = rng.choice(sorted(c for c in before if c not in touched))
        del before[cell], after[cell]
        empty = [cell]
    cell = rng.choice(empty)
    after[cell] = sample_object(rng, cell)
    touched.add(cell)
    return Change("addition", cell, None, after[cell])


def _disappearance(rng, before, after, touched) -> Change:
    obj = _target(rng, before, after, touched, lambda o: True, "shape")
    del after[obj.cell]
    return Change("disappearance", obj.cell, obj, None)


def _removal(rng, before, after, touched) -> Change:
    obj = _target(
        rng,
        before,
        after,
        touched,
        lambda o: o.attachment is not None,
        "shape",
        attachment=rng.choice(ATTACHMENTS),
    )
    after[obj.cell] = replace(obj, attachment=None)
    return Change("removal", obj.cell, obj, after[obj.cell])


def _replacement(rng, before, after, touched) -> Change:
    obj = _target(rng, before, after, touched, lambda o: o.kind == "shape", "shape")
    shape = rng.choice([s for s in SHAPES if s != obj.shape])
    angle = rng.uniform(0, 360) if shape != "circle" else 0.0
    new = replace(obj, shape=shape, color=rng.choice(tuple(COLORS)), angle=angle, attachment=None)
    after[obj.cell] = new
    return Change("replacement", obj.cell, obj, new)


def _size(rng, before, after, touched) -> Change:
    obj = _target(
        rng, before, after, touched, lambda o: o.kind in ("shape", "figure"), rng.choice(("shape", "figure"))
    )
    size = "large" if obj.size == "small" else "small"
    after[obj.cell] = replace(obj, size=size, radius=sample_radius(rng, obj.kind, size))
    return Change("size", obj.cell, obj, after[obj.cell])


def _color(rng, before, after, touched) -> Change:
    obj = _target(rng, before, after, touched, lambda o: True, "shape")
    after[obj.cell] = replace(obj, color=rng.choice([c for c in COLORS if c != obj.color]))
    return Change("color", obj.cell, obj, after[obj.cell])


ROTATION_RANGE = {
    "square": (22, 38),
    "cross": (22, 38),
    "triangle": (30, 50),
    "star": (15, 25),
}  # < symmetry/2


def _orientation(rng, before, after, touched) -> Change:
    shape = rng.choice([s for s in SHAPES if s != "circle"])
    obj = _target(
        rng, before, after, touched, lambda o: o.kind == "shape" and o.shape != "circle", "shape", shape=shape
    )
    turn = rng.uniform(*ROTATION_RANGE[obj.shape]) * rng.choice((-1, 1))
    after[obj.cell] = replace(obj, angle=(obj.angle + turn) % 360)
    return Change("orientation", obj.cell, obj, after[obj.cell])


def _pose(rng, before, after, touched) -> Change:
    obj = _target(rng, before, after, touched, lambda o: o.kind == "figure", "figure")
    after[obj.cell] = replace(obj, pose=rng.choice([p for p in POSES if p != obj.pose]))
    return Change("pose", obj.cell, obj, after[obj.cell])


def _text(rng, before, after, touched) -> Change:
    obj = _target(rng, before, after, touched, lambda o: o.kind == "sign", "sign")
    after[obj.cell] = replace(obj, word=rng.choice([w for w in WORDS if w != obj.word]))
    return Change("text", obj.cell, obj, after[obj.cell])


def _count(rng, before, after, touched) -> Change:
    obj = _target(rng, before, after, touched, lambda o: o.kind == "group", "group")
    new_count = rng.choice([n for n in GROUP_COUNTS if n != obj.count])
    if new_count > obj.count:  # new members take free slots; the old ones stay where they were
        free = [s for s in range(9) if s not in obj.members]
        members = tuple(sorted(obj.members + tuple(rng.sample(free, new_count - obj.count))))
    else:
        members = tuple(sorted(rng.sample(obj.members, new_count)))
    after[obj.cell] = replace(obj, members=members)
    return Change("count", obj.cell, obj, after[obj.cell])


APPLY = {
    "viewpoint": _viewpoint,
    "illumination": _illumination,
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
