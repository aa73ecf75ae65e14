"""What a first run meets (weights that are not there, a wrong data folder, no Java for `make score`) ends in
one line on stderr that says what to do, exit status 2 and no traceback, through the real entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.slow
def test_missing_backbone_weights(tmp_path):
    code, err = run("experiments.train", "--args", f"backbone.pretrained=/missing.bin logs_dir={tmp_path}")
    assert code == 2 and len(err) == 1, err
    assert "/missing.bin" in err[0] and "backbone.pretrained=" in err[0]
    assert not (tmp_path / "default").exists()  # failed before any run folder was made


@pytest.mark.slow
def test_wrong_data_root(tmp_path):
    code, err = run(
        "experiments.train", "--data", "spot_the_diff", "--root", "/missing", "--args", f"logs_dir={tmp_path}"
    )
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("data error: /missing: dataset folder not found") and "ROOT=" in err[0]


@pytest.mark.slow
def test_score_without_java(tmp_path):
    # A PATH without java (the interpreter is started by its full path).
    code, err = run(
        "experiments.score", "--gt", "gt.json", "--pred", "pred.json", env={"PATH": str(tmp_path)}
    )
    assert code == 2 and len(err) == 1, err
    assert "java not found" in err[0] and "openjdk" in err[0]


@pytest.mark.slow
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


@pytest.mark.slow
def test_unknown_backbone_lists_the_kits_own_names(tmp_path):
    """45 lines of timm traceback ending in "close matches: []" before; one line naming BACKBONE= choices and
    the registry's names now, before any run folder."""
    code, err = run("experiments.train", "--backbone", "siglp", "--args", f"logs_dir={tmp_path}/logs")
    assert code == 2 and len(err) == 1, err
    line = err[0]
    assert line.startswith("config error: backbone.name='timm:siglp'") and "timm has no model 'siglp'" in line
    assert "BACKBONE= ['clip'," in line and "'siglip-tiny'" in line and "did you mean ['siglip'" in line
    assert not any(tmp_path.iterdir())


def test_unclosed_quotes_and_damaged_checkpoints_are_one_line(tmp_path, capsys):
    from experiments import data_info, evaluate, train

    assert train.main(["--args", f"logs_dir={tmp_path} data.root='/x"]) == 2
    assert data_info.main(["--args", "data.root='/x"]) == 2
    noise = tmp_path / "noise.ckpt"
    noise.write_bytes(os.urandom(5000))
    assert evaluate.main(["--ckpt", str(noise)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 3, err
    assert all("cannot split" in line and "No closing quotation" in line for line in err[:2])
    assert err[2].startswith(
        f"checkpoint error: {noise}: not a readable PyTorch checkpoint: the file is damaged"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["noise.ckpt"]
