"""The embedded benchmark as a LightningDataModule: procedural scene pairs generated on the fly.

Pair ``i`` of split ``s`` is a pure function of (``data_seed``, ``s``, ``i``) and the ``data`` config (see
:mod:`datamodules.synthetic.changes` for the twelve change categories and :mod:`datamodules.synthetic.captions`
for the caption grammar). Its evaluation id is ``"<split>/<index>"`` (e.g. ``"val/000123"``), from which the
truth is regenerated, so the change-identification score needs nothing but the predictions.

Of the optional hooks of :class:`~datamodules.base.PairDataModule` (the table in :mod:`datamodules.contract`),
this DataModule answers:

- :meth:`SyntheticDataModule.training_captions` — references of the first ``n`` training pairs, without
  rendering any image (for the tiny LM's tokenizer); :meth:`~SyntheticDataModule.reference_captions` and
  :meth:`~SyntheticDataModule.specs` per split, likewise without images.
- :meth:`SyntheticDataModule.change_identification` — parse generated captions with the grammar and score
  category / attributes / location / exact match, overall and per category.
- :meth:`SyntheticDataModule.category_confusion` — the kind of change each caption states beside the true one
  (the metrics callback draws the category confusion matrix from it).
- :meth:`SyntheticDataModule.baseline_predictions` — the "ceiling" (one reference against the others) and
  the "trivial" baseline (the most common training caption for every pair), for the metrics callback to score.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from datamodules.base import PairDataConfig, PairDataModule
from datamodules.contract import PairSample
from datamodules.errors import ConfigError
from datamodules.images import ImageTransform
from datamodules.registry import register_datamodule
from datamodules.synthetic.captions import NO_CHANGE, UNREADABLE, identify, parse_caption, read_back
from datamodules.synthetic.changes import sample_pair
from datamodules.synthetic.grammar import change_slots
from datamodules.synthetic.render import background_canvas, render
from datamodules.synthetic.spec import OPERATIONS, GeneratorConfig, PairSpec, parse_pair_id


def render_pair(
    spec: PairSpec, side: int, noise: float = 0.0, jitter: float = 0.0
) -> tuple[Image.Image, Image.Image]:
    """The pair's before/after images at ``side`` pixels (RGB).

    A no-change pair is one rendering, twice; what tells its two images apart is then only what tells any
    two photographs of an unchanged scene apart: independent sensor noise (``noise``, std on the 0-255
    scale) and a small photometric jitter (``jitter``: each image's exposure and each channel's gain drawn
    in ``1 ± jitter``), applied to every image of every pair. So "nothing changed" has to be judged, not
    read off pixel equality. Illumination changes are at least a 12 % gain or a colour cast of that size,
    well outside the default jitter (4 %).
    """
    with_margin = spec.camera is not None  # a camera move needs background beyond the frame
    bg = background_canvas(spec.before, side, with_margin)
    before = render(spec.before, side, with_margin=with_margin, background=bg)
    if spec.changes:
        after = render(
            spec.after, side, camera=spec.camera, light=spec.light, with_margin=with_margin, background=bg
        )
    else:
        after = before.copy()
    if noise > 0 or jitter > 0:  # independent per image, seeded by the pair (a pure function of its id)
        rng = np.random.default_rng(spec.seed)
        before, after = (_sensor(im, rng, noise, jitter) for im in (before, after))
    return before, after


def _sensor(image: Image.Image, rng: np.random.Generator, std: float, jitter: float) -> Image.Image:
    """``image`` as one more camera would see it: exposure x channel gain, then Gaussian noise, then 8 bits."""
    exposure = 1.0 + rng.uniform(-jitter, jitter)
    gains = exposure * (1.0 + rng.uniform(-jitter, jitter, 3)).astype(np.float32)
    pixels = np.asarray(image, dtype=np.float32) * gains
    if std > 0:
        pixels = pixels + rng.normal(0.0, std, (image.height, image.width, 3))
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), "RGB")


class SyntheticPairs(Dataset):
    """``size`` virtual pairs of one split; each ``__getitem__`` generates its pair (in the DataLoader worker)."""

    def __init__(
        self,
        generator: GeneratorConfig,
        split: str,
        size: int,
        transform: ImageTransform,
        benchmark: str = "synthetic",
    ) -> None:
        self.generator, self.split, self.size = generator, split, size
        self.transform, self.benchmark = transform, benchmark

    def __len__(self) -> int:
        return self.size

    def spec(self, index: int) -> PairSpec:
        if not 0 <= index < self.size:
            raise IndexError(f"synthetic {self.split}: index {index} out of range (size {self.size})")
        return sample_pair(self.generator, self.split, index)

    def images(self, index: int) -> tuple[PairSpec, Image.Image, Image.Image]:
        spec = self.spec(index)
        before, after = render_pair(spec, self.transform.size, self.generator.noise, self.generator.jitter)
        return spec, before, after

    def __getitem__(self, index: int) -> PairSample:
        spec, before, after = self.images(index)
        return {
            "pair_id": spec.pair_id,
            "before": self.transform(before),
            "after": self.transform(after),
            "captions": list(spec.captions),
            "categories": list(spec.categories),
            "benchmark": self.benchmark,
        }


@dataclass
class SyntheticConfig(PairDataConfig):
    name: str = "synthetic"
    # The 12 change categories, one label per change operation, in OPERATIONS order (viewpoint, illumination,
    # addition, disappearance, removal, replacement, size, color, orientation, pose, text, count): the
    # generator's operations are fixed; their label strings are yours.
    categories: list[str] = field(default_factory=lambda: list(OPERATIONS))
    groups: dict[str, list[str]] = field(default_factory=lambda: {"no_change": ["no_change"]})
    caption_style: str = "short"  # short: one CLEVR-style sentence per change | long: OmniDiff-style
    min_references: int = 3  # references per pair: drawn uniformly in [min, max]
    max_references: int = 5
    max_changes: int = 1  # each changed pair has 1..max_changes changes (<= 3), on different objects
    no_change_fraction: float = 0.1  # share of pairs with no change at all (the same scene, two exposures)
    no_change_label: str | None = "no_change"  # their category (not one of the 12); null = none
    category_weights: dict[str, float] = field(default_factory=dict)  # label -> weight (missing: 1; 0: off)
    train_size: int = 100_000  # virtual pairs (generated on the fly, never stored)
    val_size: int = 512
    test_size: int = 1000
    min_objects: int = 3  # objects per scene (a 3x3 grid of cells, one object per cell; max 8)
    max_objects: int = 6
    noise: float = 3.0  # std of Gaussian pixel noise (0-255) added to each image independently; 0 = none
    jitter: float = 0.04  # each image's exposure and channel gains drawn in 1 +- jitter; 0 = none
    data_seed: int | None = 0  # fixed, so every run sees the same pairs; null = the run's seed

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            self.generator(run_seed=0)  # its checks are the keys' checks
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def generator(self, *, run_seed: int) -> GeneratorConfig:
        """Everything that decides the pairs; ``data_seed: null`` follows ``run_seed``."""
        labels = tuple(self.categories)
        unknown = sorted(set(self.category_weights) - set(labels))
        if unknown:
            raise ValueError(f"data.category_weights: unknown categories {unknown}; known: {list(labels)}")
        return GeneratorConfig(
            labels=labels,
            caption_style=self.caption_style,
            min_references=self.min_references,
            max_references=self.max_references,
            max_changes=self.max_changes,
            no_change_fraction=self.no_change_fraction,
            no_change_label=self.no_change_label or None,
            weights=tuple(float(self.category_weights.get(label, 1.0)) for label in labels),
            min_objects=self.min_objects,
            max_objects=self.max_objects,
            noise=float(self.noise),
            jitter=float(self.jitter),
            data_seed=run_seed if self.data_seed is None else int(self.data_seed),
        )


@register_datamodule("synthetic")
class SyntheticDataModule(PairDataModule):
    """The embedded procedural benchmark (``data.name: synthetic``); ``config``: a :class:`SyntheticConfig`
    (``conf/data/synthetic.yaml``). Pair ``i`` of a split is a pure function of the generator
    (:meth:`SyntheticConfig.generator`: the keys that decide the data, with ``data_seed`` or the run's seed)."""

    benchmark = "synthetic"
    config_class = SyntheticConfig
    config: SyntheticConfig
    baseline_names = ("ceiling", "trivial")
    identifies_changes = True

    def __init__(self, config: SyntheticConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.generator = config.generator(run_seed=self.seed)
        self.sizes = {"train": config.train_size, "val": config.val_size, "test": config.test_size}

    # ------------------------------------------------------------------ datasets
    def build_dataset(self, split: str) -> SyntheticPairs:
        if split not in self.sizes:
            raise ValueError(f"synthetic: unknown split {split!r}; known: {list(self.sizes)}")
        return SyntheticPairs(self.generator, split, self.sizes[split], self.transform, self.benchmark)

    def spec(self, pair_id: str) -> PairSpec:
        """Regenerate the pair behind an evaluation id (no rendering)."""
        split, index = parse_pair_id(pair_id)
        return sample_pair(self.generator, split, index)

    def specs(self, split: str) -> list[PairSpec]:
        """Every pair of ``split`` without images (cached for evaluation-sized splits)."""
        if self.sizes[split] <= 10_000:
            return _specs(self.generator, split, self.sizes[split])
        return [sample_pair(self.generator, split, i) for i in range(self.sizes[split])]

    # ------------------------------------------------------------------ captions without images
    def training_captions(self, limit: int) -> list[str]:
        """Every reference of the first ``limit`` training pairs (no images are rendered)."""
        return [
            c
            for i in range(min(limit, self.sizes["train"]))
            for c in sample_pair(self.generator, "train", i).captions
        ]

    def reference_captions(self, split: str) -> dict[str, list[str]]:
        return {s.pair_id: list(s.captions) for s in self.specs(split)}

    def most_common_training_caption(self, pairs: int = 5000) -> str:
        """The trivial baseline's caption (ties broken alphabetically, so it is stable)."""
        return _most_common(self.generator, min(pairs, self.sizes["train"]))

    # ------------------------------------------------------------------ evaluation extras
    def change_identification(self, split: str, predictions: Mapping[str, str]) -> dict[str, float]:
        """Parse each generated caption with the grammar and check it against the true change.

        Keys (rates in [0, 1]): ``parsed`` (the caption states a change or "no change" the grammar knows),
        ``category``, ``attributes`` (the object's naming attributes: size, colour, shape / word / count; for
        viewpoint and illumination: the camera move / light), ``location`` (its cell) — over true changes,
        a no-change pair counting as one item that is right when the caption says nothing changed — and
        ``exact`` (per pair: every change stated exactly and nothing else); ``cell``: over object-level
        changes only (not viewpoint / illumination), the caption names the change's cell, whatever kind of
        change it says happened there. Per category: ``category/<label>``, ``attributes/<label>``,
        ``location/<label>``, ``cell/<label>``, ``exact/<label>`` (no-change pairs under their label).
        """
        del split  # the ids carry their split
        totals: dict[str, list[float]] = {}
        parsed_count = exact_count = 0
        no_change_key = self.generator.no_change_label or "no_change"
        for pid, caption in predictions.items():
            spec = self.spec(pid)
            parsed = parse_caption(caption)
            items, exact = identify(parsed, [change_slots(c) for c in spec.changes])
            parsed_count += parsed.parsed
            exact_count += exact
            labels = set()
            for op, scores in items:
                label = self.generator.label(op) if op else no_change_key
                labels.add(label)
                for name in ("category", "attributes", "location", "cell"):
                    if name not in scores:  # "cell": object-level changes only
                        continue
                    totals.setdefault(name, []).append(scores[name])
                    totals.setdefault(f"{name}/{label}", []).append(scores[name])
            for label in labels:
                totals.setdefault(f"exact/{label}", []).append(exact)
        n = max(1, len(predictions))
        result = {"parsed": parsed_count / n, "exact": exact_count / n}
        result.update({k: sum(v) / len(v) for k, v in totals.items()})
        head = ("parsed", "category", "attributes", "location", "cell", "exact")
        return {
            k: float(result[k]) for k in (*head, *sorted(k for k in result if k not in head)) if k in result
        }

    def category_confusion(self, split: str, predictions: Mapping[str, str]) -> dict[str, list[str]]:
        """The kind of change each caption states, read back with the grammar, beside the true one.

        Returns ``classes`` (the 12 category labels, then the no-change label), and two lists with one entry
        per true change (one per no-change pair): ``truth`` (a class) and ``read`` (a class, or
        ``"unreadable"`` when the grammar reads no — or no further — change from the caption); see
        :func:`~datamodules.synthetic.captions.read_back` for how a caption's changes are matched to a pair's.
        ``read == truth`` exactly where :meth:`change_identification` counts the category right.
        """
        del split  # the ids carry their split
        no_change = self.generator.no_change_label or NO_CHANGE
        name = {None: no_change, NO_CHANGE: no_change, UNREADABLE: UNREADABLE}
        truth: list[str] = []
        read: list[str] = []
        for pid, caption in predictions.items():
            spec = self.spec(pid)
            for op, said in read_back(parse_caption(caption), [change_slots(c) for c in spec.changes]):
                truth.append(name[op] if op is None else self.generator.label(op))
                read.append(name[said] if said in name else self.generator.label(said))
        return {"classes": [*self.generator.labels, no_change], "truth": truth, "read": read}

    def baseline_predictions(self, split: str) -> dict[str, tuple[dict[str, list[str]], dict[str, str]]]:
        """name -> (references by pair_id, one prediction by pair_id), for the metrics callback to score.

        ``ceiling``: each pair's first reference is the prediction, scored against the remaining ones (what a
        perfect annotator-like model would reach); ``trivial``: the most common training caption for every
        pair, scored against all references.
        """
        specs = self.specs(split)
        trivial = self.most_common_training_caption()
        return {
            "ceiling": (
                {s.pair_id: list(s.captions[1:]) for s in specs if len(s.captions) > 1},
                {s.pair_id: s.captions[0] for s in specs if len(s.captions) > 1},
            ),
            "trivial": ({s.pair_id: list(s.captions) for s in specs}, {s.pair_id: trivial for s in specs}),
        }


@lru_cache(maxsize=8)
def _specs(generator: GeneratorConfig, split: str, size: int) -> list[PairSpec]:
    return [sample_pair(generator, split, i) for i in range(size)]


@lru_cache(maxsize=8)
def _most_common(generator: GeneratorConfig, pairs: int) -> str:
    counts = Counter(c for i in range(pairs) for c in sample_pair(generator, "train", i).captions)
    return min(counts, key=lambda c: (-counts[c], c))
