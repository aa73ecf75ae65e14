"""The scoring core and ``make score`` agree with pycocoevalcap called the field's way.

Java starts are kept to a minimum: one METEOR JVM for our scorer (module fixture) and one for the reference
pipeline; the command-line tests run without METEOR.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import evaluation.java
import evaluation.scorer
from evaluation import METRICS, CaptionScorer, atomic_write_text, coco_ground_truth, coco_predictions
from evaluation.tokenization import fallback_tokenize, ptb_tokenize
from experiments import score as score_cli

SPOT = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "spot-the-diff" / "predictions"
SPOT_GT, SPOT_PRED = SPOT / "ddla_rerun_gtfile.json", SPOT / "ddla_rerun_predfile.json"
TYPE_MAPPING = SPOT.parents[1] / "clevr-change" / "type_mapping.json"
NO_METEOR = [m for m in METRICS if m != "METEOR"]

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="the reference pipeline needs Java")
needs_spot = pytest.mark.skipif(not SPOT_GT.exists(), reason="shared benchmark files not present")


def reference_eval(
    gt: Path, pred: Path, subsets: dict[str, list[str]], meteor: bool = False
) -> dict[str, dict]:
    """pycocoevalcap the field's way (COCO -> loadRes -> params['image_id'] = res.getImgIds() -> the scorers
    of COCOEvalCap.evaluate minus SPICE), for the overall set and for each subset (ids ∩ predictions).
    One reference Meteor object serves every call (its compute_score can be reused)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    from pycocotools.coco import COCO

    coco = COCO(str(gt))
    res = coco.loadRes(str(pred))
    all_ids = res.getImgIds()
    if meteor:  # METEOR only: its JVM start (~8 s) is paid in a slow test
        scorers = [(Meteor(), "METEOR")]
    else:
        scorers = [
            (Bleu(4), ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"]),
            (Rouge(), "ROUGE_L"),
            (Cider(), "CIDEr"),
        ]
    out = {}
    try:
        for name, ids in {"overall": all_ids, **subsets}.items():
            ids = [i for i in all_ids if i in set(ids)]
            tokenizer = PTBTokenizer()
            gts = tokenizer.tokenize({i: coco.imgToAnns[i] for i in ids})
            rs = tokenizer.tokenize({i: res.imgToAnns[i] for i in ids})
            scores = {}
            for scorer, method in scorers:
                value, _ = scorer.compute_score(gts, rs)
                scores.update(zip(method, value) if isinstance(method, list) else {method: value})
            out[name] = scores
    finally:
        for scorer, _ in scorers:
            if hasattr(scorer, "meteor_p"):
                scorer.meteor_p.kill()
    return out


@pytest.fixture(scope="module")
def scorer():
    with CaptionScorer(progress=False) as s:
        yield s


@pytest.fixture(scope="module")
def spot():
    """Spot-the-Diff's published DDLA predictions with a deterministic third of the ids as a subset."""
    refs = score_cli.load_ground_truth(SPOT_GT)
    preds = score_cli.load_predictions(SPOT_PRED)
    third = sorted(preds)[::3]
    return refs, preds, third


@pytest.fixture(scope="module")
def spot_scores(spot):
    """Our scores (no METEOR: its JVM is paid by the slow tests) and the reference pipeline's."""
    refs, preds, third = spot
    with CaptionScorer(progress=False, meteor=False) as s:
        ours = s.score(refs, preds, {"categories": {"third": third}})
    reference = reference_eval(SPOT_GT, SPOT_PRED, {"third": third})
    return ours, reference


@needs_java
@needs_spot
def test_matches_pycocoevalcap_on_published_predictions(spot_scores):
    ours, reference = spot_scores
    assert ours.tokenizer == "ptb" and ours.notes == []
    assert ours.num_pairs["overall"] == 1270
    assert list(ours.overall) == NO_METEOR
    for metric in NO_METEOR:  # METEOR: test_meteor_matches_pycocoevalcap (slow)
        assert ours.overall[metric] == pytest.approx(reference["overall"][metric], abs=1e-6), metric
        assert ours.subsets["categories"]["third"][metric] == pytest.approx(
            reference["third"][metric], abs=1e-6
        )
    # The published file, for the record (README): DDLA's rerun on Spot-the-Diff test.
    assert ours.overall["CIDEr"] == pytest.approx(0.35062, abs=1e-4)
    assert ours.overall["Bleu_4"] == pytest.approx(0.07570, abs=1e-4)


@pytest.mark.slow
@needs_java
@needs_spot
def test_meteor_matches_pycocoevalcap_with_one_jvm(scorer, spot):
    refs, preds, third = spot
    ours = scorer.score(refs, preds, {"categories": {"third": third}})
    proc = scorer._meteor._proc
    reference = reference_eval(SPOT_GT, SPOT_PRED, {"third": third}, meteor=True)
    assert list(ours.overall) == list(METRICS)
    assert ours.overall["METEOR"] == pytest.approx(reference["overall"]["METEOR"], abs=1e-6)
    assert ours.subsets["categories"]["third"]["METEOR"] == pytest.approx(
        reference["third"]["METEOR"], abs=1e-6
    )
    # METEOR is a corpus statistic too: the subset is not the mean of its pairs' scores
    mean_of_pairs = float(np.mean([ours.per_pair["METEOR"][i] for i in third]))
    assert abs(ours.subsets["categories"]["third"]["METEOR"] - mean_of_pairs) > 1e-4

    # the same JVM serves the next evaluation
    small = scorer.score(
        {"a": ["the red cube moved"], "b": ["a ball was added"]}, {"a": "a red cube moved", "b": "x"}
    )
    assert scorer._meteor._proc is proc and proc.poll() is None
    assert 0 < small.overall["METEOR"] < 1


@needs_java
@needs_spot
def test_subsets_are_rescored_not_averaged(spot_scores, spot):
    ours, _ = spot_scores
    third = spot[2]
    subset = ours.subsets["categories"]["third"]
    # CIDEr (IDF of the subset) and BLEU (corpus brevity penalty and n-gram counts) differ from the mean of the overall run's per-pair scores ...
    for metric in ("CIDEr", "Bleu_4"):
        mean_of_pairs = float(np.mean([ours.per_pair[metric][i] for i in third]))
        assert abs(subset[metric] - mean_of_pairs) > 1e-3, metric
    # ... while pycocoevalcap's ROUGE_L is a mean of per-pair scores by definition.
    assert subset["ROUGE_L"] == pytest.approx(
        np.mean([ours.per_pair["ROUGE_L"][i] for i in third]), abs=1e-12
    )


def test_empty_subsets_are_left_out():
    refs = {"a": ["the red cube moved"], "b": ["a ball was added", "there is a new ball"]}
    preds = {"a": "the red cube has moved", "b": "a sphere appeared"}
    with CaptionScorer(progress=False, meteor=False) as s:
        report = s.score(
            refs, preds, {"categories": {"x": ["a"], "y": ["b", "zzz"], "empty": [], "other": ["c"]}}
        )
    assert set(report.subsets["categories"]) == {"x", "y"}
    assert report.num_pairs == {"overall": 2, "categories": {"x": 1, "y": 1}}


@needs_java
def test_ptb_tokenize_keeps_lines_aligned():
    texts = [
        "The Red cube, moved left.",
        "",
        "line\rbreak",
        "para\u2028graph\x0cfeed",
        "don't stop!",
        "naïve café",
    ]
    out = ptb_tokenize(texts)
    assert out == [
        "the red cube moved left",
        "",
        "line break",
        "para graph feed",
        "do n't stop",
        "naïve café",
    ]
    # The fallback (Java missing) agrees on ordinary captions.
    assert [fallback_tokenize(t) for t in texts] == out


def test_without_java_computes_what_it_can(monkeypatch):
    monkeypatch.setattr(evaluation.scorer, "java_missing_reason", lambda: "java not found on PATH")
    refs = {"1": ["The red cube moved.", "a red cube changed its location"], "2": ["nothing changed"]}
    preds = {"1": "the red cube moved", "2": "no change"}
    with CaptionScorer(progress=False, spice=True) as s:
        report = s.score(refs, preds)
    assert report.tokenizer == "fallback-regex"
    assert list(report.overall) == NO_METEOR
    assert any(n.startswith("METEOR unavailable: java not found") for n in report.notes)
    assert any(n.startswith("SPICE unavailable") for n in report.notes)
    assert "not comparable" in report.to_markdown()
    assert report.to_json()["tokenizer"] == "fallback-regex"


def test_spice_absent_is_reported_not_downloaded(monkeypatch, tmp_path):
    import urllib.request

    def no_download(*args, **kwargs):
        raise AssertionError("SPICE tried to download its models")

    monkeypatch.setattr(urllib.request, "urlretrieve", no_download)
    monkeypatch.setattr(evaluation.java, "SPICE_MODELS", (tmp_path / "stanford-corenlp-3.6.0.jar",))
    with CaptionScorer(progress=False, meteor=False, spice=True) as s:
        report = s.score({"a": ["a red cube"]}, {"a": "a red cube"})
    assert "SPICE" not in report.overall
    assert report.notes == [
        f"SPICE unavailable: Stanford CoreNLP models not present (stanford-corenlp-3.6.0.jar in {tmp_path})"
    ]
    assert report.to_json()["notes"] == report.notes


def test_bad_inputs_are_clear_errors():
    with CaptionScorer(progress=False, meteor=False) as s:
        with pytest.raises(KeyError, match="no references"):
            s.score({"a": ["x"]}, {"b": "x"})
        with pytest.raises(ValueError, match="empty reference list"):
            s.score({"a": []}, {"a": "x"})
        with pytest.raises(ValueError, match="no predictions"):
            s.score({"a": ["x"]}, {})


def test_atomic_write_never_leaves_half_a_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    atomic_write_text(target, "old")

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new " * 1000)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_coco_files_load_in_pycocotools(tmp_path):
    from pycocotools.coco import COCO

    refs = {"000001.png": ["a", "b"], "000001.png_n": ["c"]}
    (tmp_path / "gt.json").write_text(json.dumps(coco_ground_truth(refs)))
    (tmp_path / "pred.json").write_text(json.dumps(coco_predictions({"000001.png_n": "c"})))
    coco = COCO(str(tmp_path / "gt.json"))
    res = coco.loadRes(str(tmp_path / "pred.json"))
    assert res.getImgIds() == ["000001.png_n"]
    assert [a["caption"] for a in coco.imgToAnns["000001.png"]] == ["a", "b"]


# ---------------------------------------------------------------------------------------------- make score
def _write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


@needs_spot
def test_score_command_on_published_spot_the_diff(tmp_path, capsys, spot_scores):
    out = tmp_path / "metrics.json"
    argv = [
        "--gt",
        str(SPOT_GT),
        "--pred",
        str(SPOT_PRED),
        "--out",
        str(out),
        "--categories",
        "",
        "--no-meteor",
    ]
    assert score_cli.main([*argv, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| overall | 1270 |" in printed and all(m in printed for m in NO_METEOR)
    written = json.loads(out.read_text())
    assert written["num_pairs"] == 1270
    for metric in NO_METEOR:  # the same numbers as the scorer (and hence pycocoevalcap)
        assert written[metric] == pytest.approx(spot_scores[0].overall[metric], abs=1e-12)


@pytest.fixture()
def clevr_like(tmp_path):
    """CLEVR-Change-style ids: "%06d.png" change pairs typed by the real type_mapping.json, "_n" distractors."""
    ids = ["000003.png", "008001.png", "016002.png", "024004.png", "032005.png", "000007.png"]
    refs = {i: [f"the cube {n} changed", f"object {n} is different"] for n, i in enumerate(ids)}
    refs.update({f"{i}_n": ["no change was made", "the scene remains the same"] for i in ids})
    gt = _write(tmp_path / "gt.json", coco_ground_truth(refs))
    preds = {i: f"the cube {n} changed" if n % 2 else "the scene remains the same" for n, i in enumerate(ids)}
    preds.update({f"{i}_n": "no change was made" for i in ids[:4]})
    pred = _write(tmp_path / "pred.json", coco_predictions(preds))
    return gt, pred, ids


@pytest.mark.skipif(not TYPE_MAPPING.exists(), reason="shared benchmark files not present")
def test_score_command_per_category(clevr_like, tmp_path):
    gt, pred, ids = clevr_like
    out = tmp_path / "out.json"
    argv = ["--gt", str(gt), "--pred", str(pred), "--out", str(out), "--no-meteor", "--quiet"]
    assert score_cli.main([*argv, "--categories", str(TYPE_MAPPING)]) == 0
    written = json.loads(out.read_text())
    assert written["num_pairs"] == 10
    assert set(written["categories"]) == {"color", "material", "add", "drop", "move"}
    assert written["categories"]["color"]["num_pairs"] == 2  # 000003 and 000007
    assert set(written["categories"]["move"]) == {*NO_METEOR, "num_pairs"}

    # id -> category(s) mapping gives the same subsets
    by_id = _write(
        tmp_path / "by_id.json", {i: ["distractor"] for i in [f"{x}_n" for x in ids]} | {ids[0]: "color"}
    )
    assert score_cli.main([*argv, "--categories", str(by_id)]) == 0
    written = json.loads(out.read_text())
    assert {k: v["num_pairs"] for k, v in written["categories"].items()} == {"distractor": 4, "color": 1}


def test_a_kit_subsets_file_with_an_empty_group_rescores(tmp_path):
    """An evaluation's subsets.json where no pair of the split has a group's categories (a small split): its
    "Rescore with" line works; the empty group is left out, as the evaluation left it out."""
    refs = {"a": ["the cube moved"], "b": ["the sphere is gone"]}
    gt = _write(tmp_path / "gt.json", coco_ground_truth(refs))
    pred = _write(tmp_path / "pred.json", coco_predictions({"a": "the cube moved", "b": "a sphere"}))
    kinds = _write(
        tmp_path / "subsets.json", {"categories": {"move": ["a"], "drop": []}, "groups": {"x": []}}
    )
    out = tmp_path / "out.json"
    argv = ["--gt", str(gt), "--pred", str(pred), "--categories", str(kinds), "--out", str(out)]
    assert score_cli.main([*argv, "--no-meteor", "--quiet"]) == 0
    written = json.loads(out.read_text())
    assert written["categories"]["move"]["num_pairs"] == 1 and "groups" not in written


def test_score_command_errors_name_the_culprit(clevr_like, tmp_path, capsys):
    gt, _, _ = clevr_like
    stray = _write(
        tmp_path / "stray.json",
        [{"image_id": "000003.png", "caption": "x"}, {"image_id": "999999.png", "caption": "y"}],
    )
    assert score_cli.main(["--gt", str(gt), "--pred", str(stray), "--no-meteor", "--quiet"]) == 2
    assert "'999999.png'" in capsys.readouterr().err
    dup = _write(tmp_path / "dup.json", [{"image_id": "000003.png", "caption": "x"}] * 2)
    assert score_cli.main(["--gt", str(gt), "--pred", str(dup), "--no-meteor", "--quiet"]) == 2
    assert "record [1]" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text('{"annotations": [')
    assert score_cli.main(["--gt", str(broken), "--pred", str(dup), "--quiet"]) == 2
    assert "broken.json: not valid JSON" in capsys.readouterr().err
