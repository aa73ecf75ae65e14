"""The embedded benchmark's data: deterministic and split-disjoint, the DataModule keeps the contract and scores
change identification, and an export reads back with the pairs DataModule."""

from __future__ import annotations

import hashlib
import json

import pytest
from PIL import Image
from support.synthetic import LABELS, data_config, make_dm

from datamodules import build_datamodule
from datamodules.contract import check_sample
from datamodules.synthetic.changes import sample_pair
from datamodules.synthetic.grammar import change_slots
from datamodules.synthetic.spec import parse_pair_id

# ---------------------------------------------------------------------------------------------- determinism
# sha256 of (before bytes, after bytes, captions) of val pairs 0..2 at 64 px with the shipped config (sensor
# noise and jitter on), and of the clean renderings (noise=0, jitter=0: what the benchmark drew before both).
EXPECTED_HASHES = ["61bda01ed4aa051d", "e5011445a8553a4c", "bb90f4d6a6d95c68"]
CLEAN_HASHES = ["3f52d33f26041fb1", "4b99275a62a0deb8", "a75b3b0a71e9aded"]


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
    clean = make_dm(noise=0.0, jitter=0.0).dataset("val")
    assert [sample_hash(clean[i]) for i in range(3)] == CLEAN_HASHES


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
    records, _ = export(dm, out, 3, ["val", "test"])
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
    config = pairs.PairsConfig(root=str(tmp_path), annotations="annotations.json")
    reader = pairs.PairsDataModule(config, image_size=64, mean=(0.5,) * 3, std=(0.5,) * 3, seed=0)
    sample = reader.dataset("val")[0]
    original = dm.dataset("val")[0]
    assert sample["pair_id"] == original["pair_id"] and sample["captions"] == original["captions"]
    assert (sample["before"] == original["before"]).all()


def test_benchmark_reports_rates():
    from datamodules.synthetic.throughput import generator_throughput

    rates = generator_throughput(make_dm(), seconds=0.4)
    assert rates["pairs_per_s"] > 0 and rates["captions_only_pairs_per_s"] > rates["pairs_per_s"]
