"""``score``: a CLEVR-Change-test-sized evaluation, the kit's ``CaptionScorer`` vs pycocoevalcap per subset.

The set: the embedded benchmark's test split shaped like CLEVR-Change's (3985 change + 3985 distractor pairs
in expectation, 5-7 references each, five change categories): each prediction is a held-out reference (the
DataModule's ``ceiling`` baseline). It is scored overall + per category + the semantic group (the changed
pairs) by :class:`~evaluation.CaptionScorer`, against the field's way: one ``COCOEvalCap.evaluate()``
per subset (``params['image_id']`` = the subset's ids), which starts two PTB tokenizer JVMs and a METEOR JVM
each time. That baseline runs on a few subsets and is extrapolated to all of them when it would not fit the
time budget; where both ran, their scores must agree.
"""

from __future__ import annotations

import io
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from contextlib import redirect_stdout
from typing import Any
from unittest import mock

from experiments.bench.measure import conditions

# CLEVR-Change's five change types (color, texture, add, drop, move) have no exact counterparts among the
# embedded benchmark's 12 operations; these five keep the shape: 5 categories + distractors + 1 group.
CHANGE_CATEGORIES = ("color", "size", "addition", "removal", "replacement")
NO_CHANGE = "no_change"


def clevr_change_sized_set(
    scenes: int,
) -> tuple[dict[str, list[str]], dict[str, str], dict[str, dict[str, list[str]]]]:
    """References, predictions and subsets (``categories`` + the ``semantic`` group) of ``2 * scenes`` pairs
    of the embedded benchmark, half without a change in expectation, 5-7 references after the held-out one."""
    from evaluation import build_subsets
    from experiments.common import assembly
    from experiments.common.config import load_config

    others = [c for c in load_config().data.categories if c not in CHANGE_CATEGORIES]
    cfg = load_config(
        overrides=[
            f"data.test_size={2 * scenes}",
            "data.no_change_fraction=0.5",
            f"data.no_change_label={NO_CHANGE}",
            "data.caption_style=short",
            "data.max_changes=1",
            "data.min_references=6",  # one of them becomes the prediction
            "data.max_references=8",
            "data.category_weights={" + ", ".join(f"{c}: 0.0" for c in others) + "}",
        ]
    )
    datamodule = assembly.make_datamodule(cfg)
    refs, preds = datamodule.baseline_predictions("test")["ceiling"]
    pairs = {
        s.pair_id: {"categories": s.categories, "benchmark": "synthetic"} for s in datamodule.specs("test")
    }
    subsets = build_subsets(
        {p: pairs[p] for p in preds}, [*CHANGE_CATEGORIES, NO_CHANGE], {"semantic": list(CHANGE_CATEGORIES)}
    )
    # A tiny (--quick) set may miss a category; an empty subset has no score (the kit's scorer leaves it out).
    return refs, preds, {k: {n: ids for n, ids in named.items() if ids} for k, named in subsets.items()}


class _NotComputed:
    """Stands in for a pycocoevalcap scorer that ``COCOEvalCap.evaluate()`` must not run (its score: NaN)."""

    def method(self) -> str:
        return "not computed"

    def compute_score(self, gts: Any, res: Any) -> tuple[float, list[float]]:
        return math.nan, []


def coco_eval_cap(coco: Any, res: Any, ids: Sequence[str], *, meteor: bool) -> dict[str, float]:
    """One subset scored the field's way: ``COCOEvalCap(coco, res)``, ``params['image_id']`` = ``ids``,
    ``evaluate()``. SPICE is left out, as in the kit's default (its CoreNLP models are a separate download that
    ``Spice()`` would attempt); METEOR too when ``meteor`` is false (``--quick``). Its printing is swallowed."""
    import pycocoevalcap.eval
    from pycocoevalcap.eval import COCOEvalCap

    evaluator = COCOEvalCap(coco, res)
    evaluator.params["image_id"] = list(ids)
    left_out = {"Spice": _NotComputed, **({} if meteor else {"Meteor": _NotComputed})}
    with mock.patch.multiple(pycocoevalcap.eval, **left_out), redirect_stdout(io.StringIO()):
        evaluator.evaluate()
    return {k: float(v) for k, v in evaluator.eval.items() if not math.isnan(v)}


