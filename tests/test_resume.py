"""Kill and resume: a run SIGKILLed mid-epoch and resumed with ``--resume last`` (``make train RESUME=last``) ends
bit-identical to an uninterrupted run; checkpoints are never left corrupt by a kill; SIGINT / SIGTERM stop a run
cleanly with a checkpoint, DataLoader workers included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from support.events import losses
from support.processes import REPO, finish, start_training, wait_for

from datamodules.samplers import ResumableSampler
from experiments.common.checkpoint_io import AtomicCheckpointIO
from experiments.common.checkpoints import read_checkpoint

# ------------------------------------------------------------------------------------------------ resume
RUN = [
    "data.train_size=40",  # 10 batches per epoch: the run crosses an epoch boundary after the resume
    "data.num_workers=0",
    "trainer.max_steps=16",
    "trainer.val_check_interval=null",  # validation at each epoch end and after the step budget
    "checkpoint.every_n_train_steps=3",
    "optim.warmup_steps=3",
]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_last_matches_an_uninterrupted_run(tmp_path):
    full_logs, killed_logs = tmp_path / "uninterrupted", tmp_path / "killed"
    full = start_training(full_logs, *RUN)
    killed = start_training(killed_logs, *RUN)
    run_dir = killed_logs / "default" / "siglip-tiny" / "version_0"
    last = run_dir / "checkpoints" / "last.ckpt"
    wait_for(last, killed)  # the first periodic checkpoint (step 3): kill now, mid-step or mid-save
    killed.kill()
    assert finish(killed)[0] == -signal.SIGKILL
    code, _, err = finish(full)
    assert code == 0, err[-3000:]

    checkpoint = read_checkpoint(last)
    saved_step = checkpoint["global_step"]
    position = checkpoint["SyntheticDataModule"]["train_sampler"]
    assert saved_step in (3, 6, 9, 10, 12, 15)  # every 3 steps, or after the epoch-end validation
    assert position == {"epoch": saved_step // 10, "consumed": (saved_step % 10) * 4}  # mid-epoch

    resumed = start_training(killed_logs, *RUN, resume="last")
    code, _, err = finish(resumed)
    assert code == 0, err[-3000:]
    assert (
        "exists and is not empty" not in err
    )  # resuming into the run's own folder is no cause for a warning
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["version_0"]  # same run folder

    full_dir = full_logs / "default" / "siglip-tiny" / "version_0"
    # The loss curve after the resume point, the final weights and the final metrics: bit-identical.
    expected, got = losses(full_dir), losses(run_dir)
    # A step's loss reaches the event file just after the checkpoint of that step is written, so the killed run
    # may take the last one before saved_step with it; every step from saved_step on is the resumed run's.
    assert sorted(expected) == list(range(16)) and set(range(saved_step - 1)) <= set(got)
    assert {s: got[s] for s in range(saved_step, 16)} == {s: expected[s] for s in range(saved_step, 16)}
    a, b = read_checkpoint(full_dir / "checkpoints" / "last.ckpt"), read_checkpoint(last)
    assert a["global_step"] == b["global_step"] == 16
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    metrics = [json.loads((d / "final_metrics.json").read_text()) for d in (full_dir, run_dir)]
    assert metrics[0] == metrics[1] and "val/loss" in metrics[0]


def two_process_run(*, max_steps: int, every: int) -> list[str]:
    """Overrides of a 2-process gloo DDP run on CPU saving last.ckpt every ``every`` steps (no validation:
    weights and losses are compared)."""
    return [
        "data.train_size=64",
        "data.num_workers=0",
        f"trainer.max_steps={max_steps}",
        "trainer.limit_val_batches=0",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        f"checkpoint.every_n_train_steps={every}",
        "optim.warmup_steps=2",
    ]


@pytest.mark.slow
def test_two_process_ddp_run_resumes_bit_identically(tmp_path):
    """The same with 2 CPU processes (DDP, gloo): the order is sharded by the DataModule, not reshuffled by
    Lightning's sampler wrapper, so the ranks continue with the pairs they would have had."""
    ddp = two_process_run(max_steps=8, every=2)
    full_logs, killed_logs = tmp_path / "uninterrupted", tmp_path / "killed"
    full = start_training(full_logs, *ddp)
    killed = start_training(killed_logs, *ddp, start_new_session=True)  # its group: rank 0 and rank 1
    run_dir = killed_logs / "default" / "siglip-tiny" / "version_0"
    last = run_dir / "checkpoints" / "last.ckpt"
    try:
        wait_for(last, killed)
    finally:
        os.killpg(killed.pid, signal.SIGKILL)
    finish(killed)
    code, _, err = finish(full)
    assert code == 0, err[-3000:]
    saved_step = read_checkpoint(last)["global_step"]
    assert 2 <= saved_step < 8

    code, out, err = finish(start_training(killed_logs, *ddp, resume="last"))
    assert code == 0, err[-3000:]
    assert "GLOBAL_RANK: 1" in out + err
    full_dir = full_logs / "default" / "siglip-tiny" / "version_0"
    expected, got = losses(full_dir), losses(run_dir)
    assert {s: got[s] for s in range(saved_step, 8)} == {s: expected[s] for s in range(saved_step, 8)}
    a, b = read_checkpoint(full_dir / "checkpoints" / "last.ckpt"), read_checkpoint(last)
    assert a["global_step"] == b["global_step"] == 8
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


