"""Every DataModule builds its loaders through ``datamodules.base.pair_loader``: one place decides batching,
collation and the worker init that keeps Ctrl+C away from DataLoader workers (the mixture's evaluation loaders
once lacked it)."""

from __future__ import annotations

import pytest
from support.data import BUILDERS, make_dm
from support.records import make_pairs, make_spot
from torch.utils.data import DataLoader

import datamodules.base
from datamodules import list_datamodules
from datamodules.contract import collate_pairs
from datamodules.samplers import worker_init_fn


@pytest.fixture
def built_loaders(monkeypatch):
    """Records every DataLoader constructed by ``pair_loader`` (the only constructor it patches is base's)."""
    made: list[DataLoader] = []

    class Recorded(DataLoader):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(datamodules.base, "DataLoader", Recorded)
    return made


def build(name: str, tmp_path):
    sizes = {"batch_size": 4, "eval_batch_size": 3, "num_workers": 2}
    if name == "synthetic":
        return make_dm(name, None, train_size=12, val_size=5, test_size=6, **sizes)
    if name == "mixture":
        members = [
            {"name": "spot_the_diff", "root": str(make_spot(tmp_path / "spot").root)},
            {"name": "pairs", "root": str(make_pairs(tmp_path / "pairs").root)},
        ]
        return make_dm(name, None, members=members, **sizes)
    return make_dm(name, BUILDERS[name](tmp_path / name).root, **sizes)


@pytest.mark.parametrize("name", list_datamodules())
def test_every_loader_comes_from_pair_loader(tmp_path, built_loaders, name):
    dm = build(name, tmp_path)
    dm.setup("fit")
    dm.setup("test")
    loaders = {
        "train": [dm.train_dataloader()],
        "val": list(_as_list(dm.val_dataloader())),
        "test": list(_as_list(dm.test_dataloader())),
    }
    if name == "mixture":
        assert len(loaders["val"]) == len(loaders["test"]) == 2  # one evaluation loader per member
    for split, found in loaders.items():
        for loader in found:
            assert any(loader is made for made in built_loaders), f"{name} {split}: not built by pair_loader"
            assert loader.worker_init_fn is worker_init_fn, f"{name} {split}: workers would take Ctrl+C"
            assert loader.collate_fn is collate_pairs and loader.persistent_workers
            assert loader.batch_size == (4 if split == "train" else 3)
    assert loaders["train"][0].drop_last == (len(loaders["train"][0].sampler) > 4)
    assert not any(loader.drop_last for loader in loaders["val"] + loaders["test"])  # every pair scored


def _as_list(loaders):
    return loaders if isinstance(loaders, list) else [loaders]
