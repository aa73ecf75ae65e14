"""Lightning DDP on two CPU processes (gloo): every pair is scored once and the numbers equal one process's.

The validation sets have an odd size, so Lightning's DistributedSampler pads one rank by repeating a pair.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the spawned processes import the tiny parts from here

from support.tiny_eval import TinyCaptioner, TinyDataModule  # noqa: E402

from callbacks.caption_metrics import CaptionMetricsCallback  # noqa: E402


def _validate(tmp_path: Path, name: str, **trainer_kwargs) -> tuple[dict, dict]:
    out = tmp_path / name
    callback = CaptionMetricsCallback(meteor=False, progress=False, output_dir=out, subfolders=False)
    trainer = L.Trainer(
        logger=False,
        callbacks=[callback],
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_kwargs,
    )
    trainer.validate(TinyCaptioner(), datamodule=TinyDataModule(sizes={"val": 11}), verbose=False)
    logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return logged, json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_ddp_two_processes_score_each_pair_once(tmp_path):
    one_logged, one = _validate(tmp_path, "one", accelerator="cpu", devices=1)
    two_logged, two = _validate(tmp_path, "two", accelerator="cpu", devices=2, strategy="ddp_spawn")
    assert one["num_pairs"] == two["num_pairs"] == 11  # 12 predictions made, the padded repeat dropped
    pred = json.loads((tmp_path / "two" / "pred.json").read_text())
    assert sorted(p["image_id"] for p in pred) == [f"val{i:03d}.png" for i in range(11)]
    for key in ("Bleu_4", "ROUGE_L", "CIDEr"):
        assert two[key] == pytest.approx(one[key], abs=1e-12)
    for name, scores in one["categories"].items():
        assert two["categories"][name] == pytest.approx(scores, abs=1e-12)
    assert set(two_logged) == set(one_logged) and "val/CIDEr/move" in two_logged
    # the change-category confusion matrix counts each pair once too
    confusion = [json.loads((tmp_path / name / "confusion.json").read_text()) for name in ("one", "two")]
    assert confusion[0] == confusion[1] and confusion[0]["items"] == 11
    for key, value in one_logged.items():
        assert two_logged[key] == pytest.approx(value, rel=1e-6), key
