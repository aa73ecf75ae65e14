"""Hand-made mini copies of each benchmark's released layout, loaded end to end through the DataModule into
contract batches (the tiny copies of tests/support/data.py)."""

from __future__ import annotations

import json

import pytest
import torch
from support.clevr import CLEVR_SPLITS, make_clevr_change, make_clevr_dc
from support.data import BUILDERS, build_mini, make_dm
from support.records import LONG_CAPTION, make_iedit, make_pairs, make_spot, pairs_records

from datamodules.contract import check_sample
from datamodules.records import RecordDataModule
from datamodules.samplers import ResumableSampler


def all_batches_ok(dm, stage_splits=(("fit", "train"), ("fit", "val"), ("test", "test"))):
    for stage, split in stage_splits:
        dm.setup(stage)
        loader = {"train": dm.train_dataloader, "val": dm.val_dataloader, "test": dm.test_dataloader}[split]()
        for batch in loader:
            assert batch["before"].shape == batch["after"].shape
            assert batch["before"].shape[1:] == (3, 16, 16)
            for i in range(len(batch["pair_id"])):
                sample = {k: (v[i] if k not in ("before", "after") else v[i]) for k, v in batch.items()}
                check_sample(sample, where=f"{dm.benchmark} {split} {sample['pair_id']}")
                assert sample["benchmark"] == dm.benchmark


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_mini_copy_loads_into_contract_batches(tmp_path, name):
    mini = build_mini(name, tmp_path / name)
    dm = make_dm(name, mini.root, **mini.overrides)
    assert isinstance(dm, RecordDataModule)
    all_batches_ok(dm)


# ------------------------------------------------------------------------------------------------ CLEVR-Change
def test_clevr_change_ids_types_and_order(tmp_path):
    mini = make_clevr_change(tmp_path / "clevr")
    dm = make_dm("clevr_change", mini.root)
    refs = dm.reference_captions("test")
    scenes = CLEVR_SPLITS["test"]
    assert list(refs) == [f"{i:06d}.png" for i in scenes] + [f"{i:06d}.png_n" for i in scenes]
    assert refs["000011.png"] == ["the tiny yellow cylinder turned brown 11", "the small cube has moved"]
    assert refs["000011.png_n"] == ["the scene remains the same", "no change was made"]
    cats = dm.pair_categories("test")
    # type = CLEVR_TYPES[id % 5]; "material" is reported as "texture"
    assert (
        cats["000011.png"] == ["texture"]
        and cats["000000.png"] == ["color"]
        and cats["000002.png"] == ["add"]
    )
    assert (
        cats["000008.png"] == ["drop"]
        and cats["000004.png"] == ["move"]
        and cats["000004.png_n"] == ["distractor"]
    )
    every = {pid for s in ("train", "val", "test") for pid in dm.reference_captions(s)}
    assert "000012.png" not in every and len(every) == 2 * 12  # scene 12 is in no split: ignored
    assert dm.groups == {"semantic": ["color", "texture", "add", "drop", "move"]}
    record = dm.records("test")[0]
    assert record.before.endswith("images/CLEVR_default_000011.png")
    assert record.after.endswith("sc_images/CLEVR_semantic_000011.png")


def _is_blue(t: torch.Tensor) -> bool:
    return bool(t[2].mean() > t[0].mean())


def test_clevr_change_swap_augmentation_is_seeded_and_train_only(tmp_path):
    mini = make_clevr_change(tmp_path / "clevr")
    dm = make_dm("clevr_change", mini.root, swap_prob=0.5)
    dm.setup("fit")
    train = dm.dataset("train")
    n_change = len(CLEVR_SPLITS["train"])
    swapped = []
    for epoch in range(12):
        change, distractor = train.get(0, epoch), train.get(n_change, epoch)  # the two pairs of scene 7
        assert change["pair_id"] == "000007.png" and distractor["pair_id"] == "000007.png_n"
        # swapped: "before" is the nonsemantic (blue) image; the distractor's "after" is then the default (red)
        assert _is_blue(change["before"]) == _is_blue(distractor["before"])
        if _is_blue(distractor["before"]):
            assert not _is_blue(distractor["after"])
        swapped.append(_is_blue(change["before"]))
        assert torch.equal(train.get(0, epoch)["before"], change["before"])  # deterministic in (seed, epoch)
    assert 0 < sum(swapped) < len(swapped)
    # the key from the sampler carries the epoch
    assert torch.equal(train[3 * len(train) + 0]["before"], train.get(0, 3)["before"])
    dm.setup("test")
    test = dm.dataset("test")
    assert not any(_is_blue(test.get(0, e)["before"]) for e in range(8))
    off = make_dm("clevr_change", mini.root, swap_prob=0.0)
    assert not any(_is_blue(off.dataset("train").get(0, e)["before"]) for e in range(8))


