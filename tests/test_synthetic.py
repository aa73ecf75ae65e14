"""The embedded benchmark: pixels change the way each category says, captions name the change, the parser
reads every reference back, the data is deterministic and split-disjoint, and the DataModule keeps the contract."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from datamodules import build_datamodule
from datamodules.contract import check_sample
from datamodules.synthetic.captions import expand, fill, identify, parse_caption
from datamodules.synthetic.changes import sample_pair
from datamodules.synthetic.datamodule import SyntheticDataModule, render_pair
from datamodules.synthetic.grammar import NO_CHANGE_TEMPLATES, TEMPLATES, VOCAB, change_slots
from datamodules.synthetic.render import camera_affine, render
from datamodules.synthetic.scenes import COLORS, Background, Scene
from datamodules.synthetic.spec import OPERATIONS, GeneratorConfig, parse_pair_id
from experiments.common.config import load_config, to_container

SIDE = 96  # pixel tests: big enough for every object, small enough to be quick


def data_config(**overrides) -> dict:
    return {**to_container(load_config().data), **overrides}


def make_dm(image_size: int = 64, **overrides) -> SyntheticDataModule:
    return build_datamodule(
        data_config(**overrides), image_size=image_size, mean=(0.5,) * 3, std=(0.5,) * 3, seed=7
    )


LABELS = tuple(data_config()["categories"])


def only(op: str, **kwargs) -> GeneratorConfig:
    """A generator whose every pair has exactly one change of operation ``op``."""
    weights = tuple(1.0 if o == op else 0.0 for o in OPERATIONS)
    return GeneratorConfig(labels=LABELS, weights=weights, no_change_fraction=0.0, **kwargs)


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


# ---------------------------------------------------------------------------------------------- captions
@pytest.mark.parametrize("style", ["short", "long"])
def test_references_name_the_changed_object(style):
    for op in OPERATIONS:
        gen = only(op, caption_style=style)
        for index in range(5):
            spec = sample_pair(gen, "val", index)
            assert 3 <= len(spec.captions) <= 5 and len(set(spec.captions)) == len(spec.captions)
            truth = change_slots(spec.changes[0])
            for caption in spec.captions:
                words = caption.replace(",", " ").replace(".", " ").split()
                if "color" in truth:
                    assert truth["color"] in words, (op, caption)
                if "shape" in truth:
                    assert truth["shape"] in words, (op, caption)
                if "kind" in truth and truth["kind"] in ("figure", "sign"):
                    assert truth["kind"] in words, (op, caption)
                if "size" in truth:
                    assert truth["size"] in words, (op, caption)
                if style == "long":
                    assert len(words) >= 20, caption
                else:
                    assert len(words) <= 20, caption


def test_templates_of_an_operation_carry_the_same_slots():
    for op, (kinds, templates) in TEMPLATES.items():
        for kind in kinds:
            slot_sets = {
                frozenset(k.split(":")[0] for k in re.findall(r"\{([a-z_:]+)\}", expand(t, kind)) if k != "a")
                for t in templates
            }
            assert len(slot_sets) == 1, (op, kind, slot_sets)


class _Pick(random.Random):
    """``choice`` takes the k-th item (round robin): fills every phrase variant of every slot in turn."""

    def __init__(self, k: int) -> None:
        super().__init__(0)
        self.k = k

    def choice(self, seq):
        return seq[self.k % len(seq)]


def test_parser_recovers_every_template_with_every_phrase():
    """Exhaustive over templates x object kinds x each slot's values x each phrase of a value."""
    for op, (kinds, templates) in TEMPLATES.items():
        for kind, template in itertools.product(kinds, templates):
            text = expand(template, kind)
            slots = sorted({k.split(":")[0] for k in re.findall(r"\{([a-z_]+)(?::[a-z]+)?\}", text)} - {"a"})
            forms = {
                s: next(k for k in re.findall(r"\{([a-z_:]+)\}", text) if k.split(":")[0] == s) for s in slots
            }
            n_values = max(len(VOCAB[forms[s]]) for s in slots)
            for v, k in itertools.product(range(n_values), range(3)):
                truth = {"op": op, **({"kind": kind} if kind else {})}
                for j, s in enumerate(slots):
                    values = list(VOCAB[forms[s]])
                    truth[s] = values[(v + j) % len(values)]
                caption = fill(text, truth, _Pick(k))
                for lead in ("", "in the second image, "):
                    parsed = parse_caption(lead + caption)
                    assert parsed.changes == [truth], (caption, parsed, truth)


