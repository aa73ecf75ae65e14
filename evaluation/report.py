"""What one evaluation's scores look like: :class:`ScoreReport` (overall, per subset, per pair) and its
Markdown table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: pycocoevalcap's metric names, in its order (SPICE is appended when it was computed).
METRICS: tuple[str, ...] = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
#: The overall scores a reader looks at first, in this order: the training summary, ``make compare``'s table,
#: TensorBoard's charts and hparams columns (SPICE only where it was computed).
HEADLINE_METRICS: tuple[str, ...] = ("Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE")
#: The scores of the reference points (``ceiling`` / ``trivial``) that are logged beside a model's.
REFERENCE_METRICS: tuple[str, ...] = ("CIDEr", "Bleu_4")
#: The kinds of subsets a report may hold, in table order.
SUBSET_KINDS: tuple[str, ...] = ("categories", "groups", "subsets", "benchmarks")
PTB = "ptb"
FALLBACK = "fallback-regex"


@dataclass
class ScoreReport:
    """Scores of one evaluation.

    Attributes:
        overall: metric name -> corpus score over every scored pair.
        subsets: kind (``categories`` / ``groups`` / ``benchmarks`` / ...) -> subset name -> metric -> score.
        num_pairs: ``{"overall": n, kind: {name: n}}``.
        per_pair: metric -> pair id -> that pair's score in the overall run (pycocoevalcap's ``imgToEval``);
            their mean is *not* a subset's score for corpus metrics (CIDEr, BLEU, METEOR).
        tokenizer: ``"ptb"`` or ``"fallback-regex"`` (Java missing: numbers are not comparable).
        notes: what could not be computed and why (``"SPICE unavailable: ..."``).
    """

    overall: dict[str, float]
    subsets: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    num_pairs: dict[str, Any] = field(default_factory=dict)
    per_pair: dict[str, dict[str, float]] = field(default_factory=dict)
    tokenizer: str = PTB
    notes: list[str] = field(default_factory=list)

    @property
    def metrics(self) -> list[str]:
        """The metric names computed, in pycocoevalcap's order."""
        return list(self.overall)

    def to_json(self) -> dict[str, Any]:
        """One JSON object: pycocoevalcap's keys at the top, subsets nested under their kind.

        ``{"Bleu_1": .., ..., "CIDEr": .., "num_pairs": n, "categories": {"color": {"Bleu_1": .., ...,
        "num_pairs": n}}, "groups": {...}, "tokenizer": "ptb", "notes": [...]}``
        """
        out: dict[str, Any] = {**self.overall, "num_pairs": self.num_pairs.get("overall", 0)}
        for kind, named in self.subsets.items():
            counts = self.num_pairs.get(kind, {})
            out[kind] = {name: {**scores, "num_pairs": counts.get(name, 0)} for name, scores in named.items()}
        out["tokenizer"] = self.tokenizer
        out["notes"] = list(self.notes)
        return out

    def rows(self) -> list[tuple[str, int, dict[str, float]]]:
        """(row label, pairs, scores) for ``overall`` then every subset, in kind order."""
        rows = [("overall", int(self.num_pairs.get("overall", 0)), self.overall)]
        for kind, named in self.subsets.items():
            for name, scores in named.items():
                rows.append((f"{kind}/{name}", int(self.num_pairs.get(kind, {}).get(name, 0)), scores))
        return rows

    def to_markdown(
        self, extra_rows: Iterable[tuple[str, int | None, Mapping[str, float]]] = (), *, scale: float = 100.0
    ) -> str:
        """A Markdown table: one row per subset, one column per metric (x100 by default, as papers print).

        ``extra_rows`` (label, pairs or None, scores) are appended, e.g. the ceiling / trivial baselines.
        """
        return markdown_table(
            [*self.rows(), *extra_rows], self.metrics, notes=self._header_notes(), scale=scale
        )

    def _header_notes(self) -> list[str]:
        notes = (
            [] if self.tokenizer == PTB else [f"tokenizer: {self.tokenizer} (not comparable to PTB scores)"]
        )
        return notes + list(self.notes)


def markdown_table(
    rows: Iterable[tuple[str, int | None, Mapping[str, float]]],
    metrics: Sequence[str],
    *,
    notes: Sequence[str] = (),
    scale: float = 100.0,
) -> str:
    """Render (label, pairs, scores) rows as a Markdown table; ``scale=100`` prints scores as papers do
    (two decimals), ``scale=1`` as pycocoevalcap does (four)."""
    head = "subset (x100)" if scale == 100 else "subset" if scale == 1 else f"subset (x{scale:g})"
    digits = 2 if scale >= 100 else 4
    lines = [f"| {head} | pairs | " + " | ".join(metrics) + " |", "|---|---:|" + "---:|" * len(metrics)]
    for label, n, scores in rows:
        cells = [f"{scale * scores[m]:.{digits}f}" if m in scores else "–" for m in metrics]
        lines.append(f"| {label} | {'' if n is None else n} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return text
