"""LightningDataModules for the IDC benchmarks and the embedded procedural benchmark.

Every DataModule yields the sample contract of :mod:`datamodules.contract`. ``DATAMODULES`` maps the
``data.name`` config value to its class; :func:`build_datamodule` builds one from config values.

- One file per benchmark: ``clevr_change``, ``clevr_dc``, ``spot_the_diff``, ``iedit``, ``omnidiff``,
  ``birds_to_words``, ``llava``, ``pairs`` (bring your own pairs), ``mixture`` (several at once), and
  ``synthetic/`` (the embedded benchmark, a subpackage).
- What they share: :mod:`.base` (the DataModule base and the one DataLoader helper), :mod:`.config` (the
  ``data`` section's schema and checked merge), :mod:`.images` (safe image loading, the transform),
  :mod:`.samplers` (the seeded, resumable training order).
- What the annotation-file benchmarks share: :mod:`.records` (their base, ``RecordDataModule``),
  :mod:`.annotations` (reading annotation files into records), :mod:`.errors` (errors naming file and record,
  the ``data.on_error`` policy), :mod:`.record_dataset` (records -> samples).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

# data.name -> "module:Class" (imported lazily, so inspecting one benchmark never imports the others)
DATAMODULES: dict[str, str] = {
    "synthetic": "datamodules.synthetic.datamodule:SyntheticDataModule",
    "clevr_change": "datamodules.clevr_change:ClevrChangeDataModule",
    "clevr_dc": "datamodules.clevr_dc:ClevrDCDataModule",
    "spot_the_diff": "datamodules.spot_the_diff:SpotTheDiffDataModule",
    "iedit": "datamodules.iedit:IEditDataModule",
    "omnidiff": "datamodules.omnidiff:OmniDiffDataModule",
    "birds_to_words": "datamodules.birds_to_words:BirdsToWordsDataModule",
    "llava": "datamodules.llava:LlavaDataModule",
    "pairs": "datamodules.pairs:PairsDataModule",
    "mixture": "datamodules.mixture:MixtureDataModule",
}


def build_datamodule(
    data_cfg: Mapping[str, Any],
    *,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    seed: int = 0,
    pipeline: str = "kit",
):
    """Build the DataModule named by ``data_cfg["name"]`` from the rest of the ``data`` section (keys it does
    not set take the defaults of that DataModule's config class; unknown keys and wrong types are errors).
    ``image_size`` / ``mean`` / ``std`` / ``pipeline``: the backbone's ``mdp.ImageSpec`` (its image preprocessing)."""
    from omegaconf import OmegaConf

    from datamodules.config import data_config

    kwargs = OmegaConf.to_container(data_config(data_cfg, source="data"), resolve=True)
    module, _, cls_name = DATAMODULES[kwargs.pop("name")].partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    return cls(
        image_size=image_size, mean=tuple(mean), std=tuple(std), pipeline=pipeline, seed=seed, **kwargs
    )
