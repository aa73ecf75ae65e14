"""Evaluation metrics that count each pair once, on any number of processes.

With DDP, DistributedSampler pads the last batches by repeating pairs: a metric gathered from every rank would
count those pairs twice. Every metric here keys its values by pair and keeps the first occurrence of each key,
in key order (:func:`first_occurrences`), so the result is the single-process one:

- :class:`CaptionRecords` and :func:`unique_pairs`: the evaluated pairs (captions, references, labels) that the
  metrics callback scores;
- :class:`PairLoss`: the token-level evaluation loss; :class:`PairCount`: how many pairs were flagged
  (captions cut by the generation limit).

A record is one evaluated pair: ``{"pair_id", "prediction", "references", "categories", "benchmark",
"subset"}`` (the evaluation step's output, see :mod:`callbacks.caption_metrics`). :class:`CaptionRecords` is a
torchmetrics ``Metric`` holding them as JSON lines in uint8 tensors (``dist_reduce_fx="cat"``), so torchmetrics
gathers every rank's records; :func:`unique_pairs` then keeps each pair once (DistributedSampler pads by
repeating pairs).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

RECORD_KEYS = ("pair_id", "prediction", "references", "categories", "benchmark", "subset")


class CaptionRecords(Metric):
    """Accumulates evaluation records as UTF-8 JSON lines in uint8 tensors; torchmetrics syncs them.

    ``dist_reduce_fx="cat"`` makes ``compute()`` return every rank's records (rank order), on every rank.
    JSON escapes newlines inside strings, so a ``\\n`` byte always ends a record.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("data", default=[], dist_reduce_fx="cat")
        self._add_empty()

    def _add_empty(self) -> None:
        # A rank that saw no batch would otherwise sync a float32 placeholder (torchmetrics' default dtype)
        # against the others' uint8 bytes; an empty uint8 tensor keeps every rank's dtype the same.
        self.data.append(torch.zeros(0, dtype=torch.uint8, device=self.device))

    def reset(self) -> None:
        super().reset()
        self._add_empty()

    def update(
        self,
        pair_id: Sequence[str],
        prediction: Sequence[str],
        references: Sequence[Sequence[str]],
        categories: Sequence[Sequence[str]],
        benchmark: Sequence[str],
        subset: Sequence[str | None] | None = None,
    ) -> None:
        subset = [""] * len(pair_id) if subset is None else subset
        columns = (pair_id, prediction, references, categories, benchmark, subset)
        if len({len(c) for c in columns}) != 1:
            sizes = dict(zip(RECORD_KEYS, map(len, columns)))
            raise ValueError(f"evaluation step output: list lengths differ {sizes}")
        lines = b"".join(
            json.dumps(
                [str(p), str(c), [str(r) for r in refs], [str(x) for x in cats], str(b), str(part or "")]
            ).encode()
            + b"\n"
            for p, c, refs, cats, b, part in zip(*columns)
        )
        self.data.append(torch.frombuffer(bytearray(lines), dtype=torch.uint8).to(self.device))

    def compute(self) -> list[dict[str, Any]]:
        data = dim_zero_cat(self.data) if isinstance(self.data, list) else self.data
        text = bytes(data.cpu().numpy()).decode()
        return [dict(zip(RECORD_KEYS, json.loads(line))) for line in text.split("\n") if line]


def first_occurrences(keys: Sequence[Any]) -> list[int]:
    """Indices of the first occurrence of each key, in sorted key order: the sum or order of what is kept then
    does not depend on how pairs were split over processes (CIDEr / ROUGE-L are means over pairs, and float
    sums differ in the last digit with the order)."""
    first: dict[Any, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    return [first[key] for key in sorted(first)]


def unique_pairs(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """pair id -> record, sorted by id, keeping the first record of each pair (padding repeats pairs in DDP).

    Ids stay the benchmarks' own, unless two benchmarks of one evaluation (a mixture) share an id
    (CLEVR-Change and CLEVR-DC both have ``000256.png``): then every id is keyed ``<benchmark>/<pair id>``.
    """
    owners: dict[str, set[str]] = {}
    for rec in records:
        owners.setdefault(rec["pair_id"], set()).add(rec["benchmark"])
    shared = any(len(benchmarks) > 1 for benchmarks in owners.values())
    keys = [f"{rec['benchmark']}/{rec['pair_id']}" if shared else rec["pair_id"] for rec in records]
    return {keys[i]: dict(records[i]) for i in first_occurrences(keys)}


class PairLoss(Metric):
    """Token-level mean evaluation loss over unique pairs, the same on any number of processes.

    Lightning's ``sync_dist`` mean of per-rank means is not the single-process number (padding, and each rank
    averages its own batches). This keeps one (loss sum, token count) per pair key (``<benchmark>/<pair id>``,
    hashed to int64 so torchmetrics can gather it), gathered from every rank, and counts each pair once.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("keys", default=[], dist_reduce_fx="cat")
        self.add_state("sums", default=[], dist_reduce_fx="cat")
        self.add_state("tokens", default=[], dist_reduce_fx="cat")
        self._add_empty()

    def _add_empty(self) -> None:
        # A rank without batches must still sync tensors of the right dtypes.
        self.keys.append(torch.zeros(0, dtype=torch.int64, device=self.device))
        self.sums.append(torch.zeros(0, dtype=torch.float64, device=self.device))
        self.tokens.append(torch.zeros(0, dtype=torch.float64, device=self.device))

    def reset(self) -> None:
        super().reset()
        self._add_empty()

    def update(self, keys: Sequence[str], sums: torch.Tensor, tokens: torch.Tensor) -> None:
        hashed = [
            int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "big", signed=True)
            for k in keys
        ]
        self.keys.append(torch.tensor(hashed, dtype=torch.int64, device=self.device))
        self.sums.append(sums.detach().to(torch.float64))
        self.tokens.append(tokens.detach().to(torch.float64))

    def unique_sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum of ``sums``, sum of ``tokens``) over unique pairs, in float64."""
        keys, sums, tokens = (
            dim_zero_cat(x) if isinstance(x, list) else x for x in (self.keys, self.sums, self.tokens)
        )
        # Sorted by key, first occurrence kept: the summation order does not depend on how pairs were split.
        keep = torch.tensor(first_occurrences(keys.tolist()), dtype=torch.long, device=keys.device)
        return sums[keep].sum(), tokens[keep].sum()

    def compute(self) -> torch.Tensor:
        total, tokens = self.unique_sums()
        return (total / tokens.clamp_min(1)).float()


class PairCount(PairLoss):
    """How many unique pairs were flagged (``update(keys, flags, ones)``), the same on any number of processes."""

    def compute(self) -> torch.Tensor:
        return self.unique_sums()[0].float()


def evaluation_record(batch: dict[str, Any], predictions: list[str]) -> dict[str, list]:
    """What a LightningModule's ``validation_step`` / ``test_step`` returns for the metrics callback: the batch's
    pairs with one generated caption each (the contract in ``callbacks/caption_metrics.py``)."""
    return {
        "pair_id": list(batch["pair_id"]),
        "prediction": predictions,
        "references": batch["captions"],
        "categories": batch["categories"],
        "benchmark": batch["benchmark"],
    }
