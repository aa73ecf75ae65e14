"""The embedded benchmark's test set-up: the shipped data config, a DataModule from it, one-operation generators."""

from __future__ import annotations

from datamodules import build_datamodule
from datamodules.synthetic.datamodule import SyntheticDataModule
from datamodules.synthetic.spec import OPERATIONS, GeneratorConfig
from experiments.common.config import load_config, to_container


def data_config(**overrides) -> dict:
    return {**to_container(load_config().data), **overrides}


def make_dm(image_size: int = 64, **overrides) -> SyntheticDataModule:
    return build_datamodule(
        data_config(**overrides), image_size=image_size, mean=(0.5,) * 3, std=(0.5,) * 3, seed=7
    )


LABELS = tuple(data_config()["categories"])


def only(op: str, **kwargs) -> GeneratorConfig:
    """A generator whose every pair has exactly one change of operation ``op``."""
    weights = tuple(1.0 if o == op else 0.0 for o in OPERATIONS)
    return GeneratorConfig(labels=LABELS, weights=weights, no_change_fraction=0.0, **kwargs)
