"""LightningDataModules for the IDC benchmarks and the embedded procedural benchmark.

Every DataModule yields the sample contract of :mod:`datamodules.contract` and answers the optional hooks
listed there. Each is registered under its ``data.name`` (``@register_datamodule("clevr_change")`` on the
class, :mod:`.registry`, which imports the benchmark modules below at the first lookup) and declares its ``data``
keys once, as the config dataclass its constructor takes; :func:`build_datamodule` builds one from a ``data``
section.

- One file per benchmark: ``clevr_change``, ``clevr_dc``, ``spot_the_diff``, ``iedit``, ``omnidiff``,
  ``birds_to_words``, ``llava``, ``pairs`` (bring your own pairs), ``mixture`` (several at once), and
  ``synthetic/`` (the embedded benchmark, a subpackage).
- What they share: :mod:`.base` (the DataModule base with the hooks' neutral defaults, the one DataLoader
  helper), :mod:`.config` (the ``data`` section's schema and checked merge), :mod:`.registry` (names ->
  classes), :mod:`.images` (safe image loading, the transform), :mod:`.samplers` (the seeded, resumable
  training order).
- What the annotation-file benchmarks share: :mod:`.records` (their base, ``RecordDataModule``),
  :mod:`.annotations` (reading annotation files into records), :mod:`.errors` (errors naming file and record,
  the ``data.on_error`` policy), :mod:`.record_dataset` (records -> samples).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from datamodules.registry import datamodule_class, list_datamodules, register_datamodule

if TYPE_CHECKING:
    from datamodules.base import PairDataModule

__all__ = ["build_datamodule", "datamodule_class", "list_datamodules", "register_datamodule"]


def build_datamodule(
    data_cfg: Mapping[str, Any],
    *,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    pipeline: str = "kit",
    seed: int = 0,
) -> PairDataModule:
    """Build the DataModule named by ``data_cfg["name"]`` from the ``data`` section: keys it does not set take
    the defaults of that DataModule's config class; unknown keys, wrong types and bad values are
    :class:`~datamodules.errors.ConfigError` s naming the key. ``image_size`` / ``mean`` / ``std`` /
    ``pipeline``: the backbone's ``mdp.ImageSpec`` (its image preprocessing)."""
    from datamodules.config import data_object  # imports Lightning: only when a DataModule is built

    config = data_object(data_cfg, source="data")
    return datamodule_class(config.name)(
        config, image_size=image_size, mean=mean, std=std, pipeline=pipeline, seed=seed
    )
