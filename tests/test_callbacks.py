"""The evaluation callbacks in a real ``lightning.Trainer``: a tiny module that emits known captions and a
tiny DataModule drive fit / validate / test; the TensorBoard event files and the run folder are checked.

METEOR is off here (its JVM start would dominate); the scorer's agreement with pycocoevalcap, METEOR
included, is tests/test_scoring.py's job.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from support.events import read_layout, unmatched_tags
from support.tiny_eval import CATEGORIES, SIZE, TinyCaptioner, TinyDataModule
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from callbacks.caption_metrics import CaptionMetricsCallback, monitor_key
from callbacks.panels import PanelsCallback, compose_panel
from callbacks.tensorboard import HparamsCallback, ScalarLayout, flatten_hparams, scalar_layout
from evaluation import CaptionScorer, build_subsets
from experiments.score import score_files
from lightning_modules.pair_metrics import CaptionRecords, unique_pairs


@pytest.fixture(scope="module")
def scorer():
    with CaptionScorer(meteor=False, progress=False) as s:
        yield s


# ---------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def run(tmp_path_factory, scorer):
    """fit (2 epochs, sanity check on) -> validate -> test, with every callback and a TensorBoard logger."""
    root = tmp_path_factory.mktemp("run")
    dm = TinyDataModule()
    module = TinyCaptioner()
    metrics_cb = CaptionMetricsCallback(scorer=scorer)
    checkpoint = ModelCheckpoint(
        dirpath=root / "ckpt", monitor=monitor_key("CIDEr"), mode="max", save_top_k=1
    )
    logger = TensorBoardLogger(save_dir=root, name="run", default_hp_metric=False)
    trainer = L.Trainer(
        max_epochs=2,
        limit_train_batches=2,
        num_sanity_val_steps=1,
        logger=logger,
        callbacks=[
            metrics_cb,
            PanelsCallback(num_panels=2),
            ScalarLayout(change_id=False, training=False),
            HparamsCallback(
                hparams={"backbone": {"name": "tiny-test"}, "mdp": {"enabled": True, "layers": [1, 2]}}
            ),
            checkpoint,
        ],
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=dm)
    val_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    val_dir = metrics_cb.last_dir
    trainer.validate(module, datamodule=dm, verbose=False)
    trainer.test(module, datamodule=dm, verbose=False)
    acc = EventAccumulator(logger.log_dir, size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return {
        "trainer": trainer,
        "dm": dm,
        "acc": acc,
        "val_metrics": val_metrics,
        "val_dir": val_dir,
        "test_dir": metrics_cb.last_dir,
        "checkpoint": checkpoint,
        "log_dir": Path(logger.log_dir),
    }


def test_per_category_scalars_in_event_files(run):
    scalars = set(run["acc"].Tags()["scalars"])
    for stage in ("val", "test"):
        expected = {f"{stage}/{m}" for m in ("Bleu_1", "Bleu_4", "ROUGE_L", "CIDEr")}
        expected |= {f"{stage}/CIDEr/{c}" for c in [*CATEGORIES, "semantic"]}
        expected |= {f"{stage}/Bleu_4/color", f"{stage}/tiny_a/CIDEr", f"{stage}/tiny_b/Bleu_4"}
        expected |= {f"{stage}/ceiling/CIDEr", f"{stage}/trivial/Bleu_4", f"{stage}/change_id/accuracy"}
        assert expected <= scalars, expected - scalars
    assert not any(tag.startswith("hp/") for tag in scalars)  # the HPARAMS tab reads val/* and test/*
    # two fit epochs + one validate, none from the sanity check
    assert len(run["acc"].Scalars("val/CIDEr")) == 3
    assert run["acc"].Scalars("val/num_pairs")[0].value == 9


def test_logged_values_are_the_files_values(run):
    metrics = json.loads((run["val_dir"] / "metrics.json").read_text())
    assert (
        metrics["num_pairs"] == 9
        and metrics["stage"] == "val"
        and metrics["tokenizer"] in ("ptb", "fallback-regex")
    )
    assert run["val_metrics"]["val/CIDEr"] == pytest.approx(metrics["CIDEr"], rel=1e-6)
    assert run["val_metrics"]["val/CIDEr/move"] == pytest.approx(
        metrics["categories"]["move"]["CIDEr"], rel=1e-6
    )
    assert run["val_metrics"]["val/CIDEr/semantic"] == pytest.approx(
        metrics["groups"]["semantic"]["CIDEr"], rel=1e-6
    )
    assert (
        metrics["categories"]["color"]["num_pairs"] == 3 and metrics["groups"]["semantic"]["num_pairs"] == 6
    )
    assert set(metrics["benchmarks"]) == {"tiny_a", "tiny_b"}
    assert metrics["change_id"] == {"accuracy": pytest.approx(6 / 9)}  # the 3 "move" pairs get "no change"
    assert set(metrics["baselines"]) == {"ceiling", "trivial"} and "CIDEr" in metrics["baselines"]["trivial"]
    # the best checkpoint follows val/CIDEr
    assert run["checkpoint"].best_model_path
    assert float(run["checkpoint"].best_model_score) == pytest.approx(
        run["val_metrics"]["val/CIDEr"], rel=1e-6
    )


def test_run_folder_files_rescore_to_the_same_numbers(run):
    folder = run["val_dir"]
    assert folder == run["log_dir"] / "eval" / f"val-step{run['trainer'].global_step}"
    assert {p.name for p in folder.iterdir()} == {
        "gt.json",
        "pred.json",
        "subsets.json",
        "metrics.json",
        "metrics.md",
        "confusion.json",
    }
    gt = json.loads((folder / "gt.json").read_text())
    assert gt["type"] == "captions" and {"info", "licenses", "images", "annotations"} <= set(gt)
    assert gt["images"][0] == {"id": "val000.png", "filename": "val000.png"}
    assert [a["id"] for a in gt["annotations"]] == list(range(27))
    pred = json.loads((folder / "pred.json").read_text())
    assert sorted(p["image_id"] for p in pred) == [f"val{i:03d}.png" for i in range(9)]
    md = (folder / "metrics.md").read_text()
    for row in (
        "| overall | 9 |",
        "| categories/color | 3 |",
        "| groups/semantic | 6 |",
        "| baseline/ceiling |",
    ):
        assert row in md
    # anyone can rescore the files (make score GT=gt.json PRED=pred.json CATEGORIES=subsets.json)
    metrics = json.loads((folder / "metrics.json").read_text())
    again = score_files(
        folder / "gt.json", folder / "pred.json", folder / "subsets.json", meteor=False, progress=False
    )
    assert again.overall["CIDEr"] == pytest.approx(metrics["CIDEr"], abs=1e-12)
    assert again.subsets["categories"]["distractor"]["CIDEr"] == pytest.approx(
        metrics["categories"]["distractor"]["CIDEr"], abs=1e-12
    )
    assert (run["test_dir"] / "metrics.json").exists() and run["test_dir"].name.startswith("test-step")


def test_confusion_matrix_in_files_and_tensorboard(run):
    """Known captions: color and distractor pairs read right, the 3 "move" pairs get "no change" (distractor)."""
    confusion = json.loads((run["val_dir"] / "confusion.json").read_text())
    assert confusion["rows"] == CATEGORIES and confusion["columns"] == [*CATEGORIES, "unreadable"]
    assert confusion["counts"] == [[3, 0, 0, 0], [0, 0, 3, 0], [0, 0, 3, 0]]
    assert confusion["row_shares"][1] == [0.0, 0.0, 1.0, 0.0] and confusion["items"] == 9
    md = (run["val_dir"] / "metrics.md").read_text()
    assert "| move | 3 |  |  | 3 (100 %) |  |" in md and "| color | 3 | **3 (100 %)** |" in md
    images = run["acc"].Images("val/confusion")
    assert len(images) == 3 and images[-1].width >= 300  # one per validation (2 fit epochs + validate)
    assert {"test/confusion"} <= set(run["acc"].Tags()["images"])


def test_bar_charts_panels_and_text_in_event_files(run):
    acc = run["acc"]
    images = set(acc.Tags()["images"])
    assert {"val/by_category/CIDEr", "val/by_category/Bleu_4", "test/by_category/CIDEr"} <= images
    assert {"val_panels/0", "val_panels/1"} <= images and "val_panels/2" not in images
    panel = acc.Images("val_panels/0")[-1]
    assert (panel.width, panel.height) == (3 * SIZE + 2 * 4, SIZE)  # before | after | heatmap overlay
    text = acc.Tensors("val_panels/0/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert "val000.png" in text and "the cube turned red" in text and "generated:" in text


def test_hparams_tab(run):
    content = run["acc"].PluginTagToContent("hparams")
    start = content["_hparams_/session_start_info"]
    assert b"backbone.name" in start and b"tiny-test" in start and b"mdp.layers" in start
    experiment = content["_hparams_/experiment"]
    assert b"val/CIDEr" in experiment and b"test/CIDEr" in experiment and b"hp/" not in experiment


def test_custom_scalars_layout(run):
    layout = read_layout(run["acc"])
    assert list(layout) == ["val: overall", "val: by category", "val: per benchmark"]
    overall = layout["val: overall"]["CIDEr (with the ceiling and trivial reference points)"]
    assert overall == ["^val/CIDEr$", "^val/(ceiling|trivial)/CIDEr$"]
    assert layout["val: by category"]["CIDEr by category"][1] == "^val/CIDEr/(color|move|distractor)$"
    assert "CIDEr by group" in layout["val: by category"]
    assert layout["val: per benchmark"]["CIDEr per benchmark"] == ["^val/(tiny_a|tiny_b)/CIDEr$"]
    # every chart line has data (METEOR is off in these tests, so its charts stay empty here)
    scalars = set(run["acc"].Tags()["scalars"])
    assert [u for u in unmatched_tags(layout, scalars) if "METEOR" not in u] == []


# ---------------------------------------------------------------------------------------------- units
@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_records_roundtrip_and_dedupe():
    records = CaptionRecords()
    records.update(["a", "b"], ["x\ny", "ü ’"], [["r1"], ["r2", "r3"]], [["color"], []], ["bench", "bench"])
    records.update(["a"], ["again"], [["r1"]], [["color"]], ["bench"])
    out = records.compute()
    assert [r["pair_id"] for r in out] == ["a", "b", "a"]
    assert out[0]["prediction"] == "x\ny" and out[1]["prediction"] == "ü ’"
    pairs = unique_pairs(out)
    assert list(pairs) == ["a", "b"] and pairs["a"]["prediction"] == "x\ny"
    records.reset()
    assert records.compute() == []
    with pytest.raises(ValueError, match="lengths differ"):
        records.update(["a"], [], [], [], [])


def test_benchmarks_sharing_ids_are_kept_apart():
    rec = lambda pid, bench: {"pair_id": pid, "prediction": bench, "benchmark": bench}  # noqa: E731
    pairs = unique_pairs(
        [rec("000256.png", "clevr_change"), rec("000256.png", "clevr_dc"), rec("000256.png", "clevr_dc")]
    )
    assert list(pairs) == ["clevr_change/000256.png", "clevr_dc/000256.png"]
    assert list(unique_pairs([rec("000256.png", "clevr_dc")])) == ["000256.png"]
    assert list(unique_pairs([rec("1.png", "a"), rec("2.png", "b")])) == ["1.png", "2.png"]  # own ids kept


def test_build_subsets():
    pairs = {
        "1": {"categories": ["color"], "benchmark": "b1"},
        "2": {"categories": ["move", "color"], "benchmark": "b1"},
        "3": {"categories": [], "benchmark": "b2"},
    }
    subsets = build_subsets(pairs, ["color", "move", "size"], {"semantic": ["color", "move"]})
    assert subsets["categories"] == {"color": ["1", "2"], "move": ["2"], "size": []}
    assert subsets["groups"] == {"semantic": ["1", "2"]}
    assert subsets["benchmarks"] == {"b1": ["1", "2"], "b2": ["3"]}
    # no configured categories: the records' own
    assert build_subsets({k: {**v, "benchmark": "b"} for k, v in pairs.items()})["categories"] == {
        "color": ["1", "2"],
        "move": ["2"],
    }
    with pytest.raises(ValueError, match="collide"):
        build_subsets(pairs, ["color"], {"color": ["color"]})


def test_monitor_key():
    assert monitor_key() == "val/CIDEr"
    assert monitor_key("Bleu_4") == "val/Bleu_4"
    assert monitor_key({"metrics": {"monitor": "METEOR"}}) == "val/METEOR"
    assert monitor_key({"monitor": "CIDEr/color"}) == "val/CIDEr/color"
    with pytest.raises(ValueError, match="metrics.monitor"):
        monitor_key("accuracy")


def test_scalar_layout_charts_subsets_and_escapes_names():
    layout = scalar_layout(categories=["a.b"], subsets=["real", "render"], training=False)
    assert layout["val: by category"]["CIDEr by subset"] == [
        "Multiline",
        ["^val/CIDEr$", "^val/CIDEr/(real|render)$"],
    ]
    assert layout["val: by category"]["CIDEr by category"][1][1] == r"^val/CIDEr/(a\.b)$"
    assert list(layout) == ["val: overall", "val: by category"]  # no losses, change id or benchmarks asked


def test_compose_panel_and_flatten():
    before, after = torch.zeros(3, 8, 10), torch.ones(3, 8, 10)
    panel = compose_panel(before, after, torch.rand(2, 3))
    assert panel.shape == (3, 8, 3 * 10 + 2 * 4) and float(panel.min()) >= 0 and float(panel.max()) <= 1
    assert compose_panel(before, after, None).shape == (3, 8, 2 * 10 + 4)
    flat = flatten_hparams(
        {"backbone": {"name": "siglip", "layers": [1, 2]}, "mdp": {"gate": True, "x": None}}
    )
    assert flat == {"backbone.name": "siglip", "backbone.layers": "[1, 2]", "mdp.gate": True, "mdp.x": "None"}
