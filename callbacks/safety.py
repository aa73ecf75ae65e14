"""Callbacks that keep a long training run safe to stop, to kill and to resume.

- :class:`StepSeed`: reseeds the random generators before every training batch from (seed, batch number, rank),
  so that dropout and any other training-time randomness of a resumed run is that of an uninterrupted one
  (Lightning does not store RNG states, and building a DataLoader iterator on resume draws from them).
- :class:`LastCheckpoint`: ``last.ckpt`` every N optimizer steps (``checkpoint.every_n_train_steps``), when
  training is stopped and at its end (Lightning's ``ModelCheckpoint``), written atomically
  (``experiments.common.checkpoint_io.AtomicCheckpointIO``).
- :class:`StopOnSignal`: SIGINT (Ctrl+C) and SIGTERM finish the current step and stop every rank there with
  :class:`TrainingStopped` (``last.ckpt`` is then saved); a second Ctrl+C stops at once.
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
from lightning.pytorch.callbacks import ModelCheckpoint

log = logging.getLogger("m3diff.safety")


class NonFiniteError(FloatingPointError):
    """A non-finite loss, gradient or weight; ``step`` is the optimizer step it appeared at."""

    def __init__(self, message: str, *, step: int) -> None:
        super().__init__(message)
        self.step = step


class TrainingStopped(Exception):
    """Training stopped on a signal, ``checkpoint`` saved (``None``: checkpoint.save_last is off); the CLI exits
    with ``128 + signum``."""

    def __init__(self, signum: int, *, step: int, checkpoint: Path | None) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        saved = (
            f"checkpoint saved to {checkpoint}"
            if checkpoint
            else "no checkpoint (checkpoint.save_last: false)"
        )
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}; {saved}")


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


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt`` kept current by Lightning's unmonitored ``ModelCheckpoint``: every ``every_n_train_steps``
    optimizer steps (``save_last``, no top-k files) and when training is stopped (``save_on_exception``).

    An unmonitored instance of its own, because a monitored one defers step-based saves until the validation
    metric exists (no checkpoint before the first validation, or after a resume). Two changes to Lightning's:
    an exception saves only when it is a stop request (:class:`TrainingStopped`; not a non-finite loss, whose step
    must not become the "last good" one, nor a second Ctrl+C that may land mid-step), and only ``last.ckpt`` (Lightning
    would write a second copy under its file-name template); and the end of training saves the final step
    (Lightning's ``save_last`` saves there only when nothing was saved before).
    """

    def __init__(self, dirpath: str | Path, every_n_train_steps: int | None) -> None:
        super().__init__(
            dirpath=dirpath,
            every_n_train_steps=int(every_n_train_steps or 0) or None,
            save_top_k=0,
            save_last=True,
            save_on_exception=True,
            enable_version_counter=False,
        )

    @property
    def path(self) -> Path:
        return Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, TrainingStopped) and self._should_save_on_exception(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._should_skip_saving_checkpoint(trainer):  # not saved at this step yet
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


# ------------------------------------------------------------------------------------------------ signals
class StopOnSignal(L.Callback):
    """SIGINT / SIGTERM during training: finish the optimizer step, raise :class:`TrainingStopped` (on which
    :class:`LastCheckpoint` saves ``last_path``).

    Stopping right after ``on_train_batch_end`` at a step boundary keeps the checkpoint consistent (the point at
    which the periodic saves happen, accumulated micro-batches included) and skips the validation and epoch-end
    work that ``trainer.should_stop`` would still run: a scheduler's grace period after SIGTERM is short.

    With several processes the ranks agree on the step: at every step boundary one all-reduce (max) of the
    signal each rank received, so a signal sent to one rank or to all stops every rank after the same step and
    the save is collective. The handler itself only records the signal: Lightning's own SIGTERM handler, which
    this one replaces during training, runs collectives inside the handler and checks the flag per rank, and a
    2-process gloo run stopped by it hung in 2 of 4 tries. Lightning's handler is put back when training ends.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, last_path: str | Path | None) -> None:
        self.last_path = None if last_path is None else Path(last_path)
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.requested = None
        if threading.current_thread() is not threading.main_thread():
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
        if not at_step_boundary(trainer):
            return
        signum = self._agreed_signal(trainer)
        if signum:
            self._restore()
            raise TrainingStopped(signum, step=trainer.global_step, checkpoint=self.last_path)

    def _agreed_signal(self, trainer: L.Trainer) -> int:
        """The signal to stop on (0: go on), the same on every rank."""
        if trainer.world_size == 1 or not torch.distributed.is_initialized():
            return self.requested or 0
        flag = torch.tensor([self.requested or 0], device=trainer.strategy.root_device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item())

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
        # Only what training changes: frozen weights (a 7B base under LoRA) are as finite as when they were loaded,
        # and scanning them would read every byte of the base at every save.
        trainable = {n for n, p in pl_module.named_parameters(remove_duplicate=False) if p.requires_grad}
        for name, tensor in checkpoint.get("state_dict", {}).items():
            if name not in trainable:
                continue
            if torch.is_tensor(tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise NonFiniteError(
                    f"non-finite weights ({name}) at step {trainer.global_step}: checkpoint not written, "
                    "the previous one is kept",
                    step=trainer.global_step,
                )
