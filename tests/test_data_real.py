"""The loaders on the RELEASED annotation files (../shared/benchmarks): counts, ids, references, categories and
the evaluation ground truth must match the files (FORMATS.md's verified numbers; the later works' GT files)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from support.data import make_dm
from support.files import BENCHMARKS, copy_real, placeholder_images

from datamodules.contract import check_sample
from evaluation import coco_ground_truth
from experiments import data_info

pytestmark = pytest.mark.skipif(
    not BENCHMARKS.is_dir(), reason="the shared benchmark annotation files are absent"
)


def counts(dm, split):
    """pairs, unique ids, references (index only: no image is opened)."""
    refs = dm.reference_captions(split)
    return len(dm.records(split)), len(refs), sum(len(v) for v in refs.values())


def test_spot_the_diff_counts():
    dm = make_dm("spot_the_diff", BENCHMARKS / "spot-the-diff")
    assert counts(dm, "train") == (8566, 8566, 17676)
    assert counts(dm, "val") == (1493, 1493, 3310)
    assert counts(dm, "test") == (1270, 1270, 2107)
    per_id = Counter(len(v) for v in dm.reference_captions("test").values())
    assert per_id[1] == 739 and max(per_id) == 11
    assert all(pid.endswith(".png") for pid in dm.reference_captions("test"))


def test_iedit_counts():
    dm = make_dm("iedit", BENCHMARKS / "iedit")
    assert counts(dm, "train") == (3061, 3061, 3061)
    assert counts(dm, "val") == (383, 383, 1149)
    assert counts(dm, "test") == (495, 495, 1485)
    assert "Reddit_1052" in dm.reference_captions("test")


def test_clevr_change_counts_without_caption_files():
    """The caption files are not in the shared folder: inspection still counts pairs and types."""
    dm = make_dm("clevr_change", BENCHMARKS / "clevr-change")
    sizes = {"train": 33830, "val": 1988, "test": 3985}
    for split, scenes in sizes.items():
        report = dm.inspect(split, check_images="none")
        assert report.pairs == report.unique_ids == 2 * scenes
        assert report.categories["distractor"] == scenes
        assert report.references is None  # unknown without change_captions.json
        assert any("change_captions.json" in p for p in report.problems)
    test = dm.inspect("test", check_images="none").categories
    assert test == {"color": 797, "texture": 797, "add": 797, "drop": 797, "move": 797, "distractor": 3985}
    # the whole file: type_mapping sizes
    total = Counter()
    for split in sizes:
        total.update(dm.inspect(split, check_images="none").categories)
    assert [total[t] for t in ("color", "texture", "add", "drop", "move")] == [7958, 7963, 7966, 7961, 7955]


def test_clevr_change_loads_with_placeholder_captions(tmp_path):
    """With caption files written for the real ids, the normal (raising) path indexes every split."""
    root = copy_real("clevr-change", tmp_path / "clevr")
    scenes = json.loads((root / "splits.json").read_text())
    keys = [f"CLEVR_default_{i:06d}.png" for ids in scenes.values() for i in ids]
    (root / "change_captions.json").write_text(
        json.dumps({k: ["the red cube moved", "a cube moved"] for k in keys})
    )
    (root / "no_change_captions.json").write_text(json.dumps({k: ["no change was made"] for k in keys}))
    dm = make_dm("clevr_change", root)
    assert counts(dm, "test") == (7970, 7970, 3985 * 3)
    ids = list(dm.reference_captions("test"))
    assert ids[:3985] == [f"{i:06d}.png" for i in scenes["test"]]
    assert ids[3985:] == [f"{i:06d}.png_n" for i in scenes["test"]]


def test_clevr_dc_counts():
    dm = make_dm("clevr_dc", BENCHMARKS / "clevr-dc")
    for split, n in {"train": 40800, "val": 2400, "test": 4800}.items():
        report = dm.inspect(split, check_images="none")
        assert report.pairs == report.unique_ids == n
        assert set(report.categories.values()) == {n // 6}
    records = dm.inspect("test", check_images="none")
    assert records.categories == dict.fromkeys(["color", "texture", "add", "drop", "move", "distractor"], 800)


def _gt_by_id(path):
    gt = json.loads(path.read_text())
    refs = defaultdict(list)
    for ann in gt["annotations"]:
        refs[ann["image_id"]].append(ann["caption"])
    return refs


@pytest.mark.parametrize(
    ("name", "sub", "gt_file"),
    [
        ("spot_the_diff", "spot-the-diff", "spot_total_change_captions_reformat.json"),
        ("iedit", "iedit", "IER_test_change_captions_reformat.json"),
    ],
)
def test_ground_truth_matches_published_files(name, sub, gt_file):
    """The COCO GT the kit writes for the test split == the later works' files, id for id, ref for ref."""
    dm = make_dm(name, BENCHMARKS / sub)
    ours = coco_ground_truth(dm.reference_captions("test"))
    ours_refs = defaultdict(list)
    for ann in ours["annotations"]:
        ours_refs[ann["image_id"]].append(ann["caption"])
    theirs = _gt_by_id(BENCHMARKS / "eval-gt" / gt_file)
    assert list(ours_refs) == list(theirs)  # same ids, same order
    assert dict(ours_refs) == dict(theirs)  # same references per id, same order
    assert len(ours["annotations"]) == sum(len(v) for v in theirs.values())