@pytest.mark.parametrize("style,max_changes", [("short", 1), ("short", 3), ("long", 1), ("long", 3)])
def test_parser_recovers_the_true_change_from_every_reference(style, max_changes):
    gen = GeneratorConfig(labels=LABELS, caption_style=style, max_changes=max_changes, no_change_fraction=0.1)
    for index in range(300):
        spec = sample_pair(gen, "train", index)
        truth = [change_slots(c) for c in spec.changes]
        for caption in spec.captions:
            items, exact = identify(parse_caption(caption), truth)
            assert exact, (caption, parse_caption(caption), truth)


def test_parser_rejects_a_caption_naming_the_wrong_object():
    spec = sample_pair(only("color"), "val", 3)
    truth = [change_slots(spec.changes[0])]
    caption = spec.captions[0]
    color, loc = truth[0]["color"], truth[0]["loc"]
    other_color = next(c for c in COLORS if c not in caption.split())
    wrong_color = caption.replace(f" {color} ", f" {other_color} ", 1)
    (item,), exact = identify(parse_caption(wrong_color), truth)
    assert item[1]["category"] and not item[1]["attributes"] and item[1]["location"] and not exact
    phrase = next(p for p in sorted(VOCAB["loc"][loc], key=len, reverse=True) if p in caption)
    other_loc = VOCAB["loc"][(loc + 1) % 9][0]
    (item,), exact = identify(parse_caption(caption.replace(phrase, other_loc)), truth)
    assert item[1]["category"] and item[1]["attributes"] and not item[1]["location"] and not exact
    assert identify(parse_caption("  " + caption.upper().replace(" ", "  ") + " ."), truth)[
        1
    ]  # spacing, case
    (item,), exact = identify(parse_caption(NO_CHANGE_TEMPLATES[0]), truth)
    assert not any(item[1].values()) and not exact
    (item,), exact = identify(parse_caption("blah blah"), truth)
    assert not exact and not parse_caption("blah blah").parsed


# ---------------------------------------------------------------------------------------------- determinism
# sha256 of (before bytes, after bytes, captions) of val pairs 0..2 at 64 px with the shipped config.
EXPECTED_HASHES = ["3f52d33f26041fb1", "4b99275a62a0deb8", "a75b3b0a71e9aded"]


def sample_hash(sample) -> str:
    h = hashlib.sha256()
    h.update(sample["before"].numpy().tobytes())
    h.update(sample["after"].numpy().tobytes())
    h.update(json.dumps([sample["pair_id"], sample["captions"], sample["categories"]]).encode())
    return h.hexdigest()[:16]


def test_samples_are_deterministic():
    first, second = make_dm().dataset("val"), make_dm().dataset("val")
    hashes = [sample_hash(first[i]) for i in range(3)]
    assert hashes == [sample_hash(second[i]) for i in range(3)]  # two independent constructions
    assert hashes == [sample_hash(first[i]) for i in range(3)]  # and again, in another order of calls
    assert hashes == EXPECTED_HASHES


def test_data_does_not_depend_on_workers_or_run_seed():
    dm = make_dm(num_workers=2, eval_batch_size=4, val_size=8)
    dm.setup("validate")
    via_workers = [s for batch in dm.val_dataloader() for s in batch["pair_id"]]
    assert via_workers == [f"val/{i:06d}" for i in range(8)]
    batch = next(iter(dm.val_dataloader()))
    direct = make_dm(val_size=8).dataset("val")
    other_seed = build_datamodule(
        data_config(val_size=8), image_size=64, mean=(0.5,) * 3, std=(0.5,) * 3, seed=99
    )
    for j in range(4):
        assert (batch["before"][j] == direct[j]["before"]).all() and batch["captions"][j] == direct[j][
            "captions"
        ]
        assert (other_seed.dataset("val")[j]["after"] == direct[j]["after"]).all()


def test_splits_are_disjoint():
    dm = make_dm()
    seen: dict[bytes, str] = {}
    for split in ("train", "val", "test"):
        for spec in [sample_pair(dm.generator, split, i) for i in range(150)]:
            key = repr((spec.before, spec.after)).encode()
            assert key not in seen, f"{spec.pair_id} repeats {seen[key]}"
            seen[key] = spec.pair_id
            assert parse_pair_id(spec.pair_id) == (split, spec.index)


# ---------------------------------------------------------------------------------------------- DataModule
def test_datamodule_batches_follow_the_contract():
    dm = make_dm(num_workers=0, batch_size=4)
    dm.setup("fit")
    assert len(dm.dataset("train")) == 100_000 and len(dm.dataset("val")) == 512
    batch = next(iter(dm.train_dataloader()))
    assert batch["before"].shape == batch["after"].shape == (4, 3, 64, 64)
    assert batch["benchmark"] == ["synthetic"] * 4
    for j in range(4):
        check_sample({k: v[j] for k, v in batch.items()}, where=f"train batch item {j}")
    sample = dm.dataset("val")[0]
    check_sample(sample)
    assert (
        sample["pair_id"] == "val/000000"
        and -1.01 <= float(sample["before"].min()) <= float(sample["before"].max()) <= 1.01
    )


