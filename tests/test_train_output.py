"""What a default ``make train > train.log`` leaves: a log file a person reads (plain progress lines, no ``\\r``
frames, no warnings they cannot act on) and a TensorBoard run whose CUSTOM SCALARS charts and HPARAMS columns
point at scalars that exist. One tiny training (stdout and stderr redirected to a file) serves every check."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import TQDMProgressBar
from support.events import read_layout, unmatched_tags
from support.tiny import TINY_MODEL
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from callbacks.progress import ProgressLines, format_duration, progress_bar

REPO = Path(__file__).resolve().parents[1]
STEPS = 4


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train_output")
    log = tmp / "train.log"
    cmd = [
        sys.executable,
        "-m",
        "experiments.train",
        *TINY_MODEL,
        f"trainer.max_steps={STEPS}",
        f"trainer.val_check_interval={STEPS}",
        "trainer.log_every_n_steps=2",
        "data.val_size=8",
        "data.no_change_fraction=0.5",  # the no_change group among 8 pairs too (its chart line has data)
        "data.num_workers=1",
        "metrics.num_panels=1",
        "num_threads=1",
        f"logs_dir={tmp / 'logs'}",
    ]
    with log.open("wb") as out:  # not a terminal: the run must notice and print lines, not a bar
        proc = subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    text = log.read_bytes().decode()
    assert proc.returncode == 0, text[-3000:]
    run_dir = next((tmp / "logs").glob("default/*/version_0"))
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {"text": text, "acc": acc}


@pytest.mark.slow
def test_log_file_has_progress_lines_and_no_frames_or_warnings(run):
    text = run["text"]
    assert "\r" not in text, "carriage-return frames (a progress bar) in the log file"
    steps = re.findall(
        rf"^step (\d+)/{STEPS} \| epoch 0 \| train/loss [\d.]+ \| [\d.]+ it/s \| ETA \S+$", text, re.M
    )
    assert steps == ["2", "4"], text
    assert re.search(r"^validation at step 4: 1 batch$", text, re.M)
    assert re.search(r"^validation done in \d+:\d\d$", text, re.M)
    assert "final validation metrics:" in text
    # Python / Lightning warnings print as "<file>.py:<line>: [<Category>:] <message>"
    noise = [ln for ln in text.splitlines() if re.search(r"Warning|WARNING|\.py:\d+: |Tip:", ln)]
    assert noise == [], noise


@pytest.mark.slow
def test_custom_scalars_layout_tags_exist(run):
    acc = run["acc"]
    layout = read_layout(acc)
    assert list(layout) == ["val: overall", "val: by category", "losses", "val: change identification"]
    assert layout["losses"]["loss (train, val)"] == ["^train/loss$", "^val/loss$"]
    scalars = set(acc.Tags()["scalars"])
    missing = unmatched_tags(layout, scalars)
    if shutil.which("java") is None:  # METEOR needs Java; without it the METEOR charts stay empty
        missing = [m for m in missing if "METEOR" not in m]
    assert missing == []


@pytest.mark.slow
def test_hparams_columns_are_the_logged_scalars(run):
    acc = run["acc"]
    experiment = acc.PluginTagToContent("hparams")["_hparams_/experiment"]
    assert b"val/CIDEr" in experiment and b"test/CIDEr" in experiment
    start = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    assert b"backbone.name" in start and b"mdp.enabled" in start
    assert "val/CIDEr" in acc.Tags()["scalars"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_is_chosen_by_where_output_goes():
    assert isinstance(progress_bar(every_n_steps=5, stream=_Terminal()), TQDMProgressBar)
    lines = progress_bar(every_n_steps=5, stream=io.StringIO())
    assert isinstance(lines, ProgressLines) and lines.every_n_steps == 5
    assert [format_duration(s) for s in (0, 75.4, 3725, float("inf"))] == ["0:00", "1:15", "1:02:05", "?"]