def coco_objects(refs: Mapping[str, Sequence[str]], preds: Mapping[str, str]) -> tuple[Any, Any]:
    """pycocotools' ground truth and results, from the kit's COCO files' contents (``gt.json``, ``pred.json``)."""
    from pycocotools.coco import COCO

    from evaluation import coco_ground_truth, coco_predictions

    with redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = coco_ground_truth(refs)
        coco.createIndex()
        return coco, coco.loadRes(coco_predictions(preds))


def naive_order(jobs: Sequence[tuple[str, list[str]]]) -> list[tuple[str, list[str]]]:
    """The smallest job, then the largest but one, then the rest smallest first: two sizes early, so that the
    fixed cost per evaluation (JVM starts) and the cost per pair can be told apart when the budget stops it."""
    by_size = sorted(jobs, key=lambda j: len(j[1]))
    if len(by_size) < 3:
        return by_size
    first, second = by_size[0], by_size[-2]
    return [first, second, *[j for j in by_size if j is not first and j is not second]]


def fit_cost(samples: Sequence[tuple[str, int, float]]) -> tuple[float, float]:
    """Least-squares ``seconds = fixed + per_pair * pairs`` (one sample: all of it per pair, no fixed part)."""
    xs, ys = [n for _, n, _ in samples], [t for _, _, t in samples]
    if len(set(xs)) < 2:
        return 0.0, sum(ys) / max(1, sum(xs))
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    slope = max(slope, 0.0)
    return max(0.0, my - slope * mx), slope


def run_naive(
    refs: Mapping[str, Sequence[str]],
    preds: Mapping[str, str],
    jobs: Sequence[tuple[str, list[str]]],
    report: Any,
    *,
    budget_s: float,
    meteor: bool,
) -> tuple[list[tuple[str, int, float]], list[float]]:
    """One ``COCOEvalCap`` evaluation per job in :func:`naive_order` until ``budget_s`` is spent (at least
    one). Returns (label, pairs, seconds) per evaluation and the |differences| from the kit's ``report``."""
    coco, res = coco_objects(refs, preds)
    measured: list[tuple[str, int, float]] = []
    diffs: list[float] = []
    for label, ids in naive_order(jobs):
        if measured and sum(t for _, _, t in measured) > budget_s:
            break
        start = time.perf_counter()
        scores = coco_eval_cap(coco, res, ids, meteor=meteor)
        measured.append((label, len(ids), time.perf_counter() - start))
        kind, _, name = label.partition("/")
        mine = report.overall if label == "overall" else report.subsets[kind][name]
        diffs.extend(abs(scores[m] - mine[m]) for m in scores)
    return measured, diffs


def section_score(*, scenes: int, naive_budget_s: float, meteor: bool) -> dict[str, Any]:
    from evaluation import CaptionScorer, java_missing_reason

    refs, preds, subsets = clevr_change_sized_set(scenes)
    jobs = [("overall", list(preds))] + [
        (f"{k}/{n}", ids) for k, named in subsets.items() for n, ids in named.items()
    ]
    out: dict[str, Any] = {
        "pairs": len(preds),
        "references": sum(len(r) for r in refs.values()),
        "subsets": len(jobs) - 1,
        "meteor": meteor,
    }
    reason = java_missing_reason()
    if reason is not None:
        out["skipped"] = f"Java unavailable: {reason}"
        return out
    with conditions(out):
        start = time.perf_counter()
        with CaptionScorer(meteor=meteor, progress=False) as scorer:
            report = scorer.score(refs, preds, subsets)
        out["scorer_s"] = round(time.perf_counter() - start, 2)
        naive, diffs = run_naive(refs, preds, jobs, report, budget_s=naive_budget_s, meteor=meteor)
    measured = {label for label, _, _ in naive}
    rest = [len(ids) for label, ids in jobs if label not in measured]
    fixed, per_pair = fit_cost(naive)
    total = sum(t for _, _, t in naive) + sum(fixed + per_pair * n for n in rest)
    out.update(
        naive_measured=[{"subset": lab, "pairs": n, "s": round(t, 2)} for lab, n, t in naive],
        naive_s=round(total, 1),
        naive_extrapolated=bool(rest),
        naive_extrapolated_evaluations=len(rest),
        speedup=round(total / out["scorer_s"], 1),
        max_abs_diff_vs_naive=float(f"{max(diffs):.2e}") if diffs else None,
        overall=report.overall,
    )
    return out
