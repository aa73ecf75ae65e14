"""Every pair of the embedded benchmark is two exposures: no pair is pixel-identical, a no-change pair differs
only by sensor noise and a jitter far smaller than any illumination change, and all of it is deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from datamodules import build_datamodule
from datamodules.synthetic.changes import sample_pair
from datamodules.synthetic.datamodule import render_pair
from datamodules.synthetic.spec import OPERATIONS, GeneratorConfig
from experiments.common.config import load_config, to_container

SIDE = 64
LABELS = tuple(OPERATIONS)


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


def test_defaults_put_noise_and_jitter_on_every_image():
    data = to_container(load_config().data)
    assert data["noise"] == 3.0 and data["jitter"] == 0.04


def test_no_pair_is_pixel_identical_and_generation_is_deterministic():
    dm = build_datamodule(
        {**to_container(load_config().data), "val_size": 48},
        image_size=SIDE,
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        seed=7,
    )
    dataset = dm.dataset("val")
    no_change = 0
    for index in range(48):
        spec, before, after = dataset.images(index)
        assert before.tobytes() != after.tobytes(), spec.pair_id
        no_change += not spec.changes
        again = dataset.images(index)
        assert again[1].tobytes() == before.tobytes() and again[2].tobytes() == after.tobytes()
    assert no_change > 0  # the no-change pairs are among them


def test_no_change_pair_differs_by_noise_and_a_small_jitter_only():
    gen = GeneratorConfig(labels=LABELS, no_change_fraction=1.0)
    spec = sample_pair(gen, "val", 3)
    clean, _ = render_pair(spec, SIDE)
    before, after = render_pair(spec, SIDE, noise=3.0, jitter=0.04)
    ratio = pixels(after).mean() / pixels(before).mean()
    assert abs(ratio - 1) < 2 * 0.04 + 0.01  # two exposures in 1 +- jitter
    for image in (before, after):
        error = pixels(image) - pixels(clean)
        assert 0 < np.abs(error).mean() < 0.04 * 255 + 3 * 3.0
    jitter_only = render_pair(spec, SIDE, noise=0.0, jitter=0.04)
    assert jitter_only[0].tobytes() != jitter_only[1].tobytes()
    noise_only = render_pair(spec, SIDE, noise=3.0, jitter=0.0)
    residual = pixels(noise_only[0]) - pixels(clean)
    assert residual.std() == pytest.approx(3.0, rel=0.25)


def test_jitter_stays_well_below_the_weakest_illumination_change():
    gen = GeneratorConfig(labels=LABELS, weights=tuple(float(op == "illumination") for op in OPERATIONS))
    gains = []
    for index in range(12):
        spec = sample_pair(gen, "val", index)
        if spec.light in ("brighter", "darker", "warmer", "cooler"):
            before, after = render_pair(spec, SIDE)
            channel = np.abs(pixels(after).mean((0, 1)) / pixels(before).mean((0, 1)) - 1)
            gains.append(channel.max())
    assert gains and min(gains) > 3 * 0.04


def test_make_synth_reports_no_pixel_identical_pair(tmp_path, capsys):
    from experiments.synth import main

    assert main(["--out", str(tmp_path / "out"), "--n", "24", "--args", "backbone.image_size=48"]) == 0
    assert "pixel-identical pairs (before == after): 0 of 24" in capsys.readouterr().out
    assert main(["--out", str(tmp_path / "clean"), "--n", "24", "--args", "backbone.image_size=48 data.noise=0 data.jitter=0"]) == 0  # fmt: skip
    line = [ln for ln in capsys.readouterr().out.splitlines() if "pixel-identical" in ln][0]
    assert not line.strip().startswith("pixel-identical pairs (before == after): 0 ")
