"""Writers of a folder (``make export``, ``make caption``, ``make synth``): OUT is checked before a model is loaded
(an existing file, a read-only disk, a non-empty folder: one line, exit 2), replaced only with FORCE=1 and only
when it holds an earlier output of the same command, and written into a temporary sibling that is renamed, so it
is never half one output and half another; ``make eval`` checks its OUT before loading the model too."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from support.tiny import TINY_MODEL
from test_safety import run_make, save_module

from experiments import caption, evaluate, export, synth
from experiments.common import assembly
from experiments.common.config import load_config
from experiments.common.outputs import OutputError, OutputFolder

pytestmark = pytest.mark.usefixtures("one_thread")


def one_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    cfg = load_config(
        overrides=[*TINY_MODEL, "model.lm.tokenizer_captions=200", "generation.max_new_tokens=4"]
    )
    return save_module(assembly.assemble(cfg).module, tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model fails the test: the refusals under test must come before it."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a model was loaded before OUT / ARGS were checked")

    for module in (export, caption, evaluate):
        monkeypatch.setattr(module, "load_module", forbidden)


@pytest.fixture
def read_only(tmp_path):
    """A folder on a read-only file system (a read-only tmpfs as root; chmod otherwise)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)]).returncode:
            pytest.skip("cannot mount a read-only tmpfs")
        yield folder
        subprocess.run(["umount", "-l", str(folder)], check=False)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


def pair(tmp_path: Path) -> tuple[str, str]:
    from PIL import Image

    paths = []
    for name, color in (("before.png", (200, 30, 30)), ("after.png", (30, 30, 200))):
        Image.new("RGB", (40, 40), color).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    return paths[0], paths[1]


def test_out_that_is_a_file_or_read_only_is_one_line_before_the_model(tmp_path, read_only, no_model, capsys):
    before, after = pair(tmp_path)
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    for out, expected in ((a_file, "is an existing file"), (read_only / "out", "read-only file system")):
        assert export.main(["--ckpt", "x.ckpt", "--out", str(out)]) == 2
        assert expected in one_line(capsys)
        assert (
            caption.main(["--ckpt", "x.ckpt", "--before", before, "--after", after, "--out", str(out)]) == 2
        )
        assert expected in one_line(capsys)
        assert synth.main(["--out", str(out), "--n", "1"]) == 2
        assert expected in one_line(capsys)
    assert export.main(["--ckpt", "x.ckpt", "--out", str(a_file / "sub")]) == 2
    assert "is a file, so the folder cannot be created" in one_line(capsys)
    assert a_file.read_text() == "mine"


