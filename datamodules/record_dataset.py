"""The dataset of the annotation-file DataModules: :class:`PairRecord` s -> contract samples.

Images are opened here, when a sample is requested (indexing never opens one). Image decode problems
(truncated/corrupt file, decompression bomb) raise under ``data.on_error=raise``, naming the file and record.
Under ``skip`` the training split substitutes the next readable pair (each substitution is logged with a
running count); evaluation splits are instead decoded once in ``setup``
(:meth:`~datamodules.records.RecordDataModule.build_dataset`), so unreadable pairs are dropped before any
prediction is made (a substitute would give another pair's id a second prediction).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

from torch.utils.data import Dataset

from datamodules.annotations import PairRecord
from datamodules.contract import PairSample
from datamodules.errors import DataError
from datamodules.images import DEFAULT_MAX_IMAGE_PIXELS, ImageLoadError, ImageTransform, load_image

log = logging.getLogger("m3diff.data")

# A run of this many unreadable pairs in a row under on_error=skip means the data is broken, not noisy.
MAX_SUBSTITUTIONS = 64


def per_caption(records: Sequence[PairRecord]) -> list[PairRecord]:
    """One training record per reference (``data.sample_per=caption``), each with its own instruction."""
    out = []
    for record in records:
        for i, caption in enumerate(record.captions):
            instructions = (record.instructions[i],) if record.instructions else ()
            out.append(record._replace(captions=(caption,), instructions=instructions))
    return out


class RecordDataset(Dataset):
    """Records -> contract samples. Keys may carry the epoch: ``epoch * n + index``
    (:class:`~datamodules.samplers.ResumableSampler`), which seeds CLEVR-Change's train-time swap."""

    def __init__(
        self,
        records: Sequence[PairRecord],
        *,
        benchmark: str,
        transform: ImageTransform,
        on_error: str = "raise",
        max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
        swap_prob: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.records = list(records)
        self.benchmark = benchmark
        self.transform = transform
        self.on_error = on_error
        self.max_pixels = max_pixels
        self.swap_prob = swap_prob
        self.seed = seed
        self.unreadable: set[int] = set()  # indices found unreadable in this process (skip policy)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int) -> PairSample:
        epoch, index = divmod(int(key), len(self.records))
        return self.get(index, epoch)

    def get(self, index: int, epoch: int = 0) -> PairSample:
        """Sample ``index``; under ``skip`` an unreadable pair is replaced by the next readable one."""
        n = len(self.records)
        for step in range(min(n, MAX_SUBSTITUTIONS)):
            i = (index + step) % n
            if i in self.unreadable:
                continue
            try:
                return self._load(self.records[i], epoch)
            except DataError as err:
                if self.on_error == "raise":
                    raise
                self.unreadable.add(i)
                log.warning(
                    "%s -- data.on_error=skip: substituted the next readable pair (%d unreadable pair(s) so far "
                    "in this process)",
                    err,
                    len(self.unreadable),
                )
        raise DataError(f"no readable pair among {min(n, MAX_SUBSTITUTIONS)} tried from index {index}")

    def swaps(self, record: PairRecord, epoch: int) -> bool:
        """Deterministic in (seed, epoch, swap key): reproducible with any number of workers."""
        if record.swapped is None or self.swap_prob <= 0:
            return False
        return random.Random(f"{self.seed}:{epoch}:{record.swap_key}").random() < self.swap_prob

    def _load(self, record: PairRecord, epoch: int) -> PairSample:
        before, after = record.swapped if self.swaps(record, epoch) else (record.before, record.after)
        tensors = []
        for path in (before, after):
            try:
                tensors.append(self.transform(load_image(path, max_pixels=self.max_pixels)))
            except ImageLoadError as err:
                raise DataError(
                    err.reason, file=path, record=f"pair {record.pair_id!r} ({record.source})"
                ) from None
        sample: PairSample = {
            "pair_id": record.pair_id,
            "before": tensors[0],
            "after": tensors[1],
            "captions": list(record.captions),
            "categories": list(record.categories),
            "benchmark": self.benchmark,
        }
        if record.subset:
            sample["subset"] = record.subset
        if record.instructions and record.instructions[0]:
            # the pair's own prompt (a training sample: its caption's; an evaluation pair: its first record's)
            sample["instruction"] = record.instructions[0]
        return sample
