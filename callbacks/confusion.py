"""The category confusion matrix: what kind of change each caption states, against the true one.

A DataModule that knows each pair's true change category and can read one back from a caption (the embedded
benchmark, with its own grammar) offers the optional hook

    category_confusion(split, predictions: {pair_id: caption}) -> {"classes": [...], "truth": [...], "read": [...]}

``classes`` are the row labels (e.g. the 12 categories and "no change"); ``truth`` and ``read`` hold one entry
per scored item (a true change), ``read`` being a class or :data:`UNREADABLE`. :func:`confusion_matrix` counts
them with torchmetrics' ``MulticlassConfusionMatrix``; :class:`ConfusionMatrix` writes ``confusion.json``, the
Markdown table of ``metrics.md`` and the TensorBoard figure (:mod:`callbacks.caption_metrics` calls all three on
rank 0, after the predictions of every rank were gathered, so each pair counts once under DDP).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

UNREADABLE = "unreadable"  # the column of captions from which no change category can be read


@dataclass(frozen=True)
class ConfusionMatrix:
    """``counts[i][j]``: items whose true class is ``rows[i]`` and whose caption reads as ``columns[j]``."""

    rows: tuple[str, ...]
    columns: tuple[str, ...]  # rows, then UNREADABLE
    counts: tuple[tuple[int, ...], ...]

    def row_shares(self) -> list[list[float]]:
        """Each row divided by its total (a row without items: zeros)."""
        return [[c / max(1, sum(row)) for c in row] for row in self.counts]

    def right(self) -> dict[str, float]:
        """Per row: the share read back as the true class (the diagonal of the row shares)."""
        shares = self.row_shares()
        return {name: shares[i][i] for i, name in enumerate(self.rows) if sum(self.counts[i])}

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": list(self.rows),
            "columns": list(self.columns),
            "counts": [list(r) for r in self.counts],
            "row_shares": [[round(s, 6) for s in r] for r in self.row_shares()],
            "items": sum(map(sum, self.counts)),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConfusionMatrix:
        return cls(
            tuple(data["rows"]),
            tuple(data["columns"]),
            tuple(tuple(int(c) for c in r) for r in data["counts"]),
        )

    def to_markdown(self) -> str:
        """Rows = true category, columns = the category read from the caption: ``count (row %)``, blank for 0."""
        head = ["true \\ read", "n", *self.columns]
        lines = ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * len(self.columns)]
        for name, row, shares in zip(self.rows, self.counts, self.row_shares()):
            cells = [f"{c} ({100 * s:.0f} %)" if c else "" for c, s in zip(row, shares)]
            cells = [
                f"**{cell}**" if j == self.rows.index(name) and cell else cell for j, cell in enumerate(cells)
            ]
            lines.append(f"| {name} | {sum(row)} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def figure(self, title: str = "") -> Any:
        """A matplotlib figure: row shares as colour, each cell's count written on it, labels on both axes."""
        import matplotlib

        matplotlib.use("Agg", force=False)  # no display on servers; a no-op when a backend is already set
        import matplotlib.pyplot as plt

        shares = self.row_shares()
        fig, ax = plt.subplots(figsize=(1.0 + 0.62 * len(self.columns), 1.4 + 0.5 * len(self.rows)), dpi=100)
        ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
        for i, row in enumerate(self.counts):
            for j, count in enumerate(row):
                if count:
                    color = "white" if shares[i][j] > 0.6 else "black"
                    ax.text(j, i, str(count), ha="center", va="center", fontsize=8, color=color)
        ax.set_xticks(range(len(self.columns)), self.columns, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(
            range(len(self.rows)), [f"{r} ({sum(c)})" for r, c in zip(self.rows, self.counts)], fontsize=8
        )
        ax.set_xlabel("category read from the caption")
        ax.set_ylabel("true category (items)")
        ax.set_title(
            title or "change category: true vs read from the caption (colour: row share)", fontsize=9
        )
        fig.tight_layout()
        return fig


def confusion_matrix(classes: Sequence[str], truth: Sequence[str], read: Sequence[str]) -> ConfusionMatrix:
    """Count ``(truth[k], read[k])`` pairs with torchmetrics; ``read`` may also be :data:`UNREADABLE`."""
    rows = tuple(str(c) for c in classes)
    if len(set(rows)) != len(rows) or UNREADABLE in rows:
        raise ValueError(f"confusion matrix classes must be distinct and not {UNREADABLE!r}: {list(rows)}")
    if len(truth) != len(read):
        raise ValueError(f"confusion matrix: {len(truth)} true classes but {len(read)} read back")
    columns = (*rows, UNREADABLE)
    index = {name: i for i, name in enumerate(columns)}
    unknown = sorted(
        {str(x) for x in (*truth, *read) if x not in index} | {str(t) for t in truth if t == UNREADABLE}
    )
    if unknown:
        raise ValueError(f"confusion matrix: labels {unknown} are not among the classes {list(rows)}")
    import torch  # here, not at the top: make compare's report reads confusion.json without loading torch
    from torchmetrics.classification import MulticlassConfusionMatrix

    # Square over rows + UNREADABLE (torchmetrics counts classes x classes); no item is truly unreadable, so
    # that last row is always empty and is dropped. sync_on_compute=False: the items are every rank's already
    # (gathered before scoring) and only rank 0 counts them; a sync here would wait for ranks that never come.
    metric = MulticlassConfusionMatrix(num_classes=len(columns), validate_args=False, sync_on_compute=False)
    if truth:
        metric.update(
            torch.tensor([index[t] for t in read], dtype=torch.long),
            torch.tensor([index[t] for t in truth], dtype=torch.long),
        )
        counts = metric.compute()[: len(rows)].tolist()
    else:
        counts = [[0] * len(columns) for _ in rows]
    return ConfusionMatrix(rows, columns, tuple(tuple(int(c) for c in r) for r in counts))
