"""`make data-info` / `python -m experiments.data_info`: counts, problems and exit codes (0 fine, 1 problems, 2 unreadable)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support.clevr import make_clevr_dc
from support.data import build_mini
from support.records import make_spot

from datamodules.base import PairDataConfig, PairDataModule
from experiments import data_info

REPO = Path(__file__).resolve().parents[1]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = data_info.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_clean_mini_copy_exits_0_with_counts(tmp_path, capsys):
    mini = make_spot(tmp_path / "spot")
    code, out, _ = run(
        capsys, "--data", "spot_the_diff", "--root", str(mini.root), "--split", "", "--json", ""
    )
    assert code == 0
    assert "test          3           3           6" in out.replace("  ", "  ")
    assert "problems: none" in out and "(1 blank references, as released)" in out
    code, out, _ = run(capsys, "--data", "spot_the_diff", "--root", str(mini.root), "--json", "1")
    info = json.loads(out)
    assert code == 0 and {"pairs", "references", "categories", "problems"} <= set(info)
    assert (info["pairs"], info["references"], info["problems"]) == (4 + 2 + 3, 5 + 2 + 6, [])
    assert info["splits"]["test"]["pairs"] == 3


def test_categories_per_split(tmp_path, capsys):
    mini = build_mini("clevr_change", tmp_path / "clevr")
    code, out, _ = run(
        capsys, "--data", "clevr_change", "--root", str(mini.root), "--split", "test", "--json", "1"
    )
    info = json.loads(out)
    assert code == 0
    assert info["categories"] == {"color": 1, "texture": 1, "add": 1, "drop": 1, "move": 1, "distractor": 5}
    assert info["references"] == 20


def test_missing_and_unreadable_images_exit_1_and_are_listed(tmp_path, capsys):
    mini = make_spot(tmp_path / "spot")
    (mini.root / "resized_images" / "294.png").unlink()
    (mini.root / "resized_images" / "187_2.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    code, out, _ = run(
        capsys, "--data", "spot_the_diff", "--root", str(mini.root), "--split", "test", "--json", "1"
    )
    info = json.loads(out)
    assert code == 1 and info["pairs"] == 3 and info["problem_count"] == 2
    missing, broken = info["problems"]
    assert "294.png" in missing and "record [1]" in missing and "image file not found" in missing
    assert "187_2.png" in broken and "record [3]" in broken
    # exists-only checking is faster and does not open the files: the broken one passes
    code, out, _ = run(
        capsys, "--data", "spot_the_diff", "--root", str(mini.root), "--split", "test", "--json", "1",
        "--args", "--check-images=exists",
    )  # fmt: skip
    assert code == 1 and json.loads(out)["problem_count"] == 1


def test_bad_records_are_listed_not_fatal(tmp_path, capsys):
    mini = build_mini("iedit", tmp_path / "iedit")
    records = json.loads(mini.annotation("test").read_text())
    records[1]["sents"] = []
    records[2]["uid"] = records[0]["uid"]
    mini.annotation("test").write_text(json.dumps(records))
    code, out, _ = run(capsys, "--data", "iedit", "--root", str(mini.root), "--split", "test", "--json", "1")
    info = json.loads(out)
    assert code == 1 and info["pairs"] == 1
    assert any("record [1]" in p and "empty caption list" in p for p in info["problems"])
    assert any("record [2]" in p and "duplicate uid" in p for p in info["problems"])


def test_a_bad_record_every_split_reads_is_listed_once(tmp_path, capsys):
    mini = build_mini("pairs", tmp_path / "pairs")  # one pairs.json holds all three splits
    records = json.loads(mini.annotation().read_text())
    records[1]["split"] = "tset"
    mini.annotation().write_text(json.dumps(records))
    code, out, _ = run(capsys, "--data", "pairs", "--root", str(mini.root), "--json", "1")
    info = json.loads(out)
    assert code == 1 and info["problem_count"] == 1 and len(info["problems"]) == 1
    assert "record [1]" in info["problems"][0] and "'tset'" in info["problems"][0]
    code, out, _ = run(capsys, "--data", "pairs", "--root", str(mini.root), "--json", "")
    assert out.count("'tset'") == 1 and "problems: 1" in out


def test_unreadable_annotation_exits_2_naming_file_and_line(tmp_path, capsys):
    mini = make_spot(tmp_path / "spot")
    (mini.root / "annotations" / "test.json").write_text('[\n {"img_id": "1",\n  "sentences": ["a"]\n')
    code, out, err = run(
        capsys, "--data", "spot_the_diff", "--root", str(mini.root), "--split", "test", "--json", ""
    )
    assert code == 2
    assert "annotations/test.json: malformed JSON at line 4" in err
    code, out, err = run(
        capsys, "--data", "spot_the_diff", "--root", str(mini.root), "--split", "test", "--json", "1"
    )
    assert code == 2 and "malformed JSON" in json.loads(out)["error"]


def test_bad_root_data_or_arguments_exit_2(tmp_path, capsys):
    code, _, err = run(capsys, "--data", "iedit", "--root", str(tmp_path / "nope"))
    assert code == 2 and "dataset folder not found" in err and "nope" in err
    code, _, err = run(capsys, "--data", "no_such_benchmark", "--root", str(tmp_path))
    assert code == 2 and "no_such_benchmark" in err
    code, _, err = run(capsys, "--root", str(tmp_path))
    assert code == 2 and "DATA=" in err
    code, _, err = run(capsys, "--data", "iedit")
    assert code == 2 and "data.root is not set" in err


def test_config_overrides_through_args(tmp_path, capsys):
    mini = make_clevr_dc(tmp_path / "dc")
    order = "[color,color,color,color,color,distractor]"
    code, out, _ = run(
        capsys, "--data", "clevr_dc", "--root", str(mini.root), "--split", "test", "--json", "1",
        "--args", f"data.block_size=5 data.block_types={order} --check-images=none",
    )  # fmt: skip
    info = json.loads(out)
    assert code == 0 and info["categories"] == {
        "color": 5,
        "texture": 0,
        "add": 0,
        "drop": 0,
        "move": 0,
        "distractor": 1,
    }


def test_mixture_reports_each_member(tmp_path, capsys):
    spot, dc = make_spot(tmp_path / "spot"), make_clevr_dc(tmp_path / "dc")
    members = json.dumps(
        [
            {"name": "spot_the_diff", "root": str(spot.root)},
            {"name": "clevr_dc", "root": str(dc.root), "block_size": 5},
        ]
    )
    code, out, _ = run(
        capsys, "--data", "mixture", "--split", "test", "--json", "1", "--args", f"data.members='{members}'"
    )
    info = json.loads(out)
    assert code == 0 and set(info["members"]) == {"spot_the_diff", "clevr_dc"}
    assert info["pairs"] == 3 + 6 and info["members"]["clevr_dc"]["pairs"] == 6


class Generated(PairDataModule):
    """A stand-in for a generated benchmark (no annotation index): data-info counts by iterating samples."""

    benchmark = "generated"

    def build_dataset(self, split):
        sample = {"before": torch.zeros(3, 4, 4), "after": torch.zeros(3, 4, 4), "benchmark": "generated"}
        return [
            {**sample, "pair_id": str(i), "captions": ["a", "b"], "categories": ["color"]} for i in range(3)
        ]


def test_generated_benchmarks_are_counted_by_iterating():
    config = PairDataConfig(categories=["color", "size"])
    generated = Generated(config, image_size=4, mean=(0.5,) * 3, std=(0.5,) * 3, seed=0)
    info = data_info.inspect_module(generated, "test", "decode")
    assert (info["pairs"], info["references"], info["categories"]) == (3, 6, {"color": 3, "size": 0})


@pytest.mark.slow  # a fresh interpreter imports torch and lightning: ~5-15 s on a busy 2-core machine
def test_module_entry_point_exit_code(tmp_path):
    mini = make_spot(tmp_path / "spot")
    (mini.root / "resized_images" / "256.png").unlink()
    result = subprocess.run(
        [sys.executable, "-m", "experiments.data_info", "--data", "spot_the_diff", "--root", str(mini.root),
         "--split", "test", "--json", "", "--args", ""],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "256.png" in result.stdout and "image file not found" in result.stdout


def test_empty_split_and_header_only_file_are_problems_worded_as_training_says(tmp_path, capsys):
    """A tsv with only its header said "problems: none"; training refuses it. Now data-info lists the message
    training stops with, and exits 1."""
    from support.records import BIRDS_COLUMNS, make_birds

    from datamodules.errors import DataError
    from experiments.common import assembly
    from experiments.common.config import load_config

    mini = make_birds(tmp_path / "b2w")
    (mini.root / "birds-to-words-v1.0.tsv").write_text("\t".join(BIRDS_COLUMNS) + "\n")
    code, out, _ = run(capsys, "--data", "birds_to_words", "--root", str(mini.root), "--json", "1")
    info = json.loads(out)
    assert code == 1 and info["pairs"] == 0 and info["problem_count"] == 3
    expected = f"{mini.root}: no usable pairs in split 'train'"
    assert any(p.startswith(expected) for p in info["problems"])
    cfg = load_config(groups={"data": "birds_to_words"}, overrides=[f"data.root={mini.root}"])
    with pytest.raises(DataError) as err:  # make train, before the model is built
        assembly.assemble(cfg)
    assert str(err.value) == expected
    code, out, _ = run(capsys, "--data", "birds_to_words", "--root", str(mini.root))
    assert code == 1 and "problems: 3" in out and "problems: none" not in out


def test_documented_split_pattern_works_as_written(tmp_path, capsys):
    """docs/datasets.md: data.annotations="{split}.jsonl" (the shell drops the quotes; not YAML, a string)."""
    from support.records import make_pairs

    mini = make_pairs(tmp_path / "pairs", jsonl=True)
    rows = [json.loads(line) for line in (mini.root / "pairs.jsonl").read_text().splitlines()]
    for split in ("train", "val", "test"):
        (mini.root / f"{split}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows if r["split"] == split)
        )
    (mini.root / "pairs.jsonl").unlink()
    code, out, err = run(
        capsys, "--data", "pairs", "--root", str(mini.root), "--json", "1",
        "--args", 'data.annotations="{split}.jsonl"',
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["pairs"] == len(rows)


@pytest.mark.slow  # make + a fresh interpreter
@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_exit_statuses_through_make(tmp_path):
    """GNU make exits 2 whenever a recipe fails; data-info's own status is the 'Error N' of make's last line,
    as the Makefile and docs/datasets.md say (and python -m experiments.data_info returns it as is)."""
    mini = make_spot(tmp_path / "spot")
    (mini.root / "resized_images" / "256.png").unlink()
    make = ["make", "--no-print-directory", "-C", str(REPO), "data-info", "DATA=spot_the_diff", "SPLIT=test"]
    problems = subprocess.run([*make, f"ROOT={mini.root}"], capture_output=True, text=True, timeout=180)
    assert problems.returncode == 2 and "256.png" in problems.stdout
    assert problems.stderr.strip().splitlines()[-1].endswith("data-info] Error 1")
    unreadable = subprocess.run([*make, f"ROOT={tmp_path}/nope"], capture_output=True, text=True, timeout=180)
    last = unreadable.stderr.strip().splitlines()
    assert unreadable.returncode == 2 and last[-1].endswith("data-info] Error 2")
    assert last[-2].startswith("error: data cannot be read:") and "Traceback" not in unreadable.stderr
