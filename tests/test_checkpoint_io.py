"""Checkpoints are written whole, next to where they go: never through ``$TMPDIR`` (a small temp folder does not
matter), a full disk is one line naming the file and the space it needs (the previous checkpoint stays), and a
damaged file is called damaged, not tampered with."""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from experiments.common.checkpoint_io import (
    AtomicCheckpointIO,
    CheckpointWriteError,
    checkpoint_nbytes,
    remove_partial_saves,
)
from experiments.common.checkpoints import CheckpointError, read_checkpoint

BIG = 3_000_000  # floats: a 12 MB checkpoint


def state(i: int) -> dict:
    return {"i": i, "w": torch.full((BIG,), float(i))}


def is_whole(path: Path, i: int) -> bool:
    loaded = torch.load(path, weights_only=True)
    return loaded["i"] == i and torch.equal(loaded["w"], torch.full((BIG,), float(i)))


@pytest.fixture
def tiny_mount(tmp_path):
    """A 2 MB tmpfs (needs root); skipped where it cannot be mounted."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
        ).returncode
    ):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_no_byte_goes_through_tmpdir(tmp_path, monkeypatch):
    """Lightning's own writer stages the whole file in tempfile's folder ($TMPDIR) through an fsspec transaction;
    ours never touches it: with that folder gone, Lightning's fails and ours writes."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-tmpdir"))
    with pytest.raises(FileNotFoundError):
        TorchCheckpointIO().save_checkpoint(state(1), tmp_path / "lightning.ckpt")
    AtomicCheckpointIO().save_checkpoint(state(1), tmp_path / "last.ckpt")
    assert is_whole(tmp_path / "last.ckpt", 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_a_tiny_tmpdir_does_not_matter(tmp_path, tiny_mount, monkeypatch):
    """$TMPDIR on a 2 MB tmpfs (a cluster's small /tmp): a 12 MB checkpoint is still written."""
    monkeypatch.setenv("TMPDIR", str(tiny_mount))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read $TMPDIR
    assert tempfile.gettempdir() == str(tiny_mount)
    AtomicCheckpointIO().save_checkpoint(state(2), tmp_path / "last.ckpt")
    assert is_whole(tmp_path / "last.ckpt", 2) and not any(tiny_mount.iterdir())


def test_a_full_disk_is_refused_before_writing_naming_the_file_and_space(tiny_mount):
    path = tiny_mount / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"i": 0, "w": torch.zeros(10)}, path)
    with pytest.raises(CheckpointWriteError) as err:
        AtomicCheckpointIO().save_checkpoint(state(1), path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert "needs about 12.4 MB" in message and "MB free" in message and "kept whole" in message
    assert torch.load(path, weights_only=True)["i"] == 0  # the previous one stays
    assert sorted(p.name for p in tiny_mount.iterdir()) == ["last.ckpt"]


def test_no_space_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """The space is gone while writing (another process filled the disk): ENOSPC from the file system."""
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint(state(1), path)
    real_save = torch.save

    def enospc(checkpoint, file):
        real_save({"half": torch.zeros(1000)}, file)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("experiments.common.checkpoints.torch.save", enospc)
    with pytest.raises(
        CheckpointWriteError, match=r"last.ckpt: cannot write the checkpoint: not enough space"
    ):
        io.save_checkpoint(state(2), path)
    assert is_whole(path, 1) and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    assert isinstance(CheckpointWriteError("x"), CheckpointError)  # a user error: one line, exit 2


def test_size_estimate_counts_shared_storage_once():
    w = torch.zeros(1000)
    assert checkpoint_nbytes({"a": w, "b": [w, w[:10]], "c": {"d": torch.zeros(10, dtype=torch.int64)}}) == (
        4000 + 80 + 2**20
    )


def test_partial_files_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.Popen(["true"])  # a process id that has exited
    dead.wait()
    partial = tmp_path / f".last.ckpt.tmp-{dead.pid}"
    mine = tmp_path / f".best.ckpt.tmp-{os.getpid()}"
    for p in (partial, mine):
        p.write_bytes(b"PK partial")
    assert remove_partial_saves(tmp_path) == [partial]
    assert not partial.exists() and mine.exists()


def test_a_damaged_file_is_called_damaged(tmp_path):
    """Random bytes stop torch's weights-only unpickler at an unknown opcode: not a payload, a damaged file."""
    noise = tmp_path / "noise.ckpt"
    noise.write_bytes(bytes(range(256)) * 20 + os.urandom(4000))
    text = tmp_path / "text.ckpt"
    text.write_text("not a checkpoint\n")
    opcode = tmp_path / "opcode.ckpt"  # starts with pickle's GLOBAL opcode ("c"), then noise
    opcode.write_bytes(b"c" + os.urandom(3000))
    for path in (noise, text, opcode):
        with pytest.raises(CheckpointError) as err:
            read_checkpoint(path)
        message = str(err.value)
        assert "damaged" in message and "tampered" not in message and "refused" not in message, message
