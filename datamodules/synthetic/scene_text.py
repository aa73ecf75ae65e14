"""Single scenes of the embedded benchmark with a description of their content, for SigLIP pretraining.

``make pretrain`` teaches the tiny vision tower what the benchmark's pictures contain before it ever sees a
pair: which object sits in which cell, its size, colour, shape (or pose, word, count), its attachment, the
background's texture and the light. The description is a short word sequence in reading order of the cells,
e.g. ``grainy neutral | top_left small red triangle hat | center large blue figure arms_up | ...``; every
word is one token of a fixed vocabulary (:data:`VOCAB`), so no tokenizer has to be trained or downloaded.

Scenes come from the same sampler as the pairs (:func:`~datamodules.synthetic.scenes.sample_scene`), drawn
with the same renderer, sensor noise and jitter, under one of the benchmark's lights or none. Scene ``i`` of
a split is a pure function of (``seed``, split, ``i``); the pair benchmark uses other seeds, so validation
pairs are never pretraining scenes.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from datamodules.images import ImageTransform
from datamodules.synthetic.datamodule import _sensor
from datamodules.synthetic.render import apply_light, render
from datamodules.synthetic.scenes import (
    ATTACHMENTS,
    CELL_NAMES,
    COLORS,
    GROUP_COUNTS,
    POSES,
    SHAPES,
    SIZES,
    TEXTURES,
    WORDS,
    Obj,
    Scene,
    sample_scene,
)
from datamodules.synthetic.spec import LIGHT_CHOICES

PAD, SEP = "<pad>", "|"
CELLS = tuple(name.replace(" ", "_") for name in CELL_NAMES)
VOCAB: tuple[str, ...] = (
    PAD,
    SEP,
    *CELLS,
    *SIZES,
    *COLORS,
    *SHAPES,
    *ATTACHMENTS,
    "figure",
    *(f"arms_{pose}" for pose in POSES),
    "sign",
    *WORDS,
    "group",
    *(str(n) for n in GROUP_COUNTS),
    *TEXTURES,
    "neutral",
    *LIGHT_CHOICES,
)
TOKEN_ID = {word: i for i, word in enumerate(VOCAB)}
# Background + light + separator, then at most 8 objects of at most 6 words each (cell, size, colour, shape,
# attachment, separator): 51 words; 64 leaves room and is what the tiny SigLIP text tower is built for.
CONTEXT_LENGTH = 64
# Scenes are lit like the pairs' "after" images: no relighting for most, one of the benchmark's lights else.
LIT_FRACTION = 0.4
SPLITS = ("train", "val")


def object_words(obj: Obj) -> list[str]:
    """``top_left small red triangle hat``-style words naming one object."""
    words = [CELLS[obj.cell]]
    if obj.kind == "shape":
        words += [obj.size, obj.color, obj.shape] + ([obj.attachment] if obj.attachment else [])
    elif obj.kind == "figure":
        words += [obj.size, obj.color, "figure", f"arms_{obj.pose}"]
    elif obj.kind == "sign":
        words += [obj.color, "sign", obj.word or ""]
    else:
        words += ["group", str(obj.count), obj.color, obj.shape]
    return words


def describe(scene: Scene, light: str | None) -> list[str]:
    """The scene's words: background texture and light, then each object in reading order of its cell."""
    words = [scene.background.texture, light or "neutral"]
    for obj in sorted(scene.objects, key=lambda o: o.cell):
        words += [SEP, *object_words(obj)]
    return words


def encode(words: Sequence[str], length: int = CONTEXT_LENGTH) -> torch.Tensor:
    """``(length,)`` token ids, right-padded with ``<pad>`` (the text tower pools the last position, which
    attends to every word: its attention is bidirectional)."""
    if len(words) > length:
        raise ValueError(f"a scene description of {len(words)} words exceeds the context length {length}")
    ids = [TOKEN_ID[w] for w in words] + [TOKEN_ID[PAD]] * (length - len(words))
    return torch.tensor(ids, dtype=torch.long)


def scene_sample(
    seed: int, split: str, index: int, *, side: int, noise: float, jitter: float, objects: tuple[int, int]
) -> tuple[Image.Image, list[str]]:
    """Scene ``index`` of ``split``: its picture (``side`` px, RGB) and its description."""
    rng = random.Random(f"scene-text/{seed}/{split}/{index}")  # str seeds are hashed with SHA-512: stable
    scene = sample_scene(rng, *objects)
    light = rng.choice(LIGHT_CHOICES) if rng.random() < LIT_FRACTION else None
    image = render(scene, side)
    if light:
        image = apply_light(image, light)
    image = _sensor(image, np.random.default_rng(rng.getrandbits(32)), noise, jitter)
    return image, describe(scene, light)


class SceneTexts(Dataset):
    """``size`` (image ``(3, H, W)``, token ids ``(CONTEXT_LENGTH,)``) samples of one split, generated on the fly."""

    def __init__(
        self,
        *,
        split: str,
        size: int,
        transform: ImageTransform,
        seed: int,
        noise: float,
        jitter: float,
        objects: tuple[int, int],
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"scene texts: unknown split {split!r}; known: {list(SPLITS)}")
        self.split, self.size, self.transform, self.seed = split, size, transform, seed
        self.noise, self.jitter, self.objects = noise, jitter, objects

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, words = scene_sample(
            self.seed,
            self.split,
            index,
            side=self.transform.size,
            noise=self.noise,
            jitter=self.jitter,
            objects=self.objects,
        )
        return self.transform(image), encode(words)
