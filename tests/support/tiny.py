"""The tiny model every end-to-end test trains: ``experiments/tiny.yaml`` (also ``make train EXP=tiny`` and
``python -m experiments.bench --quick``) as ``key=value`` overrides, so a test keeps the default experiment's run folder."""

from __future__ import annotations

from experiments.common.config import experiment_overrides

# A model that builds and trains in seconds on CPU; each test adds the data / trainer keys it needs
# (a later override of the same key wins).
TINY_MODEL = experiment_overrides("tiny")
