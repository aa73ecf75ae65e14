"""`make caption`: a checkpoint captions two PNG files written by the export command."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image
from support.captioner import fit, make_module

from experiments import caption, synth


def test_caption_command_on_exported_pngs(tmp_path, capsys):
    module = make_module()
    trainer = fit(module, 2, tmp_path)
    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    assert (
        synth.main(
            [
                "--out",
                str(tmp_path / "synth"),
                "--n",
                "1",
                "--split",
                "val",
                "--args",
                "backbone.image_size=48",
            ]
        )
        == 0
    )
    pair = json.loads((tmp_path / "synth" / "annotations.json").read_text())[0]
    before, after = (tmp_path / "synth" / pair[k] for k in ("before", "after"))

    out = tmp_path / "out"
    capsys.readouterr()
    assert (
        caption.main(["--ckpt", str(ckpt), "--before", str(before), "--after", str(after), "--out", str(out)])
        == 0
    )
    record = json.loads((out / "caption.json").read_text())
    assert record["caption"] == capsys.readouterr().out.splitlines()[0]
    figure = Image.open(out / "heatmap.png")
    width, height = figure.size
    # before | after | overlay side by side, each at least 256 px (the model's input is 48 px), text around
    assert width >= 3 * 256 and 256 < height < width
    assert_drawn(figure)


def assert_drawn(figure: Image.Image) -> None:
    """Pictures in the middle band (not one flat colour), dark text pixels in the caption band below."""
    gray = np.asarray(figure.convert("L"), dtype=np.float32)
    middle = gray.shape[0] // 2
    assert gray[middle - 50 : middle + 50].std() > 5, "panels are blank"
    assert (gray[-30:] < 128).any(), "no caption text under the panels"


def test_caption_figure_wraps_long_captions():
    before, after = torch.rand(3, 64, 64), torch.rand(3, 64, 64)
    heat = torch.rand(4, 4)
    short = caption.caption_figure(before, after, heat, "the cube moved")
    long = caption.caption_figure(
        before, after, heat, " ".join(["the small red rubber cube moved left"] * 12)
    )
    assert short.width == long.width == 3 * 256 + 2 * 4
    assert long.height > short.height + 2 * 18  # several more lines of text, none cut off at the right
    assert_drawn(short)
    assert_drawn(long)
    two = caption.caption_figure(before, after, None, "no heatmap (MDP off)")
    assert two.width == 2 * 256 + 4


def test_caption_command_names_a_missing_image(tmp_path, capsys):
    module = make_module()
    trainer = fit(module, 1, tmp_path)
    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    missing = tmp_path / "nope.png"
    assert caption.main(["--ckpt", str(ckpt), "--before", str(missing), "--after", str(missing)]) == 2
    assert "nope.png" in capsys.readouterr().err
