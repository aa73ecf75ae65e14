"""What the entry points print: log format, and the library messages a user can do nothing about.

Every filter here is narrow (one message, matched by its text) and says why it exists; a warning a user can
act on (a config value, missing Java, skipped records) is never filtered. Causes we can fix are fixed where
they arise instead (e.g. the attention mask passed to ``generate``, ``sync_dist`` on epoch-level metrics).
"""

from __future__ import annotations

import logging
import warnings

LOG_FORMAT = "%(asctime)s %(name)s: %(message)s"


class _DropAdvertisement(logging.Filter):
    """Lightning 2.6 logs a "Tip" recommending a cloud logging product at every Trainer start."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip: For seamless cloud")


class _DropOpenClipChatter(logging.Filter):
    """open_clip logs through the root logger: each step of building a model (INFO, with CLIP's mean/std even
    when the kit uses SigLIP's) and a warning that a model is randomly initialised, which is what
    ``pretrained: null`` asked for. Its errors and other warnings still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "open_clip" not in record.pathname.replace("\\", "/"):
            return True
        return record.levelno > logging.INFO and not str(record.msg).startswith(
            "No pretrained weights loaded"
        )


def quiet_library_noise() -> None:
    """Silence the library messages that ask nothing of the user (idempotent)."""
    # Raised inside Lightning 2.6's own pytree helper (lightning/pytorch/utilities/_pytree.py) by torch
    # >= 2.10's deprecation of LeafSpec, at every training step's first batch: nothing in the kit or the
    # user's config calls it, and it disappears with a Lightning release that follows torch.
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )
    # peft 0.21 reads transformers' deprecated `is_gradient_checkpointing` property when it wraps a model for LoRA
    # (peft/peft_model.py); the kit uses transformers' new activation-checkpointing API itself.
    warnings.filterwarnings(
        "ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning
    )
    root = logging.getLogger()
    if not any(isinstance(f, _DropOpenClipChatter) for f in root.filters):
        root.addFilter(_DropOpenClipChatter())
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropAdvertisement) for f in rank_zero.filters):
        rank_zero.addFilter(_DropAdvertisement())


def configure_logging() -> None:
    """INFO lines with time and source on stderr, and no library noise (see :func:`quiet_library_noise`)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, datefmt="%H:%M:%S")
    quiet_library_noise()
