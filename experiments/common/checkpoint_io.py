"""Checkpoints written whole: staged beside their destination, flushed, renamed (see :class:`AtomicCheckpointIO`)."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from experiments.common.checkpoints import CheckpointError
from experiments.common.outputs import PARTIAL_MARK, pid_alive


class CheckpointWriteError(CheckpointError):
    """A checkpoint that could not be written (a full disk): the previous file of that name is kept whole."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints whole: staged in a temporary file *next to* the destination, then renamed.

    Why not Lightning's own writer: ``TorchCheckpointIO`` serialises the whole checkpoint into memory and writes it
    through an fsspec transaction, whose local files are first written to ``tempfile.mkstemp()`` (``$TMPDIR``) and
    moved at commit. A small ``$TMPDIR`` (common on clusters) then fails a run that has room where its checkpoints
    go, and a kill during the save leaves the partial file in the system temp folder. Here ``torch.save`` writes
    straight into ``.<name>.tmp-<pid>`` in the destination folder (same filesystem: the rename is atomic), which is
    flushed to disk before the rename (and the folder after it), so that a kill or a power cut never leaves a
    corrupt or empty ``last.ckpt``. Partial files of killed saves are removed by the next save into that folder
    and when the run starts again (:func:`remove_partial_saves`). A full disk is a :class:`CheckpointWriteError`
    naming the file and the space it needs; the previous checkpoint stays.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_partial_saves(path.parent)
        needed = checkpoint_nbytes(checkpoint)
        free = shutil.disk_usage(path.parent).free
        if (
            needed > free
        ):  # refused before a byte is written: the previous checkpoint and the disk stay as they are
            raise CheckpointWriteError(_no_space(path, needed, free))
        tmp = path.with_name(f".{path.name}{PARTIAL_MARK}{os.getpid()}")
        try:
            with open(tmp, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException as err:
            tmp.unlink(missing_ok=True)
            if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise CheckpointWriteError(
                    _no_space(path, needed, shutil.disk_usage(path.parent).free)
                ) from None
            raise
        _fsync(path.parent)


def checkpoint_nbytes(checkpoint: Any) -> int:
    """About the size ``torch.save`` writes: every distinct tensor storage, plus 1 MiB for everything else."""
    seen: dict[tuple[Any, int], int] = {}

    def visit(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            storage = value.untyped_storage()
            seen[(value.device, storage.data_ptr())] = storage.nbytes()
        elif isinstance(value, Mapping):
            for item in value.values():
                visit(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)

    visit(checkpoint)
    return sum(seen.values()) + 2**20


def _no_space(path: Path, needed: int, free: int) -> str:
    return (
        f"{path}: cannot write the checkpoint: not enough space on the disk of {path.parent} "
        f"(it needs about {_mb(needed)}, {_mb(free)} free). The previous checkpoint of that name, if any, is "
        "kept whole; free some space (or set logs_dir= to another disk) and resume with RESUME=last."
    )


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_partial_saves(folder: str | Path) -> list[Path]:
    """Remove the ``.<name>.tmp-<pid>`` files of ``folder`` whose writer is gone (a save killed mid-write);
    returns them. A run calls this on its checkpoint folder when it starts; every save does for its folder."""
    removed = []
    for tmp in Path(folder).glob(f".*{PARTIAL_MARK}*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
