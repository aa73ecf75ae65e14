"""Train on several benchmarks at once, validate and test on each separately (the paper's recipe).

Config (``conf/data/mixture.yaml``)::

    data:
      name: mixture
      members:                         # each member is a data section: name + the keys it sets;
        - {name: spot_the_diff, root: /data/spot-the-diff}    # unset keys: that DataModule's defaults
        - {name: iedit, root: /data/iedit}
        - {name: clevr_change, root: /data/clevr_change, swap_prob: 0.0}
      weights: [1, 1, 2]               # sampling weight per member ([] = equal): member b is drawn with
                                       # probability weights[b] / sum(weights), whatever its size;
                                       # null = plain concatenation: every training sample once per epoch
      epoch_size: null                 # training samples per epoch (null = the members' train sizes summed)
      sample_per: null                 # pair | caption for every annotation-file member; null = each member's own

Training draws from the concatenated training sets with those weights (seeded per epoch, with replacement), or
(``weights: null``) shuffles the concatenation: the paper's counting, with ``sample_per: caption``, where every
reference of every member is one sample of the epoch. Validation and test return one DataLoader per member that
has the split, in member order (a member without one, e.g. an instruction file holding only a training split, is
left out with one log line); each sample carries its ``benchmark`` field, so metrics are grouped per benchmark
(``val/<benchmark>/CIDEr``). Evaluation ids are the members' own,
and they can collide across benchmarks (``000256.png`` is in CLEVR-Change and CLEVR-DC): ground truth is kept
per benchmark (:meth:`MixtureDataModule.reference_captions` takes the benchmark).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from datamodules.base import PairDataConfig, PairDataModule
from datamodules.config import data_config
from datamodules.contract import PairSample
from datamodules.errors import ConfigError
from datamodules.record_dataset import RecordDataset
from datamodules.records import RecordDataModule
from datamodules.registry import datamodule_class, register_datamodule

log = logging.getLogger("m3diff.data")

# Keys the mixture hands down to members that do not set them (to members whose schema has the key, when set).
INHERITED = ("batch_size", "eval_batch_size", "num_workers", "on_error", "sample_per")
_EVAL_NAMES = {"val": "validation", "test": "testing"}


@dataclass
class MixtureConfig(PairDataConfig):
    name: str = "mixture"
    # Data sections: name + the keys it sets; the rest are that DataModule's defaults (and INHERITED keys).
    members: list[dict[str, Any]] = field(default_factory=list)
    # Sampling weight per member ([] = equal); null = plain concatenation, every training sample once per epoch.
    weights: list[float] | None = field(default_factory=list)
    epoch_size: int | None = None  # training samples per epoch; null = the members' train sizes summed
    # pair | caption for every annotation-file member (caption: every reference a sample); null = each member's own
    sample_per: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.members:
            raise ConfigError(
                "data.members is empty: list the benchmarks to mix (see conf/data/mixture.yaml)"
            )
        weights = member_weights(self)
        if len(weights) != len(self.members) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError(
                f"data.weights must be {len(self.members)} non-negative numbers with a positive sum, got {weights}"
            )
        if self.epoch_size is not None and self.epoch_size <= 0:
            raise ConfigError(f"data.epoch_size must be positive or null, got {self.epoch_size}")
        names: set[str] = set()
        for i, member in enumerate(self.members):
            name = member_config(member, i, inherited_keys(self)).name  # each member's own keys checked
            if name in names:
                raise ConfigError(f"data.members[{i}]: benchmark '{name}' is listed twice")
            names.add(name)


def member_weights(config: MixtureConfig) -> list[float]:
    """One sampling weight per member (``[]``: equal; ``null``, a concatenation, also counts them equal)."""
    return [float(w) for w in (config.weights or [1.0] * len(config.members))]


def inherited_keys(config: MixtureConfig) -> dict[str, Any]:
    """The mixture's keys its members inherit (:data:`INHERITED`)."""
    return {k: getattr(config, k) for k in INHERITED}


def member_config(member: Mapping[str, Any], index: int, inherited: Mapping[str, Any]) -> PairDataConfig:
    """Member ``index``'s config object: its DataModule's defaults < the mixture's ``inherited`` keys < its own
    (values checked)."""
    path = f"data.members[{index}]"
    if not isinstance(member, Mapping):
        raise ConfigError(f"{path}: expected a data section like {{name: iedit, root: ...}}, got {member!r}")
    if member.get("name") == "mixture":
        raise ConfigError(f"{path}: a mixture cannot contain a mixture")
    inherited = {k: inherited[k] for k in INHERITED if inherited.get(k) is not None}
    cfg = data_config(member, source="mixture member", inherited=inherited, prefix=f"{path}.")
    try:
        return OmegaConf.to_object(cfg)
    except ConfigError as err:
        raise ConfigError(f"{path} ({cfg.name}): {err}") from None


class MixtureDataset(Dataset):
    """The members' datasets back to back; keys may carry the epoch (see
    :class:`~datamodules.samplers.ResumableSampler`), which is passed on to members that use it (CLEVR-Change's
    swap augmentation)."""

    def __init__(self, datasets: Sequence[Dataset]) -> None:
        self.datasets = list(datasets)
        self.offsets = [0]
        for dataset in self.datasets:
            self.offsets.append(self.offsets[-1] + len(dataset))

    def __len__(self) -> int:
        return self.offsets[-1]

    def locate(self, index: int) -> tuple[int, int]:
        member = bisect.bisect_right(self.offsets, index) - 1
        return member, index - self.offsets[member]

    def __getitem__(self, key: int) -> PairSample:
        epoch, index = divmod(int(key), len(self))
        member, local = self.locate(index)
        dataset = self.datasets[member]
        return dataset.get(local, epoch) if isinstance(dataset, RecordDataset) else dataset[local]


