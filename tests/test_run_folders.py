"""A run folder belongs to one run: ``RESUME=last`` / ``RESUME=<path>`` continue only the run the command describes
(experiment, backbone, data name and root, model, tokenizer), refuse another with one line naming the keys and the
folder, and never write into it; run names cannot leave ``logs_dir``; a run refused before its first step leaves no
folder; partial files of a killed save are removed when the run starts again; a full disk is one line."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from support.tiny import TINY_MODEL

from experiments import synth, train
from experiments.common import runs
from experiments.common.checkpoints import CheckpointError, read_checkpoint
from experiments.common.config import ConfigError, load_config

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
TINY = [
    *TINY_MODEL,
    "model.lm.tokenizer_captions=200",
    "data.batch_size=4",
    "data.eval_batch_size=4",
    "data.num_workers=0",
    "generation.max_new_tokens=8",
    "metrics.change_id=false",
    "trainer.enable_progress_bar=false",
    "trainer.val_check_interval=null",
    "checkpoint.every_n_train_steps=1",
]


SIZES = ["data.train_size=16", "data.val_size=4"]  # the embedded benchmark's (not keys of DATA=pairs)


def args(logs: Path, *extra: str, sizes: bool = True) -> list[str]:
    return ["--args", " ".join([*TINY, *(SIZES if sizes else ()), f"logs_dir={logs}", *extra])]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file of ``folder``: (size, mtime_ns): what 'nothing was written' compares."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def one_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory) -> Path:
    """One tiny run of the embedded benchmark (2 steps): logs/default/siglip-tiny/version_0."""
    logs = tmp_path_factory.mktemp("logs")
    assert train.main([*args(logs, "trainer.max_steps=2")]) == 0
    return logs


@pytest.fixture(scope="module")
def pairs_root(tmp_path_factory) -> Path:
    """The embedded benchmark's pairs on disk (DATA=pairs): another dataset for the same experiment/backbone."""
    root = tmp_path_factory.mktemp("pairs") / "data"
    assert (
        synth.main(
            ["--out", str(root), "--n", "8", "--split", "train,val", "--args", "backbone.image_size=32"]
        )
        == 0
    )
    return root


def run_dir(logs: Path, version: int = 0) -> Path:
    return logs / "default" / "siglip-tiny" / f"version_{version}"


def test_resume_last_with_other_data_is_refused_and_writes_nothing(synthetic_run, pairs_root, capsys):
    """Loss 1 of issue 22: RESUME=last with DATA=pairs took over the synthetic run and overwrote its files."""
    before = snapshot(synthetic_run)
    capsys.readouterr()
    code = train.main(
        ["--data", "pairs", "--root", str(pairs_root), "--resume", "last"]
        + args(synthetic_run, "data.annotations=annotations.json", sizes=False)
    )
    line = one_line(capsys)
    assert code == 2, line
    assert "RESUME=last" in line and str(run_dir(synthetic_run)) in line
    assert "data.name: that run 'synthetic', this command 'pairs'" in line and "data.root" in line
    assert snapshot(synthetic_run) == before  # config.yaml, last.ckpt, final_metrics.json untouched


def test_resume_last_picks_the_newest_run_of_the_same_data(synthetic_run, tmp_path):
    """A newer run of another dataset in the same experiment/backbone folder is passed over, not taken."""
    logs = tmp_path / "logs"
    shutil.copytree(synthetic_run, logs)
    other = run_dir(logs, 1)
    shutil.copytree(run_dir(logs), other)
    config = (other / "config.yaml").read_text()
    (other / "config.yaml").write_text(config.replace("name: synthetic", "name: pairs", 1))
    os.utime(other / "checkpoints" / "last.ckpt")  # the newest last.ckpt
    cfg = load_config(overrides=[*TINY, *SIZES, f"logs_dir={logs}"])
    found = runs.find_resume(cfg, "last")
    assert found.version == 0 and found.run_dir == run_dir(logs)
    pairs = load_config(
        groups={"data": "pairs"}, overrides=[*TINY_MODEL, f"logs_dir={logs}", "data.root=/elsewhere"]
    )
    with pytest.raises(CheckpointError, match=r"newest, .*version_1, is another run \(data.root"):
        runs.find_resume(pairs, "last")


def test_a_checkpoint_of_another_experiment_or_folder_is_refused(synthetic_run, tmp_path):
    ckpt = run_dir(synthetic_run) / "checkpoints" / "last.ckpt"
    checkpoint = read_checkpoint(ckpt)
    saved = checkpoint["hyper_parameters"]["config"]
    other = {**saved, "experiment": "ablation"}
    with pytest.raises(CheckpointError, match=r"1 key\(s\) differ: experiment: checkpoint 'default'"):
        runs.check_same_run(checkpoint, other, path=ckpt, run_dir=None)
    # A checkpoint copied into another run's folder (other tokenizer) is not that folder's run.
    folder = tmp_path / "version_0"
    shutil.copytree(run_dir(synthetic_run), folder)
    (folder / "tokenizer.json").write_text('{"model": {}}')
    with pytest.raises(CheckpointError, match=r"not the run of its folder .*tokenizer"):
        runs.check_same_run(checkpoint, saved, path=ckpt, run_dir=folder)
    runs.check_same_run(checkpoint, saved, path=ckpt, run_dir=run_dir(synthetic_run))  # its own: fine


