"""The mixture: weighted training over several benchmarks, one validation loader per benchmark; and a Lightning
smoke run (sampler epochs, several validation loaders) with a stand-in model."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import lightning as L
import pytest
import torch
from support.data import build_mini, make_dm
from support.files import write_json
from support.records import LLAVA, make_llava

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
    assert dm.members["iedit"].config.num_workers == 0  # inherited from the mixture


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
    assert set(dm.members_with("test")) == set(dm.benchmarks)
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


def fit_stand_in(dm: L.LightningDataModule, root: Path, *, max_epochs: int) -> tuple[StandIn, L.Trainer]:
    """``Trainer.fit`` of a :class:`StandIn` on ``dm`` (CPU, no logger, checkpoints or bars)."""
    model = StandIn()
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    trainer.fit(model, datamodule=dm)
    return model, trainer


@pytest.mark.parametrize("which", ["clevr_change", "mixture"])
def test_lightning_fit_runs_on_mini_copies(tmp_path, which):
    if which == "mixture":
        dm = mixture(tmp_path)
    else:
        mini = build_mini(which, tmp_path / which)
        dm = make_dm(which, mini.root, swap_prob=0.5)
    model, trainer = fit_stand_in(dm, tmp_path, max_epochs=2)
    assert trainer.global_step > 0
    expected = {"clevr_change"} if which == "clevr_change" else {"clevr_change", "spot_the_diff", "iedit"}
    assert set(model.seen) == expected


# ------------------------------------------------------------------------------------------------ members without val
def without_val(tmp_path):
    """A mixture of Spot-the-Diff and an instruction file that holds only a training split."""
    llava = make_llava(tmp_path / "llava")
    write_json(llava.root / "m3diff_train.json", LLAVA["train"])
    spot = build_mini("spot_the_diff", tmp_path / "spot")
    members = [
        {"name": "llava", "root": str(llava.root), "annotations": "m3diff_train.json"},
        {"name": "spot_the_diff", "root": str(spot.root)},
    ]
    return make_dm("mixture", tmp_path, members=members)


def test_a_member_without_val_is_left_out_of_validation_with_one_line(tmp_path, caplog):
    dm = without_val(tmp_path)
    with caplog.at_level(logging.WARNING, logger="m3diff.data"):
        dm.setup("fit")
        loaders = dm.val_dataloader()
        dm.val_dataloader()
    lines = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(lines) == 1, lines  # once, however often the loaders are built
    assert (
        lines[0].startswith("mixture: llava is left out of validation (")
        and "m3diff_train.json: no 'val' split" in lines[0]
    )
    assert len(loaders) == 1 and {b for batch in loaders[0] for b in batch["benchmark"]} == {"spot_the_diff"}
    assert list(dm.members_with("val")) == ["spot_the_diff"]
    assert dm.has_split("val") and len(dm.dataset("train").datasets) == 2

    model, trainer = fit_stand_in(without_val(tmp_path / "again"), tmp_path, max_epochs=1)
    assert trainer.global_step > 0 and set(model.seen) == {"spot_the_diff"}


def test_data_info_lists_absent_splits(tmp_path, capsys):
    from experiments import data_info

    llava = make_llava(tmp_path / "llava")
    (llava.root / "val.json").unlink()
    code = data_info.main(
        ["--data", "llava", "--root", str(llava.root), "--json", "1", "--args", "--check-images=none"]
    )
    info = json.loads(capsys.readouterr().out)
    assert (
        code == 0 and list(info["splits"]) == ["train", "test"] and "val.json" in info["absent_splits"]["val"]
    )
    code = data_info.main(["--data", "llava", "--root", str(llava.root), "--split", "val"])
    assert code == 2 and "val.json: annotation file of split 'val' not found" in capsys.readouterr().err


def references(dm, split="train"):
    return sum(1 for r in dm.records(split) for c in r.captions if c.strip())


def test_sample_per_caption_makes_every_reference_a_training_sample(tmp_path):
    spot = build_mini("spot_the_diff", tmp_path / "spot")
    by_pair, by_caption = (make_dm("spot_the_diff", spot.root, sample_per=s) for s in ("pair", "caption"))
    assert (
        len(by_pair.dataset("train")) == 3 and len(by_caption.dataset("train")) == references(by_caption) == 4
    )
    samples = [by_caption.dataset("train").get(i) for i in range(4)]
    assert sorted(c for s in samples for c in s["captions"]) == sorted(
        ["there are no differences", "the car is gone", "a person appeared", "the door is open"]
    )
    assert len(by_caption.dataset("val")) == 2  # evaluation stays per pair
    with pytest.raises(ValueError, match="data.sample_per must be one of"):
        make_dm("spot_the_diff", spot.root, sample_per="sentence")
    # A mixture hands its sample_per to its annotation-file members (the embedded benchmark has none).
    dm = mixture(tmp_path, sample_per="caption")
    assert {m.sample_per for m in dm.members.values()} == {"caption"}
    sizes = {name: len(part) for name, part in zip(dm.members, dm.dataset("train").datasets)}
    assert sizes == {name: references(m) for name, m in dm.members.items()}
    mixed = make_dm(
        "mixture",
        tmp_path,
        sample_per="caption",
        members=[{"name": "synthetic"}, {"name": "spot_the_diff", "root": str(spot.root)}],
    )
    assert mixed.members["spot_the_diff"].sample_per == "caption"


PAPER = ("omnidiff", "spot_the_diff", "iedit", "birds_to_words", "clevr_change", "clevr_dc")


def test_paper_mixture_counts_every_caption_and_prints_the_epoch(tmp_path):
    from experiments.common.config import load_config
    from experiments.common.trainer import epoch_summary

    cfg = load_config(groups={"data": "mixture_paper"})
    assert [m["name"] for m in cfg.data.members] == list(PAPER)
    assert cfg.data.sample_per == "caption" and cfg.data.weights is None
    members = []
    for name in PAPER:
        mini = build_mini(name, tmp_path / name)
        members.append({"name": name, "root": str(mini.root), **mini.overrides})
    cfg = load_config(
        groups={"data": "mixture_paper"},
        overrides=[
            f"data.members={json.dumps(members)}",
            "data.batch_size=4",
            "trainer.accumulate_grad_batches=8",
        ],
    )
    dm = make_dm("mixture_paper", tmp_path, members=members, batch_size=4)
    parts = dm.epoch_parts()
    # Every non-blank training reference once: OmniDiff 4, Spot 4 (one blank), IEdit 3, Birds-to-Words 7,
    # CLEVR-Change 5 scenes x (2 change + 2 no-change), CLEVR-DC 15 pairs x 2 + 3 distractors x 1.
    assert parts == {
        "omnidiff": 4,
        "spot_the_diff": 4,
        "iedit": 3,
        "birds_to_words": 7,
        "clevr_change": 20,
        "clevr_dc": 33,
    }
    assert parts == {name: references(m) for name, m in dm.members.items()}
    loader = dm.train_dataloader()
    assert sorted(loader.sampler.order(0)) == list(range(71))  # the concatenation, each sample once
    line = epoch_summary(cfg, dm, world_size=2)
    # 71 samples; 36 per process -> 9 batches of 4 -> 2 optimizer steps of 2 x 4 x 8 = 64 samples
    assert line.startswith(
        "one epoch = 71 training samples (one per reference caption; omnidiff 4 + spot_the_diff 4"
    )
    assert "= 2 optimizer steps of 64 samples (world size 2 x batch 4 x accumulation 8)" in line
