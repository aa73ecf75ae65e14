"""``make eval`` of one checkpoint on 2 CPU processes (DDP, gloo) gives the metrics of 1 process: every pair is
scored exactly once, also when the split (7 pairs) does not divide by the world size and DistributedSampler pads
it by repeating pairs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from support.processes import free_port
from support.tiny import TINY_MODEL

from datamodules.contract import collate_pairs
from experiments.common import assembly
from experiments.common.config import load_config

REPO = Path(__file__).resolve().parents[1]
TINY = [
    *TINY_MODEL,
    "model.lm.vocab_size=512",  # word-sized tokens: a few steps memorise whole captions
    "model.lm.tokenizer_captions=200",
    "data.num_workers=0",
    "data.test_size=7",
    "generation.max_new_tokens=12",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A captioner fitted to the 7 test pairs' first references, so that its captions differ from pair to pair
    and score above zero (a mismatch between a pair and its caption would show in the metrics)."""
    torch.manual_seed(0)
    cfg = load_config(overrides=TINY)
    parts = assembly.assemble(cfg)
    datamodule, module = parts.datamodule, parts.module
    data = datamodule.dataset("test")
    batch = collate_pairs([data[i] for i in range(len(data))])
    optimizer = torch.optim.AdamW(module.parameters(), lr=5e-3)
    module.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the cores are shared: oversubscribed threads make tiny steps slow
    try:
        for _ in range(40):
            loss, _, _ = module.shared_step(batch, [refs[0] for refs in batch["captions"]])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    path = tmp_path_factory.mktemp("ddp") / "model.ckpt"
    state = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    torch.save({**state, "pytorch-lightning_version": L.__version__}, path)
    return path


def evaluate(ckpt: Path, out: Path, *args: str) -> tuple[dict[str, float], str]:
    """``python -m experiments.evaluate`` as ``make eval`` runs it; returns the printed metrics and the log."""
    cmd = [sys.executable, "-m", "experiments.evaluate", "--ckpt", str(ckpt), "--out", str(out)]
    cmd += ["--args", " ".join(["data.eval_batch_size=2", "trainer.enable_progress_bar=false", *args])]
    # One thread per process: the cores are shared, and oversubscribed OpenMP threads make tiny steps slow.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MASTER_PORT": str(free_port())}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    text = result.stdout
    return json.loads(text[text.index("{\n") : text.index("\n}") + 2]), log


@pytest.mark.slow
def test_two_processes_score_every_pair_once_with_the_single_process_metrics(tmp_path, checkpoint):
    one, _ = evaluate(checkpoint, tmp_path / "one")
    two, log = evaluate(checkpoint, tmp_path / "two", "trainer.devices=2", "trainer.strategy=ddp")
    assert "MEMBER: 2/2" in log  # two processes really ran

    ids = [f"test/{i:06d}" for i in range(7)]
    preds = {}
    for name in ("one", "two"):
        pred = json.loads((tmp_path / name / "pred.json").read_text())
        assert sorted(p["image_id"] for p in pred) == ids  # each pair exactly once, none missing
        preds[name] = {p["image_id"]: p["caption"] for p in pred}
        gt = json.loads((tmp_path / name / "gt.json").read_text())
        assert sorted(im["id"] for im in gt["images"]) == ids
    assert preds["one"] == preds["two"]
    assert len(set(preds["one"].values())) > 1  # the captions depend on the pair

    # Caption metrics: identical. The loss: one value per pair, so equal up to float rounding.
    files = [json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("one", "two")]
    assert files[0] == files[1] and files[0]["num_pairs"] == 7
    # The category confusion matrix counts each pair once, on any number of processes.
    confusion = [json.loads((tmp_path / name / "confusion.json").read_text()) for name in ("one", "two")]
    assert confusion[0] == confusion[1] and confusion[0]["items"] == 7
    assert one.keys() == two.keys()
    assert one["test/CIDEr"] > 0 and one["test/num_pairs"] == 7
    assert {k: v for k, v in one.items() if k != "test/loss"} == {
        k: v for k, v in two.items() if k != "test/loss"
    }
    assert two["test/loss"] == pytest.approx(one["test/loss"], rel=1e-6)