@pytest.mark.parametrize("name", ["../../x", "/tmp/x", "a/../../x", "..", "a//b", "x y"])
def test_run_names_cannot_leave_logs_dir(tmp_path, name, capsys):
    """Loss 6 of issue 22: ARGS="experiment=../../x" wrote the run folder outside logs/."""
    logs = tmp_path / "deep" / "logs"
    code = train.main([*args(logs, f"experiment='{name}'")])
    assert code == 2 and one_line(capsys).startswith(f"config error: experiment={name!r}")
    assert not any(tmp_path.rglob("*"))  # nothing anywhere, inside or outside logs_dir


def test_run_names_inside_logs_dir_are_kept():
    cfg = load_config(overrides=["experiment=ablations/mdp_off", "backbone.name=..", "logs_dir=/x"])
    assert runs.run_name(cfg) == "ablations/mdp_off/backbone"


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.batch_size=0", "data.batch_size=0: must be a whole number > 0"),
        ("data.batch_size=-4", "data.batch_size=-4: must be a whole number > 0"),
        ("data.eval_batch_size=0", "data.eval_batch_size=0: must be a whole number > 0"),
        ("data.val_size=-1", "data.val_size=-1: must be a whole number >= 0"),
        ("trainer.max_steps=-5", "trainer.max_steps=-5: must be -1 (no limit) or > 0"),
    ],
)
def test_values_that_cannot_work_are_one_line_and_leave_no_folder(tmp_path, override, message, capsys):
    assert train.main([*args(tmp_path, override)]) == 2
    assert one_line(capsys) == f"config error: {message}"
    assert not any(tmp_path.iterdir())


def test_a_run_failing_before_its_first_step_leaves_no_folder(tmp_path, pairs_root, capsys):
    """The data is checked by Lightning's setup, after the run folder was named: it is removed again."""
    data = tmp_path / "data"
    shutil.copytree(pairs_root, data)
    for image in (data / "images").glob("val_*_after.png"):
        image.unlink()  # the validation split's images: found when the DataLoaders are built
    logs = tmp_path / "logs"
    code = train.main(
        [
            "--data",
            "pairs",
            "--root",
            str(data),
            *args(logs, "data.annotations=annotations.json", sizes=False),
        ]
    )
    line = one_line(capsys)
    assert code == 2 and line.startswith("data error:") and "image file not found" in line
    assert not list(logs.glob("*/*/version_*"))


SAVER = """
import sys, torch
from experiments.common.checkpoint_io import AtomicCheckpointIO
io = AtomicCheckpointIO()
while True:
    io.save_checkpoint({"w": torch.zeros(4_000_000)}, sys.argv[1])
"""


@pytest.mark.slow
def test_a_killed_save_is_cleaned_up_when_the_run_starts_again(synthetic_run, tmp_path, caplog):
    """kill -9 during a save leaves .<name>.tmp-<pid> beside the checkpoint (never in $TMPDIR); RESUME removes it
    before anything else, and the run continues in its own folder."""
    logs = tmp_path / "logs"
    shutil.copytree(synthetic_run, logs)
    folder = run_dir(logs) / "checkpoints"
    proc = subprocess.Popen([sys.executable, "-c", SAVER, str(folder / "scratch.ckpt")], cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while not list(folder.glob(".scratch.ckpt.tmp-*")):
            assert proc.poll() is None and time.monotonic() < deadline, "no save in progress seen"
        proc.kill()  # SIGKILL, mid-save
    finally:
        proc.kill()
        proc.wait()
    (partial,) = folder.glob(".scratch.ckpt.tmp-*")
    (folder / "scratch.ckpt").unlink(missing_ok=True)
    with caplog.at_level(logging.INFO, logger="m3diff.train"):
        assert train.main(["--resume", "last", *args(logs, "trainer.max_steps=3")]) == 0
    assert f"removed {partial}" in caplog.text
    assert not partial.exists()
    assert read_checkpoint(folder / "last.ckpt")["global_step"] == 3
    assert sorted(p.name for p in (logs / "default" / "siglip-tiny").iterdir()) == ["version_0"]
    assert json.loads((run_dir(logs) / "final_metrics.json").read_text())


def test_a_full_disk_is_one_line_naming_the_file_and_the_space(tmp_path, monkeypatch, capsys):
    import shutil as shutil_module

    usage = shutil_module.disk_usage

    def tiny(path):
        return usage(path)._replace(free=3 * 2**20)  # 3 MB free where the checkpoints go

    monkeypatch.setattr("experiments.common.checkpoint_io.shutil.disk_usage", tiny)
    code = train.main([*args(tmp_path, "trainer.max_steps=2")])
    line = one_line(capsys)
    assert code == 2, line
    assert (
        line.startswith("checkpoint error:") and "checkpoints/last.ckpt: cannot write the checkpoint" in line
    )
    assert "3.0 MB free" in line and "needs about" in line
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob(".*.tmp-*"))


def test_resume_path_continues_in_a_new_folder(synthetic_run, tmp_path):
    cfg = load_config(overrides=[*TINY, *SIZES, f"logs_dir={tmp_path}"])
    ckpt = run_dir(synthetic_run) / "checkpoints" / "last.ckpt"
    found = runs.find_resume(cfg, str(ckpt))
    assert (found.path, found.version, found.run_dir) == (ckpt, None, None)
    with pytest.raises(ConfigError):
        runs.run_base(load_config(overrides=["experiment=../x"]))
    assert torch.load(ckpt, weights_only=True, mmap=True)["global_step"] == 2
