"""The mixture: weighted training over several benchmarks, one validation loader per benchmark; and a Lightning
smoke run (sampler epochs, several validation loaders) with a stand-in model."""

from __future__ import annotations

from collections import Counter

import lightning as L
import pytest
import torch
from fixtures_data import build_mini, make_dm

from datamodules.mixture import MixtureDataModule


def mixture(tmp_path, weights=None, **kwargs):
    members = []
    for name in ("clevr_change", "spot_the_diff", "iedit"):
        mini = build_mini(name, tmp_path / name)
        members.append({"name": name, "root": str(mini.root)})
    return make_dm("mixture", tmp_path, members=members, weights=weights or [], **kwargs)


def test_mixture_members_take_their_config_defaults(tmp_path):
    dm = mixture(tmp_path)
    assert isinstance(dm, MixtureDataModule)
    assert dm.benchmarks == ["clevr_change", "spot_the_diff", "iedit"]
    assert dm.members["clevr_change"].categories[-1] == "distractor"  # from conf/data/clevr_change.yaml
    assert dm.members["clevr_change"].train_swap_prob == 0.5
    assert dm.categories == ["color", "texture", "add", "drop", "move", "distractor"]
    assert dm.groups == {"semantic": ["color", "texture", "add", "drop", "move"]}
    assert dm.members["iedit"].num_workers == 0  # inherited from the mixture


def test_mixture_weights_set_the_sampling_proportions(tmp_path):
    dm = mixture(tmp_path, weights=[2.0, 1.0, 1.0], epoch_size=4000)
    dm.setup("fit")
    loader = dm.train_dataloader()
    dataset = loader.dataset
    keys = list(loader.sampler)
    assert len(keys) == 4000
    drawn = Counter(dataset.locate(k % len(dataset))[0] for k in keys)
    assert drawn[0] / 4000 == pytest.approx(0.5, abs=0.04)  # clevr_change: 10 train pairs, weight 2 of 4
    assert drawn[1] / 4000 == pytest.approx(0.25, abs=0.04)  # spot_the_diff: 3 train pairs (after blank drop)
    assert drawn[2] / 4000 == pytest.approx(0.25, abs=0.04)  # iedit: 3 train pairs
    batch = next(iter(loader))
    assert set(batch["benchmark"]) <= {"clevr_change", "spot_the_diff", "iedit"}


def test_mixture_validates_each_benchmark_separately(tmp_path):
    dm = mixture(tmp_path)
    dm.setup("fit")
    loaders = dm.val_dataloader()
    assert len(loaders) == 3
    for name, loader in zip(dm.benchmarks, loaders):
        ids = [pid for batch in loader for pid in batch["pair_id"]]
        assert {b for batch in loader for b in batch["benchmark"]} == {name}
        assert ids == list(dm.reference_captions("val", benchmark=name))
    with pytest.raises(ValueError, match="pass benchmark="):
        dm.reference_captions("val")
    assert set(dm.reference_captions_by_benchmark("test")) == set(dm.benchmarks)
    assert len(dm.training_captions(100)) > 0


def test_mixture_config_errors_name_the_member(tmp_path):
    with pytest.raises(ValueError, match=r"data.members\[1\] \(iedit\).*data.root is not set"):
        make_dm("mixture", tmp_path, members=[{"name": "spot_the_diff", "root": str(build_mini("spot_the_diff", tmp_path / "s").root)}, {"name": "iedit"}])  # fmt: skip
    with pytest.raises(ValueError, match="data.weights"):
        mixture(tmp_path, weights=[1.0])
    with pytest.raises(ValueError, match="listed twice"):
        root = str(tmp_path / "spot_the_diff")
        make_dm("mixture", tmp_path, members=[{"name": "spot_the_diff", "root": root}] * 2)


class StandIn(L.LightningModule):
    """Not the captioner: a linear layer on (after - before), enough to drive the data path through Lightning."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)
        self.seen: Counter[str] = Counter()

    def training_step(self, batch, batch_idx):
        return self.layer((batch["after"] - batch["before"]).mean(dim=(2, 3))).pow(2).mean()

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self.seen.update(batch["benchmark"])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


@pytest.mark.parametrize("which", ["clevr_change", "mixture"])
def test_lightning_fit_runs_on_mini_copies(tmp_path, which):
    if which == "mixture":
        dm = mixture(tmp_path)
    else:
        mini = build_mini(which, tmp_path / which)
        dm = make_dm(which, mini.root, swap_prob=0.5)
    model = StandIn()
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step > 0
    expected = {"clevr_change"} if which == "clevr_change" else {"clevr_change", "spot_the_diff", "iedit"}
    assert set(model.seen) == expected
