"""`make caption`: a checkpoint captions two PNG files written by the export command."""

from __future__ import annotations

import json

from PIL import Image
from test_captioner import fit, make_module

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
    panel = Image.open(out / "heatmap.png")
    assert panel.size[0] > 3 * panel.size[1]  # before | after | overlay side by side


def test_caption_command_names_a_missing_image(tmp_path, capsys):
    module = make_module()
    trainer = fit(module, 1, tmp_path)
    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    missing = tmp_path / "nope.png"
    assert caption.main(["--ckpt", str(ckpt), "--before", str(missing), "--after", str(missing)]) == 2
    assert "nope.png" in capsys.readouterr().err
