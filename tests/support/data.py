"""Builders of tiny, hand-made copies of each benchmark's released layout, one per DataModule, and the
DataModule a test builds on them.

Every builder writes into a folder and returns a :class:`~support.files.Mini` that says where things are, so
one test can be parametrised over all loaders: ``mini.first_image(split)`` is an image of the first pair of a
split, ``mini.annotation(split)`` the file that lists that split's records. The builders:
:mod:`support.clevr` (split files of ids) and :mod:`support.records` (record lists); what they are made of:
:mod:`support.files`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.clevr import make_clevr_change, make_clevr_dc
from support.files import Mini
from support.records import make_birds, make_iedit, make_llava, make_omnidiff, make_pairs, make_spot


def make_dm(name: str, root: Path | str, **overrides: Any):
    """A DataModule from ``conf/data/<name>.yaml`` + overrides, small and single-process for tests."""
    from omegaconf import OmegaConf

    from datamodules import build_datamodule
    from experiments.common.config import load_config

    data = OmegaConf.to_container(load_config(groups={"data": name}).data)
    data.update(root=str(root), batch_size=4, eval_batch_size=4, num_workers=0)
    data.update(overrides)
    return build_datamodule(data, image_size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), seed=7)


BUILDERS: dict[str, Callable[[Path], Mini]] = {
    "clevr_change": make_clevr_change,
    "clevr_dc": make_clevr_dc,
    "spot_the_diff": make_spot,
    "iedit": make_iedit,
    "omnidiff": make_omnidiff,
    "pairs": make_pairs,
    "birds_to_words": make_birds,
    "llava": make_llava,
}


def build_mini(name: str, root: Path) -> Mini:
    return BUILDERS[name](root)