def test_spot_the_diff_matches_original_ddla_gt():
    """The original repo's GT (bare img_id) also has exactly our references per id."""
    dm = make_dm("spot_the_diff", BENCHMARKS / "spot-the-diff")
    theirs = _gt_by_id(BENCHMARKS / "spot-the-diff" / "predictions" / "ddla_rerun_gtfile.json")
    ours = {k.removesuffix(".png"): v for k, v in dm.reference_captions("test").items()}
    assert {k: sorted(v) for k, v in ours.items()} == {k: sorted(v) for k, v in theirs.items()}


def test_spot_the_diff_test_split_loads_with_placeholders(tmp_path):
    root = copy_real("spot-the-diff", tmp_path / "spot")
    dm = make_dm("spot_the_diff", root)
    records = dm.records("test")
    placeholder_images(p for r in records for p in (r.before, r.after))
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch["pair_id"][:2] == ["256.png", "294.png"]
    assert batch["before"].shape == (4, 3, 16, 16)
    assert len(dm.dataset("test")) == 1270


def test_iedit_test_split_loads_mixed_formats(tmp_path):
    """Placeholders in each file's own format (jpg, png, JPG, gif): every test pair loads as RGB."""
    root = copy_real("iedit", tmp_path / "iedit")
    (root / "images").mkdir()
    dm = make_dm("iedit", root)
    records = dm.records("test")
    n = placeholder_images(p for r in records for p in (r.before, r.after))
    assert n == 848  # distinct image files of the test split (FORMATS.md)
    assert {Path(p).suffix for r in records for p in (r.before, r.after)} >= {".jpg", ".png", ".gif"}
    dataset = dm.dataset("test")
    for i in range(len(dataset)):
        check_sample(dataset[i], where=f"iedit test {i}")


def test_data_info_on_real_files(capsys):
    """Counts are right although no image is there; missing images are problems (exit 1)."""
    code = data_info.main(
        [
            "--data",
            "spot_the_diff",
            "--root",
            str(BENCHMARKS / "spot-the-diff"),
            "--split",
            "test",
            "--json",
            "1",
        ]
    )
    info = json.loads(capsys.readouterr().out)
    assert code == 1
    assert (info["pairs"], info["references"]) == (1270, 2107)
    # Every missing file is listed once (before and after of each pair), and counted.
    assert info["problem_count"] == info["missing_images"] == 2 * 1270 and "256.png" in info["problems"][0]
    assert "image file not found" in info["problems"][0]

    code = data_info.main(
        ["--data", "clevr_change", "--root", str(BENCHMARKS / "clevr-change"), "--split", "test", "--json", "1",
         "--args", "--check-images=none"]
    )  # fmt: skip
    info = json.loads(capsys.readouterr().out)
    assert code == 1 and info["pairs"] == 7970 and info["references"] is None
    assert info["categories"]["distractor"] == 3985 and info["categories"]["texture"] == 797
    assert isinstance(info["problems"], list)
