"""Caption token limits that follow the data: measured on the training references with the run's tokenizer.

``model.max_caption_tokens`` (training) and ``generation.max_new_tokens`` (inference) default to ``null``:
the longest training reference in tokens, end token included, so no reference is cut in training and the
model can always finish the longest caption it was taught. A limit set by the user is kept; the start log
then says how many training references it cuts, and ``val/cut_captions`` how many generated ones ran into
it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("m3diff")


def caption_lengths(tokenizer: Any, captions: Sequence[str]) -> list[int]:
    """Tokens per caption as training sees them: the caption's ids plus its end token."""
    ids = tokenizer([c.strip() for c in captions], add_special_tokens=False)["input_ids"]
    return [len(row) + 1 for row in ids]


def resolve_token_limits(config: dict[str, Any], tokenizer: Any, captions: Sequence[str]) -> dict[str, Any]:
    """``config`` with ``null`` token limits set from ``captions`` (the training references); logs the result."""
    lengths = caption_lengths(tokenizer, captions) if captions else [0]
    longest = max(lengths)
    model, generation = dict(config["model"]), dict(config["generation"])
    if model["max_caption_tokens"] is None:
        model["max_caption_tokens"] = longest
    if generation["max_new_tokens"] is None:
        generation["max_new_tokens"] = longest
    limit = model["max_caption_tokens"]
    cut = sum(n > limit for n in lengths)
    log.info(
        "caption tokens: training references up to %d tokens (median %d); model.max_caption_tokens=%d cuts %d "
        "of %d; generation.max_new_tokens=%d",
        longest,
        sorted(lengths)[len(lengths) // 2],
        limit,
        cut,
        len(captions),
        generation["max_new_tokens"],
    )
    return {**config, "model": model, "generation": generation}
