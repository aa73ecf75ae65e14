"""Gathering evaluation records across two CPU processes (gloo) with torchmetrics' sync.

Kept apart from the Lightning DDP test (tests/test_callbacks_ddp.py) so the spawned processes import little.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lightning_modules.pair_metrics import CaptionRecords, unique_pairs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gather_worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        records = CaptionRecords()
        if rank == 0:  # rank 0: three pairs in two batches; rank 1: one pair plus the padding repeat of "p0"
            records.update(["p0", "p1"], ["a", "b"], [["ra"], ["rb"]], [["color"], []], ["x", "x"])
            records.update(["p2"], ["c"], [["rc"]], [["move"]], ["y"])
        else:
            records.update(["p3", "p0"], ["d", "a"], [["rd"], ["ra"]], [[], ["color"]], ["y", "x"])
        gathered = records.compute()
        # the local state is restored after the synced compute
        local = len(bytes(torch.cat(records.data).numpy()).decode().splitlines())
        empty = CaptionRecords()  # a rank that saw no batch still takes part in the gather
        if rank == 0:
            empty.update(["q"], ["only rank 0"], [["r"]], [[]], ["x"])
        Path(out_dir, f"rank{rank}.json").write_text(
            json.dumps({"gathered": gathered, "local": local, "empty": empty.compute()})
        )
    finally:
        dist.destroy_process_group()


def test_records_gather_across_two_processes(tmp_path):
    mp.spawn(_gather_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert results[0]["gathered"] == results[1]["gathered"]  # every rank sees every record, rank order
    ids = [r["pair_id"] for r in results[0]["gathered"]]
    assert ids == ["p0", "p1", "p2", "p3", "p0"]
    assert list(unique_pairs(results[0]["gathered"])) == ["p0", "p1", "p2", "p3"]
    assert [r["local"] for r in results] == [3, 2]
    assert (
        results[0]["empty"]
        == results[1]["empty"]
        == [
            {
                "pair_id": "q",
                "prediction": "only rank 0",
                "references": ["r"],
                "categories": [],
                "benchmark": "x",
                "subset": "",
            }
        ]
    )
