"""What a first run meets (weights that are not there, a wrong data folder, no Java for `make score`) ends in
one line on stderr that says what to do, exit status 2 and no traceback, through the real entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.returncode, [line for line in proc.stderr.splitlines() if line.strip()]


def test_missing_backbone_weights(tmp_path):
    code, err = run("experiments.train", "--args", f"backbone.pretrained=/missing.bin logs_dir={tmp_path}")
    assert code == 2 and len(err) == 1, err
    assert "/missing.bin" in err[0] and "backbone.pretrained=" in err[0]
    assert not (tmp_path / "default").exists()  # failed before any run folder was made


def test_wrong_data_root(tmp_path):
    code, err = run(
        "experiments.train", "--data", "spot_the_diff", "--root", "/missing", "--args", f"logs_dir={tmp_path}"
    )
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("data error: /missing: dataset folder not found") and "ROOT=" in err[0]


def test_score_without_java(tmp_path):
    # A PATH without java (the interpreter is started by its full path).
    code, err = run(
        "experiments.score", "--gt", "gt.json", "--pred", "pred.json", env={"PATH": str(tmp_path)}
    )
    assert code == 2 and len(err) == 1, err
    assert "java not found" in err[0] and "openjdk" in err[0]


def test_make_clean_keeps_the_runs_and_help_says_make_runs_offline(tmp_path):
    for folder in ("logs/default/siglip-tiny/version_0", ".pytest_cache"):
        (tmp_path / folder).mkdir(parents=True)
    make = ["make", "--no-print-directory", "-f", str(REPO / "Makefile"), "-C", str(tmp_path)]
    subprocess.run([*make, "clean"], check=True, capture_output=True)
    assert (tmp_path / "logs/default/siglip-tiny/version_0").is_dir() and not (
        tmp_path / ".pytest_cache"
    ).exists()
    subprocess.run([*make, "clean-logs"], check=True, capture_output=True)
    assert not (tmp_path / "logs").exists()
    help_text = subprocess.run([*make, "help"], check=True, capture_output=True, text=True).stdout
    assert "make clean-logs" in help_text and "HF_HUB_OFFLINE=0" in help_text
