"""Subsets of a benchmark scored separately (OmniDiff-Real / OmniDiff-Render): the rule (path glob or field),
the samples' ``subset`` key, the rescored ``val/CIDEr/<subset>`` keys, and their table in compare.md."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from support.data import build_mini, make_dm
from support.files import write_json

from callbacks.caption_metrics import CaptionMetricsCallback
from datamodules.contract import check_sample, collate_pairs
from datamodules.errors import DataError
from evaluation import CaptionScorer, build_subsets
from experiments import data_info
from experiments.common.config import load_config
from experiments.compare import report
from experiments.compare.runs import Run, collect
from lightning_modules.pair_metrics import CaptionRecords, unique_pairs


def test_omnidiff_pairs_are_real_or_render_by_path(tmp_path, capsys):
    mini = build_mini("omnidiff", tmp_path / "omni")
    dm = make_dm("omnidiff", mini.root)
    assert {r.pair_id: r.subset for r in dm.records("test")} == {
        "test_0": "real",
        "test_1": "render",
        "test_2": "real",
    }
    samples = [dm.dataset("test")[i] for i in range(3)]
    for sample in samples:
        check_sample(sample)
    assert collate_pairs(samples)["subset"] == ["real", "render", "real"]
    assert data_info.main(["--data", "omnidiff", "--root", str(mini.root), "--json", "1"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["splits"]["test"]["subsets"] == {"real": 2, "render": 1}
    assert data_info.main(["--data", "omnidiff", "--root", str(mini.root), "--split", "train"]) == 0
    assert "(subsets: real 2, render 2; 0 in none)" in capsys.readouterr().out


def test_subset_from_a_field_and_an_ambiguous_rule(tmp_path):
    mini = build_mini("omnidiff", tmp_path / "omni")
    records = json.loads(mini.annotation("test").read_text())
    for record, source in zip(records, ["Real", "render", None]):
        if source:
            record["source"] = source
    write_json(mini.annotation("test"), records)
    rule = {"subset_by": "field:source", "subsets": {"real": "real", "render": "render"}}
    dm = make_dm("omnidiff", mini.root, **rule)
    assert [r.subset for r in dm.records("test")] == ["real", "render", ""]  # no field: in no subset
    with pytest.raises(
        DataError, match=r"test.json: record \[0\]: 'before' path 'Real/test_0_a.png' matches "
    ):
        make_dm("omnidiff", mini.root, subsets={"real": "*real*", "photo": "*.png"}).records("test")
    with pytest.raises(ValueError, match="data.subset_by must be 'path' or 'field:<name>'"):
        make_dm("omnidiff", mini.root, subset_by="field:")
    assert all(r.subset == "" for r in make_dm("omnidiff", mini.root, subsets={}).records("test"))


def test_subsets_are_rescored_like_categories():
    records = CaptionRecords()
    records.update(["a", "b", "c"], ["x", "y", "z"], [["x"], ["y"], ["z"]], [[], [], []], ["o", "o", "o"])
    records.update(["d"], ["w"], [["w"]], [[]], ["o"], ["real"])
    records.update(["e", "f"], ["v", "u"], [["v"], ["u"]], [[], []], ["o", "o"], ["render", None])
    pairs = unique_pairs(records.compute())
    assert [p["subset"] for p in pairs.values()] == ["", "", "", "real", "render", ""]
    subsets = build_subsets(pairs, ["color"], {})
    assert subsets["subsets"] == {"real": ["d"], "render": ["e"]}
    assert "subsets" not in build_subsets({k: v for k, v in pairs.items() if k in "abc"})
    with pytest.raises(ValueError, match=r"subset names \['real'\] are also category or group names"):
        build_subsets(pairs, ["real"], {})


class FirstReference(L.LightningModule):
    """Predicts each pair's first reference for 'real' pairs and a wrong caption otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        real = batch.get("subset") or [None] * len(batch["pair_id"])
        return {
            "pair_id": batch["pair_id"],
            "prediction": [
                r[0] if s == "real" else "a cat sat on the mat" for r, s in zip(batch["captions"], real)
            ],
        }


@pytest.fixture(scope="module")
def scorer():
    with CaptionScorer(meteor=False, progress=False) as s:
        yield s


@pytest.mark.parametrize("mixture", [False, True])
def test_validation_logs_each_subset(tmp_path, scorer, mixture):
    omni = build_mini("omnidiff", tmp_path / "omni")
    if mixture:
        spot = build_mini("spot_the_diff", tmp_path / "spot")
        members = [
            {"name": "omnidiff", "root": str(omni.root)},
            {"name": "spot_the_diff", "root": str(spot.root)},
        ]
        dm = make_dm("mixture", tmp_path, members=members)
    else:
        dm = make_dm("omnidiff", omni.root)
    callback = CaptionMetricsCallback(scorer=scorer, output_dir=tmp_path / "eval")
    trainer = L.Trainer(
        callbacks=[callback], logger=False, enable_progress_bar=False, enable_model_summary=False, devices=1
    )
    trainer.validate(FirstReference(), datamodule=dm, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    # One pair per subset here (CIDEr's IDF is 0 on a one-pair corpus): the right caption scores ROUGE-L 1.
    assert metrics["val/ROUGE_L/real"] == pytest.approx(1.0) and metrics["val/ROUGE_L/render"] < 0.3
    assert {"val/CIDEr/real", "val/CIDEr/render", "val/Bleu_4/real"} <= set(metrics)
    (folder,) = (tmp_path / "eval").iterdir()
    subsets = json.loads((folder / "subsets.json").read_text())
    assert subsets["subsets"] == {"real": ["val_0"], "render": ["val_1"]}
    assert "subsets/real" in (folder / "metrics.md").read_text()


def test_compare_table_has_a_subset_section(tmp_path):
    cfg = load_config(groups={"data": "omnidiff"}, overrides=["trainer.max_steps=10"])
    run = Run("", "siglip", "default", "siglip-tiny", "default/siglip-tiny", status="ok", steps=10)
    folder = tmp_path / "default" / "siglip-tiny" / "version_0"
    write_json(
        folder / "final_metrics.json", {"val/CIDEr": 0.5, "val/CIDEr/real": 0.75, "val/CIDEr/render": 0.25}
    )
    write_json(folder / "eval" / "val-step10" / "metrics.json", {"step": 10})
    write_json(
        folder / "eval" / "val-step10" / "subsets.json",
        {"categories": {}, "subsets": {"real": [], "render": []}},
    )
    collect(run, tmp_path, set())
    assert run.subsets == ["real", "render"] and run.steps == 10
    lines = report.render_markdown("demo", [run], cfg, "make compare").splitlines()
    at = lines.index("## CIDEr by subset (x100)")
    assert lines[at + 2 : at + 5] == ["| experiment | backbone | real | render |", "|---|---|---:|---:|", "| default | siglip-tiny | 75.00 | 25.00 |"]  # fmt: skip
    assert "## CIDEr by change category (x100)" not in lines  # real / render are not categories
