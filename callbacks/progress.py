"""Training progress on the console, chosen explicitly for where the output goes.

A terminal gets Lightning's tqdm bar. Anything else (``make train > train.log``, a job scheduler's log file,
``make compare``'s per-run logs) gets :class:`ProgressLines`: one plain line every N steps with the step, the
loss, the speed and the time left, and a line around each validation; no ``\\r`` frames, so the file reads
like a log. The choice never depends on which optional packages happen to be installed (Lightning would pick
its rich bar whenever ``rich`` is importable).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar


def progress_bar(*, every_n_steps: int, stream: TextIO | None = None) -> ProgressBar:
    """Lightning's tqdm bar when ``stream`` (default stdout) is a terminal, else :class:`ProgressLines`."""
    stream = stream or sys.stdout
    if stream.isatty():
        return TQDMProgressBar()
    return ProgressLines(every_n_steps=every_n_steps, stream=stream)


def format_duration(seconds: float) -> str:
    """``75.4`` -> ``"1:15"``, ``3725`` -> ``"1:02:05"``; ``"?"`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressLines(ProgressBar):
    """Plain progress lines for output that is not a terminal (rank 0 only, like any Lightning bar).

    ``step 120/500 | epoch 0 | train/loss 3.2141 | 2.41 it/s | ETA 2:38`` every ``every_n_steps`` optimizer
    steps (and at the last one); ``validation at step 250: 8 batches`` and ``validation done in 0:41`` around
    each validation; ``test: 16 batches`` and ``test done in 1:02`` around a test. The speed is measured since the previous line, validation time
    excluded; the ETA assumes that speed for the remaining steps.
    """

    def __init__(self, *, every_n_steps: int = 50, stream: TextIO | None = None) -> None:
        super().__init__()
        self.every_n_steps = max(1, int(every_n_steps))
        self.stream = stream
        self._enabled = True
        self._last_step = 0
        self._last_time = 0.0
        self._eval_start = 0.0

    # ------------------------------------------------------------------ ProgressBar interface
    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def print(self, *args: Any, **kwargs: Any) -> None:
        """What ``trainer.progress_bar_callback.print`` writes: a plain line."""
        if self._enabled:
            print(*args, **kwargs, file=self.stream or sys.stdout, flush=True)

    # ------------------------------------------------------------------ training
    def total_steps(self, trainer: L.Trainer) -> float:
        """The step budget (``max_steps``, else the epochs' batches); ``inf`` when unbounded."""
        if trainer.max_steps and trainer.max_steps > 0:
            return float(trainer.max_steps)
        try:
            return float(trainer.estimated_stepping_batches)
        except Exception:  # noqa: BLE001 - e.g. an iterable without a length: no ETA, still progress
            return math.inf

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_step, self._last_time = trainer.global_step, time.monotonic()
        total = self.total_steps(trainer)
        start = f" from step {trainer.global_step}" if trainer.global_step else ""
        budget = f"{total:.0f} steps" if math.isfinite(total) else "no step limit"
        self.print(f"training: {budget}{start}, a progress line every {self.every_n_steps} steps")

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        total = self.total_steps(trainer)
        if not self._enabled or step == self._last_step or (step % self.every_n_steps and step < total):
            return
        now = time.monotonic()
        rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_step, self._last_time = step, now
        parts = [f"step {step}/{total:.0f}" if math.isfinite(total) else f"step {step}"]
        parts.append(f"epoch {trainer.current_epoch}")
        for key, value in self.get_metrics(trainer, pl_module).items():
            if key != "v_num" and isinstance(value, (int, float)):
                parts.append(f"{key} {value:.4f}")
        parts.append(f"{rate:.2f} it/s")
        parts.append(f"ETA {format_duration((total - step) / rate if rate > 0 else math.inf)}")
        self.print(" | ".join(parts))

    # ------------------------------------------------------------------ evaluation
    def _eval_started(self, trainer: L.Trainer, what: str, batches: Any) -> None:
        self._eval_start = time.monotonic()
        count = sum(b for b in batches if math.isfinite(b)) if isinstance(batches, list) else batches
        where = f" at step {trainer.global_step}" if trainer.global_step else ""
        self.print(f"{what}{where}: {count} batch{'' if count == 1 else 'es'}")

    def _eval_done(self, what: str) -> None:
        seconds = time.monotonic() - self._eval_start
        self._last_time += seconds  # the training speed excludes evaluation time
        self.print(f"{what} done in {format_duration(seconds)}")

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._eval_started(trainer, "validation", trainer.num_val_batches)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._eval_done("validation")

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._eval_started(trainer, "test", trainer.num_test_batches)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._eval_done("test")
