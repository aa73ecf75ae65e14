"""The field's caption metrics, in plain Python (no Lightning).

- :mod:`.scorer`: :class:`CaptionScorer` runs pycocoevalcap's scorers (PTB tokenizer, BLEU, METEOR, ROUGE-L,
  CIDEr-D, optional SPICE) once per evaluation and rescores every subset (change category, group, benchmark).
- :mod:`.subsets`: :func:`build_subsets`, the pair ids of each rescored subset, from the pairs' labels.
- :mod:`.report`: :class:`ScoreReport` and its Markdown table.
- :mod:`.coco_files`: the COCO-format files anyone can rescore, written atomically.
- :mod:`.tokenization`, :mod:`.meteor`, :mod:`.java`: the PTB tokenizer, the long-lived METEOR JVM and the
  Java checks the scorer builds on.
"""

from evaluation.coco_files import atomic_write_text, coco_ground_truth, coco_predictions
from evaluation.java import java_missing_reason, spice_missing_reason
from evaluation.report import (
    HEADLINE_METRICS,
    METRICS,
    REFERENCE_METRICS,
    SUBSET_KINDS,
    ScoreReport,
    markdown_table,
)
from evaluation.scorer import CaptionScorer, score_captions
from evaluation.subsets import build_subsets

__all__ = [
    "HEADLINE_METRICS",
    "METRICS",
    "REFERENCE_METRICS",
    "SUBSET_KINDS",
    "CaptionScorer",
    "ScoreReport",
    "atomic_write_text",
    "build_subsets",
    "coco_ground_truth",
    "coco_predictions",
    "java_missing_reason",
    "markdown_table",
    "score_captions",
    "spice_missing_reason",
]