# ------------------------------------------------------------------------------------------------ CLEVR-DC
@pytest.mark.parametrize("layout", ["raw", "renamed"])
def test_clevr_dc_both_layouts(tmp_path, layout):
    mini = make_clevr_dc(tmp_path / "dc", layout=layout)
    dm = make_dm("clevr_dc", mini.root, **mini.overrides)
    assert dm.resolved_layout() == layout
    refs = dm.reference_captions("test")
    assert list(refs) == ["000004.png", "000009.png", "000014.png", "000019.png", "000024.png", "000029.png"]
    assert refs["000029.png"] == ["no change was made"]
    cats = dm.pair_categories("test")
    assert [c[0] for c in cats.values()] == ["color", "texture", "add", "drop", "move", "distractor"]
    all_batches_ok(dm)


def test_clevr_dc_caption_key_forms_and_block_order(tmp_path):
    """Raw images with DIRL's change_captions.json ("%06d.png" keys); block order is a config key."""
    mini = make_clevr_dc(tmp_path / "dc", layout="raw")
    captions = json.loads((mini.root / "captions.json").read_text())
    (mini.root / "captions.json").unlink()
    (mini.root / "change_captions.json").write_text(
        json.dumps({f"{int(k):06d}.png": v for k, v in captions.items()})
    )
    order = ["move", "drop", "add", "texture", "color", "distractor"]
    dm = make_dm("clevr_dc", mini.root, block_size=5, block_types=order)
    assert [c[0] for c in dm.pair_categories("test").values()] == order
    assert dm.reference_captions("test")["000004.png"] == ["the object 4 changed", "it changed"]


# ------------------------------------------------------------------------------------------------ Spot-the-Diff
def test_spot_the_diff_merges_repeated_ids_in_file_order(tmp_path):
    mini = make_spot(tmp_path / "spot")
    dm = make_dm("spot_the_diff", mini.root)
    refs = dm.reference_captions("test")
    assert list(refs) == ["256.png", "294.png", "187.png"]  # one pair per unique id, first-appearance order
    assert refs["256.png"] == [
        "person with umbrella is gone",
        "person with red coat is moved",
        "car is missing",
        "the umbrella person left",
    ]
    assert all(not p.endswith("_diff.jpg") for r in dm.records("test") for p in r.files)


def test_spot_the_diff_blank_references_kept_for_eval_not_trained(tmp_path):
    mini = make_spot(tmp_path / "spot")
    dm = make_dm("spot_the_diff", mini.root)
    assert dm.reference_captions("train")["3.png"] == [""]  # as released, part of the ground truth
    dm.setup("fit")
    assert "3.png" not in {dm.dataset("train")[i]["pair_id"] for i in range(len(dm.dataset("train")))}


# ------------------------------------------------------------------------------------------------ IEdit
@pytest.mark.parametrize("val_name", ["valid.json", "val.json"])
def test_iedit_val_file_names_and_shared_pairs(tmp_path, val_name):
    mini = make_iedit(tmp_path / "iedit", val_name=val_name)
    dm = make_dm("iedit", mini.root)
    assert dm.reference_captions("val") == {"Reddit_9": ["Add a hat.", 'put a "hat" on him', "hat"]}
    test = dm.records("test")
    assert [r.pair_id for r in test] == ["Reddit_1052", "Reddit_1053", "Reddit_1071"]
    assert (test[0].before, test[0].after) == (
        test[1].before,
        test[1].after,
    )  # one pair, two uids, two samples
    dm.setup("test")
    dataset = dm.dataset("test")
    for i in range(len(dataset)):  # gif after-image, RGBA png, different before/after sizes
        check_sample(dataset[i])