@register_datamodule("mixture")
class MixtureDataModule(PairDataModule):
    """Several benchmarks at once; ``config``: a :class:`MixtureConfig` (see above). ``categories`` / ``groups``
    default to the union of the members'."""

    benchmark = "mixture"
    config_class = MixtureConfig
    config: MixtureConfig

    def __init__(self, config: MixtureConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.members: dict[str, PairDataModule] = {}
        for i, member in enumerate(config.members):
            member_cfg = member_config(member, i, inherited_keys(config))
            try:
                module = datamodule_class(member_cfg.name)(member_cfg, **kwargs)
            except (ValueError, KeyError, TypeError) as err:
                raise type(err)(f"data.members[{i}] ({member_cfg.name}): {err}") from err
            self.members[module.benchmark] = module
        concatenate = config.weights is None
        self.weights = None if concatenate else dict(zip(self.members, member_weights(config)))
        self._with_split: dict[str, dict[str, PairDataModule]] = {}
        if not self.categories:
            self.categories = list(dict.fromkeys(c for m in self.members.values() for c in m.categories))
        if not self.groups:
            self.groups = {k: v for m in self.members.values() for k, v in m.groups.items()}

    @property
    def sample_per(self) -> str | None:  # the hook (datamodules.contract), from data.sample_per
        return self.config.sample_per

    @property
    def benchmarks(self) -> list[str]:
        return list(self.members)

    # ------------------------------------------------------------------ datasets and loaders
    def members_with(self, split: str) -> dict[str, PairDataModule]:
        """The members that have ``split`` (all of them for training); each one left out is logged once."""
        if split == "train":
            return dict(self.members)
        if split not in self._with_split:
            kept = {}
            for name, member in self.members.items():
                why = member.missing_split(split)
                if why is None:
                    kept[name] = member
                else:
                    log.warning(
                        "mixture: %s is left out of %s (%s)", name, _EVAL_NAMES.get(split, split), why
                    )
            if not kept:
                log.warning(
                    "mixture: no member has a '%s' split: nothing to %s", split, _EVAL_NAMES.get(split)
                )
            self._with_split[split] = kept
        return self._with_split[split]

    def missing_split(self, split: str) -> str | None:
        return None if self.members_with(split) else f"no member has a '{split}' split"

    def build_dataset(self, split: str) -> MixtureDataset:
        return MixtureDataset([m.dataset(split) for m in self.members_with(split).values()])

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage or "fit", ("train", "val")):
            for member in self.members_with(split).values():
                member.dataset(split)
            if self.members_with(split):
                self.dataset(split)

    def train_dataloader(self) -> DataLoader:
        dataset = self.dataset("train")
        item_weights = None  # weights: null -> a shuffled concatenation, every sample once per epoch
        if self.weights is not None:
            # Per-item weight w_b / |b|: member b is drawn with probability w_b / sum(w), whatever its size.
            item_weights = []
            for (name, weight), part in zip(self.weights.items(), dataset.datasets):
                if len(part) == 0 and weight > 0:
                    raise ValueError(f"mixture member '{name}' has no training pairs but weight {weight}")
                item_weights += [weight / max(len(part), 1)] * len(part)
        sampler = self.train_sampler(len(dataset), num_samples=self.config.epoch_size, weights=item_weights)
        return self.train_loader(dataset, sampler)

    def _eval_loaders(self, split: str) -> list[DataLoader]:
        return [self.eval_loader(member.dataset(split)) for member in self.members_with(split).values()]

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("test")

    # ------------------------------------------------------------------ evaluation ground truth
    def reference_captions(self, split: str, benchmark: str | None = None) -> dict[str, list[str]]:
        """One member's ground truth (ids collide across benchmarks, so there is no merged one)."""
        if benchmark is None and len(self.members) == 1:
            benchmark = self.benchmarks[0]
        if benchmark not in self.members:
            raise ValueError(f"mixture: pass benchmark=, one of {self.benchmarks} (got {benchmark!r})")
        return self.members[benchmark].reference_captions(split)

    def epoch_parts(self) -> dict[str, int]:
        """Training samples per member (``sample_per`` applied) when the epoch is their plain concatenation
        (``weights: null``, ``epoch_size: null``), for the epoch summary; ``{}`` for a weighted draw."""
        if self.weights is not None or self.config.epoch_size is not None:
            return {}
        return {name: len(part) for name, part in zip(self.members, self.dataset("train").datasets)}

    def training_captions(self, limit: int) -> list[str]:
        """The references of up to ``limit`` training pairs, taken from the members in turn (for the tiny LM's
        tokenizer, so every benchmark's vocabulary is in it)."""
        pools = []
        for member in self.members.values():
            if isinstance(member, RecordDataModule):  # indexed: a pair's references together
                pools.append(list(member.reference_captions("train").values()))
            else:  # generated: as many pairs as asked for, one caption at a time
                pools.append([[c] for c in member.training_captions(limit)])
        out: list[str] = []
        for i in range(max(map(len, pools), default=0)):
            for pool in pools:
                if i < len(pool) and len(out) < limit * 5:
                    out.extend(c for c in pool[i] if c.strip())
        return out