def test_eval_checks_split_args_and_out_before_the_model(tmp_path, tiny_ckpt, no_model, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    ckpt = str(tiny_ckpt)
    assert evaluate.main(["--ckpt", ckpt, "--split", "train"]) == 2
    assert one_line(capsys) == "error: SPLIT must be one of ['val', 'test'], got 'train'"
    assert evaluate.main(["--ckpt", ckpt, "--out", str(a_file)]) == 2
    assert "is an existing file" in one_line(capsys)
    assert evaluate.main(["--ckpt", ckpt, "--args", "data.eval_batch_size=0"]) == 2
    assert one_line(capsys) == "config error: data.eval_batch_size=0: must be a whole number > 0"


def test_caption_args_are_checked_before_the_model(tmp_path, tiny_ckpt, no_model, capsys):
    before, after = pair(tmp_path)
    argv = ["--ckpt", str(tiny_ckpt), "--before", before, "--after", after, "--out", str(tmp_path / "c")]
    assert caption.main([*argv, "--args", "generation.num_beam=3"]) == 2
    line = one_line(capsys)
    assert (
        "unknown config key 'generation.num_beam'" in line and "did you mean 'generation.num_beams'" in line
    )
    assert caption.main([*argv, "--args", "generation.num_beams='3"]) == 2
    assert "No closing quotation" in one_line(capsys)
    # More new tokens than the tiny LM's position table holds: an IndexError deep in GPT-2 before.
    assert caption.main([*argv, "--args", "generation.max_new_tokens=500"]) == 2
    line = one_line(capsys)
    assert "generation.max_new_tokens=500 is more than this checkpoint's tiny LM has positions for" in line
    assert evaluate.main(["--ckpt", str(tiny_ckpt), "--args", "generation.max_new_tokens=500"]) == 2
    assert "ask for at most" in one_line(capsys)
    assert not (tmp_path / "c").exists() and not list(tmp_path.glob(".c.*"))


def test_export_refuses_a_non_empty_out_and_force_replaces_it_whole(tmp_path, tiny_ckpt, capsys):
    """Loss 2 of issue 22: an export into a folder with files replaced README.md / m3diff.json silently and
    left the old files beside the new ones."""
    out = tmp_path / "export"
    out.mkdir()
    (out / "README.md").write_text("my notes")
    assert export.main(["--ckpt", str(tiny_ckpt), "--out", str(out)]) == 2
    line = one_line(capsys)
    assert "is not empty" in line and "FORCE=1" in line
    assert export.main(["--ckpt", str(tiny_ckpt), "--out", str(out), "--force", "1"]) == 2
    assert "not an earlier output of this command (no m3diff.json)" in one_line(capsys)
    assert [p.name for p in out.iterdir()] == ["README.md"] and (out / "README.md").read_text() == "my notes"

    fresh = tmp_path / "fresh"
    assert export.main(["--ckpt", str(tiny_ckpt), "--out", str(fresh)]) == 0
    files = sorted(p.name for p in fresh.iterdir())
    assert {"m3diff.json", "README.md", "projector.safetensors", "tokenizer"} <= set(files)
    (fresh / "stale.txt").write_text("from before")
    assert export.main(["--ckpt", str(tiny_ckpt), "--out", str(fresh), "--force", ""]) == 2  # FORCE unset
    assert export.main(["--ckpt", str(tiny_ckpt), "--out", str(fresh), "--force"]) == 0
    assert sorted(p.name for p in fresh.iterdir()) == files  # one export, nothing of the earlier one left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "fresh"]  # no temporary folder left


def test_caption_writes_a_new_folder_named_after_the_pair(tmp_path, tiny_ckpt, monkeypatch, capsys):
    before, after = pair(tmp_path)
    monkeypatch.chdir(tmp_path)
    argv = ["--ckpt", str(tiny_ckpt), "--before", before, "--after", after]
    assert caption.main(argv) == 0
    out = tmp_path / "caption-before-after"
    assert sorted(p.name for p in out.iterdir()) == ["caption.json", "heatmap.png"]
    assert (
        json.loads((out / "caption.json").read_text())["caption"] == capsys.readouterr().out.splitlines()[0]
    )
    assert caption.main(argv) == 2 and "FORCE=1" in one_line(capsys)
    assert caption.main([*argv, "--force", "1"]) == 0


def test_a_failed_or_killed_write_leaves_out_as_it_was(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "annotations.json").write_text("[1]")
    with pytest.raises(RuntimeError), OutputFolder(out, force=True, marker="annotations.json") as folder:
        (folder.path / "annotations.json").write_text("[2, half")
        raise RuntimeError("killed while writing")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (out / "annotations.json").read_text() == "[1]"
    # A killed command's temporary folder (its process gone) is removed by the next writer of that OUT.
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / f".out.tmp-{dead.pid}").mkdir()
    with OutputFolder(out, force=True, marker="annotations.json") as folder:
        (folder.path / "annotations.json").write_text("[3]")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (out / "annotations.json").read_text() == "[3]"
    with pytest.raises(OutputError, match="holds the current folder"):
        cwd = Path.cwd()
        os.chdir(out)
        try:
            OutputFolder(".", force=True, marker="annotations.json").check()
        finally:
            os.chdir(cwd)


def test_synth_force_replaces_its_own_export_only(tmp_path, capsys):
    out = tmp_path / "pairs"
    assert (
        synth.main(["--out", str(out), "--n", "1", "--split", "val,test", "--args", "backbone.image_size=32"])
        == 0
    )
    assert synth.main(["--out", str(out), "--n", "1"]) == 2 and "is not empty" in one_line(capsys)
    assert synth.main(["--out", str(out), "--n", "1", "--force", "--args", "backbone.image_size=32"]) == 0
    names = sorted(p.name for p in (out / "images").iterdir())
    assert names == [
        "val_000000_after.png",
        "val_000000_before.png",
    ]  # the test pair of the first export is gone
    assert synth.main(["--out", str(tmp_path), "--n", "1", "--force"]) == 2  # a folder of other files
    assert "no annotations.json" in one_line(capsys)


@pytest.mark.slow
def test_make_passes_force(tmp_path):
    for target in ("export", "caption", "synth"):
        argv = run_make(tmp_path, target, {"FORCE": "1", "OUT": "o"}, via_env=False)
        assert argv[argv.index("--force") + 1] == "1" and argv[argv.index("--out") + 1] == "o"
    argv = run_make(tmp_path, "export", {"OUT": "o"}, via_env=False)
    assert argv[argv.index("--force") + 1] == ""


def test_an_out_that_cannot_be_renamed_is_one_error_and_left_as_it_was(tmp_path):
    """OUT a mount point (renaming it fails with EBUSY): an OutputError, OUT and its files as they were."""
    out = tmp_path / "mounted"
    out.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(out)]).returncode
    ):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        (out / "m3diff.json").write_text("{}")
        with (
            pytest.raises(OutputError, match="cannot replace it"),
            OutputFolder(out, force=True, marker="m3diff.json") as f,
        ):
            (f.path / "m3diff.json").write_text('{"new": 1}')
        assert (out / "m3diff.json").read_text() == "{}"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["mounted"]
    finally:
        subprocess.run(["umount", "-l", str(out)], check=False)
