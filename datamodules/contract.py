"""The sample contract every DataModule yields, and the optional hooks it answers — written down once, here.

One **sample** (what ``Dataset.__getitem__`` returns) is a ``dict`` with:

==============  ==========================  ==================================================
key             type                        meaning
==============  ==========================  ==================================================
``pair_id``     ``str``                     the benchmark's own evaluation id (e.g. ``"000123.png"``,
                                            ``"000123.png_n"``, ``"256.png"``, ``"Reddit_1052"``)
``before``      ``Tensor (3, H, W)`` fp32   the "before" image after the backbone's preprocessing (``uint8`` as
                                            loaded under the ``processor`` pipeline: a model's own processor)
``after``       ``Tensor (3, H, W)`` fp32   the "after" image, same preprocessing
``captions``    ``list[str]``               every reference caption of the pair (>= 1)
``categories``  ``list[str]``               the pair's change categories (may be empty)
``benchmark``   ``str``                     benchmark name (``synthetic``, ``clevr_change``, ...)
==============  ==========================  ==================================================

Optional keys (present only when the data has them; a consumer reads them with ``.get``):

===============  ===========  ==========================================================================
key              type         meaning
===============  ===========  ==========================================================================
``instruction``  ``str``      the pair's own prompt, from an instruction file (``DATA=llava``: the human
                              turn without its ``<image>`` placeholders). A training sample of one caption
                              carries that caption's instruction; an evaluation pair merged from several
                              records carries the first one's. With a chat template the captioner puts it
                              in the pair's user turn (``model.prompt`` for a pair without one); the tiny
                              default LMs (no chat template) do not use it.
``subset``       ``str``      the part of its benchmark the pair belongs to (OmniDiff: ``real`` /
                              ``render``, by ``data.subsets``), scored separately like a category.
===============  ===========  ==========================================================================

A **batch** (what :func:`collate_pairs` makes of a list of samples) holds ``before``/``after`` as
``(B, 3, H, W)`` tensors (under the ``processor`` pipeline, images of different sizes: a list of ``B`` tensors)
and the other keys as lists of length ``B``. An optional key is in the batch when any of
its samples has it, with ``None`` for the others (a mixture batch mixes benchmarks with and without it).

Training picks one reference per pair per step (the LightningModule does it, seeded by the step, so a
resumed run picks the same ones); evaluation scores against all references.

**Optional hooks.** What callbacks, the runner and ``make data-info`` ask a DataModule beyond its loaders. Each
is an attribute or method of :class:`~datamodules.base.PairDataModule` with a neutral default, so callers call
it plainly (no ``getattr`` / ``hasattr``); a DataModule overrides the ones it has:

=============================  ==================================  ======================  ==================
hook                           returns                             neutral default         who calls it
=============================  ==================================  ======================  ==================
``categories``                 ``list[str]``: change categories    ``data.categories`` (a  caption metrics,
                               scored separately                   mixture: its members'   TensorBoard layout,
                                                                   union)                  ``make data-info``
``groups``                     ``dict[str, list[str]]``: extra     ``data.groups``         caption metrics,
                               scored groups                                               TensorBoard layout
``subsets``                    ``Mapping[str, str]``: parts        ``{}`` (``pairs``,      TensorBoard layout
                               scored separately -> their rule     ``omnidiff``: theirs)
``benchmarks``                 ``list[str]``: the benchmarks       ``[benchmark]`` (a      TensorBoard layout
                               evaluation is grouped by            mixture: its members)
``splits``                     ``tuple[str, ...]``                 train, val, test        ``make data-info``
``transform``                  the backbone's ``ImageTransform``   always set              image panels
                               (``denormalize``)
``dataset(split)``             the split's ``Dataset``             ``build_dataset``,      image panels,
                                                                   cached                  data-info, mixture
``missing_split(split)``       why it has no pairs, or ``None``    ``None``                mixture (leaves a
                                                                                           member out of eval)
``reference_captions(split)``  pair id -> every reference          read from the samples   mixture, the
                                                                   (loads images)          default below
``training_captions(limit)``   ``list[str]``: references for a     every training          runner (tokenizer,
                               tiny LM's caption tokenizer         reference, <= limit*5   token limits)
``specs(split)``               every pair (``pair_id``,            ``None`` (cannot        ``make data-info``
                               ``captions``, ``categories``)       without loading)
                               without images (:class:`PairInfo`)
``sample_per``                 ``"pair"`` / ``"caption"``          ``None`` (not stated)   epoch summary line
``epoch_parts()``              part -> training samples, when an   ``{}``                  epoch summary line
                               epoch is a plain concatenation
``baseline_names``             the reference points' names         ``()``                  TensorBoard layout
``baseline_predictions``       ``(split)`` -> name -> (references  ``{}``                  caption metrics
                               by pair id, prediction by pair id)
``identifies_changes``         whether the next one scores         ``False``               TensorBoard layout
``change_identification``      ``(split, pair id -> caption)`` ->  ``{}``                  caption metrics
                               name -> score in [0, 1] against
                               each pair's true change
``category_confusion``         ``(split, pair id -> caption)`` ->  ``{}``                  caption metrics,
                               ``classes`` / ``truth`` / ``read``                          compare
                               (change category per true change)                           (confusion matrix)
=============================  ==================================  ======================  ==================

A new hook goes in this table and on the base class, with its neutral default, in the same change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NotRequired, Protocol, TypedDict

import torch

SAMPLE_KEYS = ("pair_id", "before", "after", "captions", "categories", "benchmark")
OPTIONAL_KEYS = ("instruction", "subset")


class PairSample(TypedDict):
    pair_id: str
    before: torch.Tensor
    after: torch.Tensor
    captions: list[str]
    categories: list[str]
    benchmark: str
    instruction: NotRequired[str]
    subset: NotRequired[str]


class PairBatch(TypedDict):
    pair_id: list[str]
    before: torch.Tensor | list[torch.Tensor]
    after: torch.Tensor | list[torch.Tensor]
    captions: list[list[str]]
    categories: list[list[str]]
    benchmark: list[str]
    instruction: NotRequired[list[str | None]]
    subset: NotRequired[list[str | None]]


class PairInfo(Protocol):
    """One pair as the ``specs`` hook describes it, without images (the embedded benchmark's ``PairSpec``)."""

    pair_id: str
    captions: Sequence[str]
    categories: Sequence[str]


def collate_pairs(samples: list[PairSample]) -> PairBatch:
    """Stack images to ``(B, 3, H, W)``; keep ids, captions, categories and benchmarks as lists (and an optional
    key, when any sample has it, with ``None`` for those without)."""
    batch: PairBatch = {
        "pair_id": [s["pair_id"] for s in samples],
        "before": _stack([s["before"] for s in samples]),
        "after": _stack([s["after"] for s in samples]),
        "captions": [list(s["captions"]) for s in samples],
        "categories": [list(s["categories"]) for s in samples],
        "benchmark": [s["benchmark"] for s in samples],
    }
    for key in OPTIONAL_KEYS:
        if any(key in s for s in samples):
            batch[key] = [s.get(key) for s in samples]
    return batch


def _stack(images: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
    """``(B, 3, H, W)``; raw images at their own sizes (the ``processor`` pipeline) cannot stack: kept as a list."""
    if images[0].dtype == torch.uint8 and any(im.shape != images[0].shape for im in images):
        return images
    return torch.stack(images)


def check_sample(sample: dict, *, where: str = "sample") -> None:
    """Raise ``ValueError`` naming ``where`` if ``sample`` breaks the contract."""
    missing = [k for k in SAMPLE_KEYS if k not in sample]
    if missing:
        raise ValueError(f"{where}: missing keys {missing} (contract: {list(SAMPLE_KEYS)})")
    if not isinstance(sample["pair_id"], str):
        raise ValueError(f"{where}: pair_id must be str, got {type(sample['pair_id']).__name__}")
    for key in ("before", "after"):
        t = sample[key]
        if not (isinstance(t, torch.Tensor) and t.ndim == 3 and t.shape[0] == 3):
            raise ValueError(f"{where}: {key} must be a (3, H, W) tensor, got {getattr(t, 'shape', type(t))}")
    raw = sample["before"].dtype == torch.uint8  # the processor pipeline: each image at its own size
    if sample["before"].shape != sample["after"].shape and not raw:
        raise ValueError(
            f"{where}: before {tuple(sample['before'].shape)} != after {tuple(sample['after'].shape)}"
        )
    caps = sample["captions"]
    if not caps or not all(isinstance(c, str) for c in caps):
        raise ValueError(f"{where}: captions must be a non-empty list of str")
    if not all(isinstance(c, str) for c in sample["categories"]):
        raise ValueError(f"{where}: categories must be a list of str")
    for key in OPTIONAL_KEYS:  # None = absent (a batch item of a sample without the key)
        value = sample.get(key)
        if value is not None and not (isinstance(value, str) and value.strip()):
            raise ValueError(f"{where}: {key} must be a non-empty str (or absent), got {value!r}")