# ------------------------------------------------------------------------------------------------ pairs / OmniDiff
@pytest.mark.parametrize("jsonl", [False, True])
def test_pairs_json_and_jsonl(tmp_path, jsonl):
    mini = make_pairs(tmp_path / "pairs", jsonl=jsonl)
    dm = make_dm("pairs", mini.root)
    assert [len(dm.records(s)) for s in ("train", "val", "test")] == [4, 2, 3]
    refs = dm.reference_captions("test")
    assert refs["test_0"] == [LONG_CAPTION, "something changed"]  # long captions kept whole
    assert dm.pair_categories("test")["test_1"] == ["color"]
    all_batches_ok(dm)


def test_pairs_one_file_per_split_and_default_split(tmp_path):
    mini = make_pairs(tmp_path / "pairs")
    (mini.root / "pairs.json").unlink()
    by_split: dict[str, list] = {}
    for r in pairs_records():
        by_split.setdefault(r.pop("split"), []).append(r)
    for split, records in by_split.items():
        (mini.root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    dm = make_dm("pairs", mini.root)  # found by the search: {split}.jsonl
    assert [len(dm.records(s)) for s in ("train", "val", "test")] == [4, 2, 3]
    dm = make_dm("pairs", mini.root, annotations="test.jsonl", default_split="test")  # no split field
    assert list(dm.reference_captions("test")) == ["test_0", "test_1", "test_2"]
    assert dm.records("train") == []


def test_omnidiff_adapter_reads_other_field_names(tmp_path):
    mini = build_mini("omnidiff", tmp_path / "omni")
    dm = make_dm("omnidiff", mini.root)
    refs = dm.reference_captions("test")
    assert refs["test_0"] == [LONG_CAPTION]  # a single string caption, kept whole (~60 words)
    assert len(LONG_CAPTION.split()) > 55
    assert dm.pair_categories("test") == {
        "test_0": ["disappearance"],
        "test_1": ["color"],
        "test_2": ["disappearance"],
    }
    assert len(dm.categories) == 12


def test_omnidiff_explicit_field_names_and_category_map(tmp_path):
    root = tmp_path / "omni"
    mini = build_mini("omnidiff", root)
    records = json.loads(mini.annotation("test").read_text())
    renamed = [
        {
            "key": r["id"],
            "a": r["image_before"],
            "b": r["image_after"],
            "text": [r["caption"]],
            "kind": "vanished",
        }
        for r in records
    ]
    mini.annotation("test").write_text(json.dumps(renamed))
    dm = make_dm(
        "omnidiff",
        root,
        fields={"id": "key", "before": "a", "after": "b", "captions": "text", "categories": "kind"},
        category_map={"vanished": "disappearance"},
    )
    assert dm.pair_categories("test")["test_1"] == ["disappearance"]


# ------------------------------------------------------------------------------------------------ sampler
def test_epoch_sampler_is_seeded_and_encodes_the_epoch():
    a, b = ResumableSampler(10, seed=3), ResumableSampler(10, seed=3)
    first, again = list(a), list(b)
    assert first == again and sorted(first) == list(range(10))  # epoch 0: a permutation, reproducible
    second = list(a)  # no set_epoch: the next iteration is the next epoch
    assert sorted(second) == list(range(10, 20)) and [k - 10 for k in second] != first
    b.set_epoch(1)
    assert list(b) == second
    weighted = ResumableSampler(10, seed=0, num_samples=2000, weights=[1.0] * 5 + [0.0] * 5)
    assert max(weighted) < 5 and len(list(weighted)) == 2000


def test_configs_select_each_datamodule(tmp_path):
    from experiments.common.config import load_config

    for name, cls in {
        "clevr_change": "ClevrChangeDataModule",
        "clevr_dc": "ClevrDCDataModule",
        "spot_the_diff": "SpotTheDiffDataModule",
        "iedit": "IEditDataModule",
        "omnidiff": "OmniDiffDataModule",
        "pairs": "PairsDataModule",
        "birds_to_words": "BirdsToWordsDataModule",
        "llava": "LlavaDataModule",
    }.items():
        mini = build_mini(name, tmp_path / name)
        cfg = load_config(groups={"data": name}, overrides=[f"data.root={mini.root}"])
        assert cfg.data.root == str(mini.root)
        dm = make_dm(name, mini.root, **mini.overrides)
        assert type(dm).__name__ == cls and dm.benchmark == name