@pytest.mark.slow
def test_two_process_ddp_run_stopped_by_sigterm_resumes_from_its_checkpoint(tmp_path):
    """SIGTERM to both ranks, as a scheduler sends it: Lightning stops every rank at the same batch, last.ckpt is
    saved at that step, both processes exit 143, and RESUME=last ends bit-identical to an uninterrupted run."""
    ddp = two_process_run(max_steps=16, every=3)
    full_logs, stopped_logs = tmp_path / "uninterrupted", tmp_path / "stopped"
    full = start_training(full_logs, *ddp)
    stopped = start_training(stopped_logs, *ddp, start_new_session=True)  # its group: rank 0 and rank 1
    run_dir = stopped_logs / "default" / "siglip-tiny" / "version_0"
    last = run_dir / "checkpoints" / "last.ckpt"
    try:
        wait_for(last, stopped)  # step 3: training is under way
        os.killpg(stopped.pid, signal.SIGTERM)
        code, _, err = finish(stopped, timeout=180)
    finally:
        if stopped.poll() is None:
            os.killpg(stopped.pid, signal.SIGKILL)
    assert code == 128 + signal.SIGTERM, err[-3000:]
    line = next(ln for ln in err.splitlines() if "stopped by SIGTERM after step" in ln)
    step = int(line.split("after step ")[1].split(";")[0])
    assert "Traceback" not in err and read_checkpoint(last)["global_step"] == step and 3 <= step < 16
    assert group_ends(stopped.pid), "rank 1 is still alive"
    code, _, err = finish(full)
    assert code == 0, err[-3000:]

    code, _, err = finish(start_training(stopped_logs, *ddp, resume="last"))
    assert code == 0, err[-3000:]
    full_dir = full_logs / "default" / "siglip-tiny" / "version_0"
    expected, got = losses(full_dir), losses(run_dir)
    assert {s: got[s] for s in range(step, 16)} == {s: expected[s] for s in range(step, 16)}
    a, b = read_checkpoint(full_dir / "checkpoints" / "last.ckpt"), read_checkpoint(last)
    assert a["global_step"] == b["global_step"] == 16
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_resumed_sampler_continues_the_interrupted_order():
    whole = ResumableSampler(10, seed=5, encode_epoch=False)
    whole.set_epoch(3)
    order = list(whole)
    resumed = ResumableSampler(10, seed=5, encode_epoch=False)
    resumed.resume(epoch=3, consumed=4)
    rest = list(resumed)
    assert rest[:6] == order[4:] and len(rest) == len(resumed) == 10  # full length: DDP wrappers index it
    assert list(resumed) == whole.order(4)  # the next epoch is a plain one
    other = ResumableSampler(10, seed=6, encode_epoch=False)
    other.set_epoch(3)
    assert list(other) != order  # seeded by (seed, epoch)


# ------------------------------------------------------------------------------------------------ atomic saves
SAVER = """
import sys, torch
from experiments.common.checkpoint_io import AtomicCheckpointIO
io, i = AtomicCheckpointIO(), 0
while True:
    io.save_checkpoint({"i": i, "w": torch.full((3_000_000,), float(i))}, sys.argv[1])
    i += 1
"""


def check_intact(path: Path) -> int:
    checkpoint = torch.load(path, weights_only=True)
    assert torch.equal(checkpoint["w"], torch.full((3_000_000,), float(checkpoint["i"])))
    return checkpoint["i"]


@pytest.mark.slow
def test_sigkill_during_a_save_never_leaves_a_corrupt_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], cwd=REPO)
    try:
        wait_for(path, proc, timeout=120)
        deadline = time.monotonic() + 60
        # Kill while a temporary file is being written (the save in progress).
        while not any(p.name.startswith(".last.ckpt.tmp-") for p in tmp_path.iterdir()):
            assert time.monotonic() < deadline, "no save in progress seen"
        proc.kill()
    finally:
        proc.kill()
        proc.wait()
    check_intact(path)
    # The next save removes the dead writer's partial file and replaces last.ckpt whole.
    AtomicCheckpointIO().save_checkpoint({"i": 99, "w": torch.full((3_000_000,), 99.0)}, path)
    assert check_intact(path) == 99
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"i": 1, "w": torch.full((3_000_000,), 1.0)}, path)

    def crash(checkpoint, file):
        file.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr("experiments.common.checkpoints.torch.save", crash)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"i": 2, "w": torch.full((3_000_000,), 2.0)}, path)
    assert check_intact(path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


# ------------------------------------------------------------------------------------------------ signals
@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_training_cleanly_with_a_checkpoint(tmp_path, signum):
    """Sent to the whole process group, as a terminal's Ctrl+C or a scheduler's SIGTERM is, with two
    DataLoader workers: the step finishes, last.ckpt is saved, every process exits."""
    proc = start_training(
        tmp_path,
        "data.train_size=2000",
        "data.num_workers=2",
        "trainer.max_steps=400",
        "checkpoint.every_n_train_steps=2",
        start_new_session=True,
    )
    last = tmp_path / "default" / "siglip-tiny" / "version_0" / "checkpoints" / "last.ckpt"
    try:
        wait_for(last, proc)  # training is under way
        os.killpg(proc.pid, signum)
        code, _, err = finish(proc, timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert code == 128 + signum, err[-3000:]
    name = signal.Signals(signum).name
    line = next(ln for ln in err.splitlines() if f"stopped by {name} after step" in ln)
    step = int(line.split("after step ")[1].split(";")[0])
    assert "RESUME=last" in line and "Traceback" not in err
    assert read_checkpoint(last)["global_step"] == step >= 2
    assert group_ends(proc.pid), "processes of the run are still alive"  # no DataLoader worker left behind


def group_ends(pgid: int, timeout: float = 15) -> bool:
    """Whether every process of the group has exited within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False
