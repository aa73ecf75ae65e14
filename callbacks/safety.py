"""Callbacks that keep a long training run safe to stop, to kill and to resume.

- :class:`StepSeed`: reseeds the random generators before every training batch from (seed, batch number, rank),
  so that dropout and any other training-time randomness of a resumed run is that of an uninterrupted one
  (Lightning does not store RNG states, and building a DataLoader iterator on resume draws from them).
- :class:`LastCheckpoint`: ``last.ckpt`` every N optimizer steps (``checkpoint.every_n_train_steps``), after
  each validation and at the end, written atomically (``experiments.common.runner.AtomicCheckpointIO``).
- :class:`StopOnSignal`: SIGINT (Ctrl+C) and SIGTERM finish the current step, save ``last.ckpt`` and stop with
  :class:`TrainingStopped`; a second Ctrl+C stops at once.
- :class:`NonFiniteGuard`: a non-finite gradient stops the run before the optimizer writes it into the weights,
  and a checkpoint with non-finite weights is never written, so the last checkpoint on disk stays a good one.
  A non-finite *loss* stops the run before its backward pass.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import zlib
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.trainer.states import TrainerFn

log = logging.getLogger("m3diff.safety")


class NonFiniteError(FloatingPointError):
    """A non-finite loss, gradient or weight; ``step`` is the optimizer step it appeared at."""

    def __init__(self, message: str, *, step: int) -> None:
        super().__init__(message)
        self.step = step


class TrainingStopped(Exception):
    """Training stopped on a signal after saving ``checkpoint``; the CLI exits with ``128 + signum``."""

    def __init__(self, signum: int, *, step: int, checkpoint: Path) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(
            f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint saved to {checkpoint}"
        )


# ------------------------------------------------------------------------------------------------ seeding
def step_seed(seed: int, batch: int, rank: int) -> int:
    return zlib.crc32(f"{seed}:{batch}:{rank}".encode())


class StepSeed(L.Callback):
    """Seed torch, numpy and ``random`` before each training batch from ``(seed, batch number, rank)``.

    The batch number is Lightning's total batch count, restored from the checkpoint, so a resumed run draws
    the same dropout masks as the uninterrupted run did at the same batch, whatever ran in between
    (validation, a new DataLoader iterator). The rank keeps DDP processes' draws independent.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        value = step_seed(
            self.seed, trainer.fit_loop.epoch_loop.batch_progress.total.ready, trainer.global_rank
        )
        torch.manual_seed(value)
        np.random.seed(value)
        random.seed(value)


# ------------------------------------------------------------------------------------------------ last.ckpt
def at_step_boundary(trainer: L.Trainer) -> bool:
    """True after an optimizer step (not between the micro-batches of an accumulated one): the only points
    where a checkpoint holds everything (accumulated gradients are not saved)."""
    return not trainer.fit_loop.epoch_loop._should_accumulate()


class LastCheckpoint(L.Callback):
    """Keep ``path`` (``last.ckpt``) current: every ``every_n_train_steps`` optimizer steps, after each
    validation during training, and when training ends.

    Lightning's ``ModelCheckpoint(monitor=..., every_n_train_steps=...)`` defers step-based saves until the
    monitored validation metric exists, so before the first validation (and after every resume) it would
    write nothing: a killed run would lose everything since its last validation. This callback does not
    monitor anything; ``ModelCheckpoint`` keeps the best-by-validation files.
    """

    def __init__(self, path: str | Path, every_n_train_steps: int | None = None) -> None:
        self.path = Path(path)
        self.every = int(every_n_train_steps or 0)
        self._saved_step: int | None = None

    def _save(self, trainer: L.Trainer) -> None:
        if self._saved_step != trainer.global_step and trainer.global_step > 0:
            trainer.save_checkpoint(self.path, weights_only=False)
            self._saved_step = trainer.global_step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.every and trainer.global_step % self.every == 0 and at_step_boundary(trainer):
            self._save(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self._save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)


# ------------------------------------------------------------------------------------------------ signals
class StopOnSignal(L.Callback):
    """SIGINT / SIGTERM during training: finish the step, save ``last_path``, raise :class:`TrainingStopped`.

    Stopping right after ``on_train_batch_end`` keeps the checkpoint consistent (the same point at which
    ``ModelCheckpoint(every_n_train_steps=...)`` saves) and skips the validation and epoch-end work that
    ``trainer.should_stop`` would still run: a scheduler's grace period after SIGTERM is short. Lightning's own
    SIGTERM handling only stops at the end of an epoch; it is put back when training ends.

    Single process only: with several processes the ranks would have to agree on the step to stop at, so there
    Lightning's handling is left in place (it stops every rank; resume from the last periodic checkpoint).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, last_path: str | Path) -> None:
        self.last_path = Path(last_path)
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.requested = None
        if trainer.world_size > 1 or threading.current_thread() is not threading.main_thread():
            return
        for signum in self.SIGNALS:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            # Second Ctrl+C: the user does not want to wait for the step to finish.
            self._restore()
            raise KeyboardInterrupt
        if self.requested is None:
            log.warning(
                "received %s: stopping after this step with a checkpoint (Ctrl+C again to stop at once)",
                signal.Signals(signum).name,
            )
        self.requested = signum

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.requested is None or not at_step_boundary(trainer):
            return
        trainer.save_checkpoint(self.last_path, weights_only=False)
        self._restore()
        raise TrainingStopped(self.requested, step=trainer.global_step, checkpoint=self.last_path)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, handler)
        self._previous = {}


# ------------------------------------------------------------------------------------------------ non-finite
class NonFiniteGuard(L.Callback):
    """Stop on a non-finite loss before the backward pass and on a non-finite gradient before the optimizer step;
    never write a checkpoint with non-finite weights.

    A finite loss can still produce inf/NaN gradients (an overflow in the backward pass); one optimizer step
    with them turns every weight it touches into NaN, and the next periodic checkpoint would save those.
    """

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        # Before backward: the weights are still those of the last good step.
        if not torch.isfinite(loss):
            raise NonFiniteError(
                f"non-finite training loss ({loss.item()}) at step {trainer.global_step}",
                step=trainer.global_step,
            )

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        named = [(n, p.grad) for n, p in pl_module.named_parameters() if p.grad is not None]
        if not named:
            return
        # One fused reduction and one host sync per step (the max-norm cannot overflow on large finite values);
        # the per-tensor search only runs when something is wrong.
        largest = torch.nn.utils.get_total_norm([g.detach() for _, g in named], norm_type=float("inf"))
        if torch.isfinite(largest):
            return
        bad = next(n for n, g in named if not torch.isfinite(g).all())
        raise NonFiniteError(
            f"non-finite gradient (in {bad}) at step {trainer.global_step}: the optimizer step was not taken",
            step=trainer.global_step,
        )

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        for name, tensor in checkpoint.get("state_dict", {}).items():
            if torch.is_tensor(tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise NonFiniteError(
                    f"non-finite weights ({name}) at step {trainer.global_step}: checkpoint not written, "
                    "the previous one is kept",
                    step=trainer.global_step,
                )
