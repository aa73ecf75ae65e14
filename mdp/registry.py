"""One name registry for backbones: ``register_backbone`` / ``build_backbone`` / ``list_backbones``."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .backbone import Backbone

Factory = TypeVar("Factory", bound=Callable[..., Backbone])

_NAMES: dict[str, Callable[..., Backbone]] = {}
# Prefix patterns such as "timm:" -> factory that also receives `model=<the rest of the name>`.
_PREFIXES: dict[str, Callable[..., Backbone]] = {}


def register_backbone(name: str, *, overwrite: bool = False) -> Callable[[Factory], Factory]:
    """Decorator registering a backbone factory under ``name``.

    The factory is called as ``fn(*, layers, pretrained, image_size, **kwargs) -> Backbone`` with the
    values given to :func:`build_backbone` (None = the factory's default). A name ending in ``":"``
    registers a prefix pattern: ``"timm:"`` serves every ``"timm:<model>"`` and the factory gets the
    extra keyword ``model="<model>"``.

    Example::

        @mdp.register_backbone("my-vit")
        def my_vit(*, layers, pretrained, image_size, **kw):
            return mdp.build_backbone("timm:vit_small_patch16_224", layers=layers, pretrained=pretrained,
                                      image_size=image_size, **kw)
    """
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError(f"backbone names must be non-empty strings without surrounding spaces, got {name!r}")
    table = _PREFIXES if name.endswith(":") else _NAMES

    def decorator(fn: Factory) -> Factory:
        if name in table and not overwrite:
            raise ValueError(f"backbone {name!r} is already registered; pass overwrite=True to replace it")
        table[name] = fn
        return fn

    return decorator


def list_backbones() -> list[str]:
    """Sorted registered names; prefix patterns are listed as ``"<prefix><model>"``."""
    return sorted([*_NAMES, *(f"{p}<model>" for p in _PREFIXES)])


def build_backbone(
    name: str,
    *,
    layers: Sequence[int] | None = None,
    pretrained: Any = None,
    image_size: int | None = None,
    **kwargs: Any,
) -> Backbone:
    """Build a registered backbone by name.

    Args:
        name: a name from :func:`list_backbones`, or ``"timm:<timm model>"`` / ``"open_clip:<model>"``.
        layers: encoder blocks to tap, e.g. ``[1, 3, 5]`` or ``[-5, -3, -1]``; None = the entry's default.
        pretrained: None = random init (builds offline); True / ``"default"`` = the entry's default
            weights; or a tag, ``"hf-hub:org/repo"``, or a local file / folder. Weights that cannot be
            found raise :class:`~mdp.BackboneWeightsError`.
        image_size: square input side in pixels; None = the entry's default.
        kwargs: passed to the factory (e.g. ``cache_dir=``, ``prune=False``, timm model kwargs; transformers
            towers (``hf:``, ``llava-ov-siglip-so400m``) take ``dtype=``).
    Returns:
        a :class:`~mdp.Backbone`; ``backbone(images)`` -> list of (B, N, C), one per tapped layer. Its
        parameters are float32 whatever dtype the weights are stored in (released LLaVA-OneVision folders are
        float16): trainable as they are. Cast a frozen backbone yourself if you want it smaller.
    """
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1
    ):
        raise ValueError(f"backbone {name!r}: image_size must be a positive int, got {image_size!r}")
    args = dict(layers=None if layers is None else list(layers), pretrained=pretrained, image_size=image_size)
    if name in _NAMES:
        backbone = _NAMES[name](**args, **kwargs)
    else:
        prefix = next((p for p in _PREFIXES if name.startswith(p)), None)
        if prefix is None or not name[len(prefix) :]:
            close = difflib.get_close_matches(name, list(_NAMES), n=3)
            raise ValueError(
                f"unknown backbone {name!r}; registered: {list_backbones()}"
                + (f"; did you mean {close}?" if close else "")
            )
        backbone = _PREFIXES[prefix](model=name[len(prefix) :], **args, **kwargs)
    if not isinstance(backbone, Backbone):
        raise TypeError(
            f"factory of backbone {name!r} returned {type(backbone).__name__}, not an mdp.Backbone"
        )
    return backbone
