"""The training sampler every DataModule shares: seeded per (seed, epoch), and resumable mid-epoch.

Lightning restores the model, optimizer, scheduler and loop counters from a checkpoint, but a plain DataLoader
restarts its epoch from the first batch: a run killed mid-epoch would see some pairs twice and others never,
and would no longer match an uninterrupted run. :class:`ResumableSampler` fixes the order of every epoch from
``(seed, epoch)`` alone, and :meth:`ResumableSampler.resume` makes the next iteration continue after the
samples the killed run had already consumed. The DataModule records that position in the checkpoint
(:meth:`datamodules.base.PairDataModule.state_dict`).

Also here: :func:`worker_init_fn`, which keeps DataLoader workers alive through Ctrl+C / SIGTERM so that the
main process can finish its step and save a checkpoint.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 32-bit seed for ``(seed, epoch)``."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch]).generate_state(1)[0])


class ResumableSampler(Sampler[int]):
    """A seeded training order, optionally telling the dataset the epoch, that can resume mid-epoch.

    Args:
        n: dataset size.
        seed: the run's seed; epoch ``e`` is ordered by ``epoch_seed(seed, e)`` only, so any process (a resumed
            run, a DataLoader worker) computes the same order.
        num_samples: samples per epoch (default ``n``); more than ``n`` repeats permutations.
        weights: per-item weights: draw ``num_samples`` items with replacement (the mixture); otherwise a
            permutation.
        encode_epoch: yield ``epoch * n + index`` so that the dataset can decode the epoch with ``divmod``
            (per-epoch augmentation that is deterministic in any worker: :class:`~datamodules.record_dataset.RecordDataset`);
            ``False`` yields plain indices (datasets that are a pure function of the index, like the embedded
            benchmark).

    Lightning calls :meth:`set_epoch` before each epoch; without it each new iteration counts as the next epoch.
    """

    def __init__(
        self,
        n: int,
        *,
        seed: int,
        num_samples: int | None = None,
        weights: Sequence[float] | torch.Tensor | None = None,
        encode_epoch: bool = True,
    ) -> None:
        if n <= 0:
            raise ValueError(f"{type(self).__name__} needs a non-empty dataset")
        self.n = n
        self.seed = seed
        self.num_samples = num_samples or n
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        self.encode_epoch = encode_epoch
        self.epoch = 0
        self._resume: tuple[int, int] | None = None  # (epoch, samples already consumed)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, *, epoch: int, consumed: int) -> None:
        """The next iteration is ``epoch``, continuing after its first ``consumed`` samples."""
        self.epoch = epoch
        self._resume = (epoch, max(0, int(consumed)))

    def __len__(self) -> int:
        # Always the full epoch, also when resuming: Lightning counts the epoch's batches from len() and already
        # knows how many were done (and a DistributedSampler wrapper indexes into the full length).
        return self.num_samples

    def order(self, epoch: int) -> list[int]:
        """The whole order of ``epoch`` (what an uninterrupted run iterates)."""
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        if self.weights is not None:
            order = torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator)
        else:
            reps = -(-self.num_samples // self.n)
            order = torch.cat([torch.randperm(self.n, generator=generator) for _ in range(reps)])
            order = order[: self.num_samples]
        offset = epoch * self.n if self.encode_epoch else 0
        return (offset + order).tolist()

    def __iter__(self) -> Iterator[int]:
        epoch = self.epoch
        self.epoch += 1
        order = self.order(epoch)
        if self._resume is not None:
            resume_epoch, consumed = self._resume
            self._resume = None
            if resume_epoch == epoch and consumed:
                # The consumed samples move to the end instead of being dropped: the length stays what
                # DistributedSampler wrappers index into, and Lightning ends the resumed epoch after its
                # remaining batch count, before it reaches them.
                consumed = min(consumed, len(order))
                order = order[consumed:] + order[:consumed]
        return iter(order)


def worker_init_fn(worker_id: int) -> None:
    """DataLoader workers ignore SIGINT / SIGTERM: Ctrl+C (or a job scheduler's SIGTERM) reaches the whole
    process group, and a worker that died of it would crash the main process before it could save a
    checkpoint. The main process stops the workers itself; they also exit when it dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        # What Lightning's `seed_everything(workers=True)` installs when a loader has no worker_init_fn.
        from lightning.fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id)
