"""The change-category confusion matrix: captions read back with the embedded benchmark's grammar, counted against
the true category with torchmetrics, written as JSON / Markdown and shown in ``make compare``'s report."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from support.synthetic import LABELS, make_dm, only

from callbacks.confusion import UNREADABLE, ConfusionMatrix, confusion_matrix
from datamodules.synthetic.captions import NO_CHANGE, identify, parse_caption, read_back
from datamodules.synthetic.changes import sample_pair
from datamodules.synthetic.grammar import change_slots
from experiments.compare import report
from experiments.compare.runs import Run

ROWS = [*LABELS, "no_change"]
POSE_CAPTION = "the small red figure in the top left now has both arms raised"  # pose, cell 0


# ---------------------------------------------------------------------------------------------- reading back
def test_read_back_names_what_the_caption_says_happened():
    color = change_slots(sample_pair(only("color"), "val", 0).changes[0])
    size = change_slots(sample_pair(only("size"), "val", 1).changes[0])
    color_caption = sample_pair(only("color"), "val", 0).captions[0]
    assert read_back(parse_caption(color_caption), [color]) == [("color", "color")]
    assert read_back(parse_caption(POSE_CAPTION), [color]) == [("color", "pose")]
    assert read_back(parse_caption("nothing changed"), [color]) == [("color", NO_CHANGE)]
    assert read_back(parse_caption("blah blah"), [color]) == [("color", UNREADABLE)]
    # a no-change pair is one item
    assert read_back(parse_caption("there is no change"), []) == [(None, NO_CHANGE)]
    assert read_back(parse_caption(POSE_CAPTION), []) == [(None, "pose")]
    # two true changes: a stated kind is matched to its own change first, a spare one to the next change,
    # and a change for which nothing more is stated is unreadable
    both = parse_caption(f"{color_caption} and {POSE_CAPTION}")
    assert read_back(both, [size, color]) == [("size", "pose"), ("color", "color")]
    assert read_back(parse_caption(color_caption), [size, color]) == [
        ("size", UNREADABLE),
        ("color", "color"),
    ]


def test_cell_is_right_whatever_kind_is_named():
    spec = sample_pair(only("color"), "val", 0)
    truth = change_slots(spec.changes[0])
    (item,), _ = identify(parse_caption(POSE_CAPTION), [truth])
    assert item[1]["cell"] == (truth["loc"] == 0) and not item[1]["category"]
    (item,), _ = identify(parse_caption(spec.captions[0]), [truth])
    assert item[1]["cell"] and item[1]["location"]
    viewpoint = change_slots(sample_pair(only("viewpoint"), "val", 0).changes[0])
    (item,), _ = identify(parse_caption(POSE_CAPTION), [viewpoint])
    assert "cell" not in item[1]  # camera moves and light have no cell


# ---------------------------------------------------------------------------------------------- counting
def test_confusion_matrix_counts_known_items():
    matrix = confusion_matrix(
        ["a", "b", "none"],
        ["a", "a", "a", "b", "b", "none"],
        ["a", "b", UNREADABLE, "b", "b", "a"],
    )
    assert matrix.columns == ("a", "b", "none", UNREADABLE)
    assert matrix.counts == ((1, 1, 0, 1), (0, 2, 0, 0), (1, 0, 0, 0))
    assert matrix.row_shares()[0] == pytest.approx([1 / 3, 1 / 3, 0, 1 / 3])
    assert matrix.right() == pytest.approx({"a": 1 / 3, "b": 1.0, "none": 0.0})
    md = matrix.to_markdown().splitlines()
    assert md[0] == "| true \\ read | n | a | b | none | unreadable |"
    assert md[2] == "| a | 3 | **1 (33 %)** | 1 (33 %) |  | 1 (33 %) |"
    assert md[3] == "| b | 2 |  | **2 (100 %)** |  |  |"
    assert ConfusionMatrix.from_json(matrix.to_json()) == matrix
    assert matrix.to_json()["items"] == 6
    empty = confusion_matrix(["a"], [], [])
    assert empty.counts == ((0, 0),) and empty.right() == {}
    with pytest.raises(ValueError, match="not among the classes"):
        confusion_matrix(["a"], ["a"], ["z"])
    with pytest.raises(ValueError, match="not among the classes"):
        confusion_matrix(["a"], [UNREADABLE], ["a"])
    with pytest.raises(ValueError, match="distinct"):
        confusion_matrix(["a", UNREADABLE], ["a"], ["a"])
    fig = matrix.figure()
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "b", "none", UNREADABLE]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["a (3)", "b (2)", "none (1)"]


def test_embedded_benchmark_matrix_from_known_captions():
    """References read back on the diagonal; one fixed caption for every pair fills one column; the diagonal is
    change identification's per-category rate."""
    dm = make_dm(val_size=120)
    specs = dm.specs("val")
    perfect = dm.category_confusion("val", {s.pair_id: s.captions[0] for s in specs})
    assert perfect["classes"] == ROWS
    matrix = confusion_matrix(**perfect)
    sizes = [sum(1 for s in specs if (list(s.categories) or ["no_change"]) == [row]) for row in ROWS]
    assert [sum(r) for r in matrix.counts] == sizes and sum(sizes) == 120
    assert all(matrix.counts[i][i] == sizes[i] for i in range(len(ROWS)))

    # pairs 0..39 get the pose caption, 40..79 "nothing changed", 80..119 no readable change
    def caption(i: int) -> str:
        return (POSE_CAPTION, "the scene did not change", "a cat sat on the mat")[i // 40]

    known = {s.pair_id: caption(i) for i, s in enumerate(specs)}
    matrix = confusion_matrix(**dm.category_confusion("val", known))
    expect = [[0] * (len(ROWS) + 1) for _ in ROWS]
    for i, s in enumerate(specs):
        column = (ROWS.index("pose"), ROWS.index("no_change"), len(ROWS))[i // 40]
        expect[ROWS.index((list(s.categories) or ["no_change"])[0])][column] += 1
    assert [list(r) for r in matrix.counts] == expect
    scores = dm.change_identification("val", known)
    for name, share in matrix.right().items():
        assert share == pytest.approx(scores[f"category/{name}"]), name
    # the right cell, whatever kind: only where the pose caption names cell 0 for an object-level change
    objects = [s for s in specs[:40] if s.changes and s.changes[0].op not in ("viewpoint", "illumination")]
    all_objects = [s for s in specs if s.changes and s.changes[0].op not in ("viewpoint", "illumination")]
    right = sum(s.changes[0].cell == 0 for s in objects)
    assert scores["cell"] == pytest.approx(right / len(all_objects))


# ---------------------------------------------------------------------------------------------- make compare
def test_compare_report_shows_each_runs_matrix():
    cfg = OmegaConf.create(
        {"data": {"name": "synthetic", "categories": ["a", "b"], "groups": {}, "batch_size": 32}, "seed": 1,
         "logs_dir": "logs",
         "trainer": {"max_steps": 10, "max_epochs": None, "max_time": None, "accumulate_grad_batches": 1,
                     "devices": 1}}
    )  # fmt: skip
    run = Run("", "siglip", "default", "siglip-tiny", "default/siglip-tiny", status="ok", steps=10)
    run.metrics = {"val/CIDEr": 0.5, "val/change_id/category": 0.75, "val/change_id/cell": 0.5}
    run.confusion = confusion_matrix(["a", "b"], ["a", "a", "b", "b"], ["a", "b", "b", "b"]).to_json()
    lines = report.render_markdown("demo", [run], cfg, "make compare").splitlines()
    assert "| default | siglip-tiny | ok | 10 | – | 50.00 | 75.00 | 50.00 |" in lines
    at = lines.index("## Change category, true (rows) vs read from the caption: default / siglip-tiny")
    assert lines[at + 4 : at + 8] == [
        "| true \\ read | n | a | b | unreadable |",
        "|---|---:|---:|---:|---:|",
        "| a | 2 | **1 (50 %)** | 1 (50 %) |  |",
        "| b | 2 |  | **2 (100 %)** |  |",
    ]
