"""The kit's commands run as a user runs them, in subprocesses: ``python -m experiments.train`` with the tiny
model (:data:`TINY_RUN`), waiting for a file or the end, and free ports for DDP runs started side by side."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from support.tiny import TINY_MODEL

REPO = Path(__file__).resolve().parents[2]
TINY_RUN = [
    *TINY_MODEL,
    "model.lm.tokenizer_captions=200",
    "data.val_size=8",
    "data.batch_size=4",
    "generation.max_new_tokens=8",
    "metrics.change_id=false",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1",
]


def start_training(logs: Path, *overrides: str, resume: str = "", **popen) -> subprocess.Popen:
    """``python -m experiments.train`` (what ``make train`` runs); output goes to files next to ``logs``, so a
    child is never blocked on a full pipe while the test waits."""
    args = " ".join([*TINY_RUN, f"logs_dir={logs}", *overrides])
    cmd = [sys.executable, "-m", "experiments.train", "--args", args] + (
        ["--resume", resume] if resume else []
    )
    # One thread per process: the cores are shared, and oversubscribed OpenMP threads make tiny steps slow.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MASTER_PORT": str(free_port())}
    tag = f"{logs.name}-{'resume' if resume else 'run'}"
    out, err = (open(logs.parent / f"{tag}.{kind}", "w") for kind in ("out", "err"))  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=err, text=True, **popen)
    proc.logs = (Path(out.name), Path(err.name))  # type: ignore[attr-defined]
    return proc


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    proc.wait(timeout=timeout)
    out, err = (p.read_text() for p in proc.logs)  # type: ignore[attr-defined]
    return proc.returncode, out, err


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            log = proc.logs[1].read_text()[-3000:] if hasattr(proc, "logs") else ""
            raise AssertionError(f"the process ended before {path} appeared:\n{log}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear in {timeout} s")
        time.sleep(0.05)


_handed_out: set[int] = set()


def free_port() -> int:
    """A port that is free now and was not returned before in this test session.

    Lightning picks a free port itself when ``MASTER_PORT`` is unset, but two DDP runs started at the same
    moment (the kill-and-resume test starts an uninterrupted and a to-be-killed run together) can be handed
    the same one, and the second then fails with EADDRINUSE. Tests set ``MASTER_PORT`` from here instead.
    """
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