def test_training_captions_do_not_render(monkeypatch):
    import datamodules.synthetic.datamodule as synthetic

    monkeypatch.setattr(synthetic, "render_pair", lambda *a, **k: pytest.fail("rendered an image"))
    dm = make_dm()
    captions = dm.training_captions(50)
    assert 150 <= len(captions) <= 250 and all(isinstance(c, str) and c for c in captions)
    assert captions == dm.training_captions(50)
    assert dm.reference_captions("val")["val/000000"] == list(sample_pair(dm.generator, "val", 0).captions)


def test_change_identification_scores():
    dm = make_dm(val_size=120)
    specs = dm.specs("val")
    perfect = dm.change_identification("val", {s.pair_id: s.captions[-1] for s in specs})
    assert perfect["exact"] == perfect["category"] == perfect["parsed"] == 1.0
    assert {f"category/{label}" for label in LABELS} <= set(perfect) and "exact/no_change" in perfect
    assert all(0.0 <= v <= 1.0 for v in perfect.values())
    trivial_caption = dm.most_common_training_caption(pairs=500)
    trivial = dm.change_identification("val", {s.pair_id: trivial_caption for s in specs})
    assert trivial["exact"] < 0.3 and trivial["category"] < 0.3
    # naming the right change on the wrong object scores the category but not the attributes
    wrong = {}
    for s in specs:
        if s.categories == ("color",):
            truth = change_slots(s.changes[0])
            wrong[s.pair_id] = (
                s.captions[0]
                .replace(f" {truth['color']} ", " zzz ", 1)
                .replace(" zzz ", f" {'red' if truth['color'] != 'red' else 'blue'} ")
            )
    scores = dm.change_identification("val", wrong)
    assert scores["category/color"] == 1.0 and scores["attributes/color"] == 0.0 and scores["exact"] == 0.0


def test_baseline_predictions():
    dm = make_dm(val_size=40)
    baselines = dm.baseline_predictions("val")
    refs, preds = baselines["ceiling"]
    assert set(refs) == set(preds) and len(preds) == 40
    for pid, pred in preds.items():
        assert pred not in refs[pid] and len(refs[pid]) >= 2
    refs, preds = baselines["trivial"]
    assert len(set(preds.values())) == 1 and set(refs) == set(preds)
    assert next(iter(preds.values())) == dm.most_common_training_caption()


# ---------------------------------------------------------------------------------------------- export
def test_export_writes_pairs_annotations_and_contact_sheet(tmp_path):
    from experiments.synth import export, main

    dm = make_dm()
    out = tmp_path / "synth"
    records = export(dm, out, 3, ["val", "test"])
    data = json.loads((out / "annotations.json").read_text())
    assert data == records and len(data) == 6
    assert set(data[0]) == {"id", "before", "after", "captions", "categories", "split"}
    assert data[0]["id"] == "val/000000" and data[0]["before"] == "images/val_000000_before.png"
    assert data[3]["split"] == "test"
    _, before, _ = dm.dataset("val").images(0)
    assert Image.open(out / data[0]["before"]).convert("RGB").tobytes() == before.tobytes()
    assert Image.open(out / "contact_sheet.png").size[0] > 0
    assert main(["--out", str(out), "--n", "2"]) == 2  # non-empty OUT: refused, nothing touched
    assert json.loads((out / "annotations.json").read_text()) == records
    assert main(["--out", str(out), "--n", "2", "--force", "--args", "backbone.image_size=48"]) == 0
    assert Image.open(out / "images/val_000000_before.png").size == (48, 48)
    assert main(["--out", str(tmp_path / "x"), "--n", "600", "--split", "val"]) == 2  # more than val_size


def test_exported_pairs_read_back_with_the_pairs_datamodule(tmp_path):
    from experiments.synth import export

    pairs = pytest.importorskip("datamodules.pairs")
    dm = make_dm()
    export(dm, tmp_path, 2, ["val"])
    reader = pairs.PairsDataModule(root=str(tmp_path), annotations="annotations.json", image_size=64)
    sample = reader.dataset("val")[0]
    original = dm.dataset("val")[0]
    assert sample["pair_id"] == original["pair_id"] and sample["captions"] == original["captions"]
    assert (sample["before"] == original["before"]).all()


def test_benchmark_reports_rates():
    from experiments.synth import benchmark

    rates = benchmark(make_dm(), seconds=0.4)
    assert rates["pairs_per_s"] > 0 and rates["captions_only_pairs_per_s"] > rates["pairs_per_s"]
