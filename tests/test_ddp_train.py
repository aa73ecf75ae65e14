"""Scale-out: `make train` with two CPU processes (DDP over gloo) end to end, as users launch it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support.processes import free_port
from support.tiny import TINY_MODEL

from experiments.common.config import REPO_ROOT

TINY = [
    *TINY_MODEL,
    "model.lm.tokenizer_captions=40",
    "generation.max_new_tokens=4",
    "data.train_size=64",
    "data.val_size=6",  # 3 per rank
    "data.batch_size=4",
    "data.eval_batch_size=2",
    "data.num_workers=0",
    "metrics.num_panels=1",
    "trainer.max_steps=2",  # stops mid-epoch: the final validation comes from train() itself
    "trainer.enable_progress_bar=false",
]


@pytest.mark.slow
def test_two_process_ddp_train_completes_and_writes_one_run(tmp_path):
    args = [*TINY, f"logs_dir={tmp_path}", "experiment=ddp", "trainer.devices=2", "trainer.strategy=ddp"]
    # `ddp` starts the second process by re-running this command line, as it would on a GPU node.
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.train", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "MASTER_PORT": str(free_port())},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "find_unused_parameters" not in proc.stderr  # every trainable parameter takes part
    assert "GLOBAL_RANK: 1" in proc.stderr + proc.stdout
    runs = sorted((tmp_path / "ddp" / "siglip-tiny").iterdir())
    assert [r.name for r in runs] == ["version_0"]  # rank 1 writes no run folder of its own
    run = runs[0]
    metrics = json.loads((run / "final_metrics.json").read_text())
    assert metrics["val/num_pairs"] == 6  # gathered from both ranks, each pair once
    assert "val/CIDEr" in metrics and "val/change_id/exact" in metrics
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "config.yaml").is_file()
    assert [p.name for p in (run / "eval").iterdir()] == ["val-step2"]
    assert proc.stdout.count("final validation metrics:") == 1
