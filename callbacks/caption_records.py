"""Evaluation records gathered across processes, each pair kept once.

A record is one evaluated pair: ``{"pair_id", "prediction", "references", "categories", "benchmark",
"subset"}`` (the evaluation step's output, see :mod:`callbacks.caption_metrics`). :class:`CaptionRecords` is a
torchmetrics ``Metric`` holding them as JSON lines in uint8 tensors (``dist_reduce_fx="cat"``), so torchmetrics
gathers every rank's records; :func:`unique_pairs` then keeps each pair once (DistributedSampler pads by
repeating pairs).
"""

from __future__ import annotations

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


def unique_pairs(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """pair id -> record, sorted by id, keeping the first record of each pair (padding repeats pairs in DDP).

    Ids stay the benchmarks' own, unless two benchmarks of one evaluation (a mixture) share an id
    (CLEVR-Change and CLEVR-DC both have ``000256.png``): then every id is keyed ``<benchmark>/<pair id>``.
    """
    owners: dict[str, set[str]] = {}
    for rec in records:
        owners.setdefault(rec["pair_id"], set()).add(rec["benchmark"])
    shared = any(len(benchmarks) > 1 for benchmarks in owners.values())
    out: dict[str, dict[str, Any]] = {}
    for rec in records:
        key = f"{rec['benchmark']}/{rec['pair_id']}" if shared else rec["pair_id"]
        out.setdefault(key, dict(rec))
    # Sorted by id: the order pairs arrive in depends on the number of processes, and CIDEr / ROUGE-L
    # are means over pairs, whose float sums would differ in the last digit with the order.
    return dict(sorted(out.items()))
