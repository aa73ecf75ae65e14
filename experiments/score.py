"""Score any COCO-format caption ground truth / prediction pair the way the field does.

    make score GT=<coco gt.json> PRED=<pred.json> [OUT=<metrics.json>] [CATEGORIES=<map.json>]
    python -m experiments.score --gt gt.json --pred pred.json [--out metrics.json] [--categories map.json] [--spice]

* GT: ``{"images": [...], "annotations": [{"image_id", "caption"}, ...]}`` (several annotations per id =
  several references; duplicate ``images`` entries are harmless, as in pycocotools).
* PRED: ``[{"image_id", "caption"}, ...]``, one caption per id. Only the ids in PRED are scored (the field's
  ``params['image_id'] = res.getImgIds()`` convention); a PRED id missing from GT is an error naming it.
  Ids are compared as strings (``1`` and ``"1"`` are the same id).
* CATEGORIES (optional): category -> list of ids (CLEVR-Change's ``type_mapping.json``), id -> category or
  list of categories, or the kit's own ``subsets.json`` (``{"categories": {..}, "groups": {..}}``) written
  next to every evaluation. Each subset is rescored on its ids that are in PRED.

Prints a table (scores x100) and writes ONE JSON object to OUT: pycocoevalcap's keys (``Bleu_1`` ..
``Bleu_4``, ``METEOR``, ``ROUGE_L``, ``CIDEr``, raw 0-1 values like ``COCOEvalCap.eval``) with per-category
results nested under ``"categories"`` (and ``"groups"`` etc. for a ``subsets.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from evaluation import CaptionScorer, ScoreReport, atomic_write_text, java_missing_reason
from evaluation.coco_files import ScoreInputError, load_ground_truth, load_predictions, load_subsets
from experiments.common import cli


def score_files(
    gt: str | Path,
    pred: str | Path,
    categories: str | Path | None = None,
    *,
    spice: bool = False,
    meteor: bool = True,
    progress: bool = True,
) -> ScoreReport:
    """Score a GT / prediction file pair (optionally per category); see the module docstring."""
    references = load_ground_truth(gt)
    predictions = load_predictions(pred)
    missing = [i for i in predictions if i not in references]
    if missing:
        raise ScoreInputError(
            f"{pred}: {len(missing)} predicted id(s) are not in the ground truth {gt}: "
            f"{', '.join(repr(m) for m in missing[:10])}{' ...' if len(missing) > 10 else ''}"
        )
    subsets = load_subsets(categories, set(references)) if categories else None
    with CaptionScorer(spice=spice, meteor=meteor, progress=progress) as scorer:
        return scorer.score(references, predictions, subsets)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__, prog="python -m experiments.score")
    parser.add_argument("--gt", default="", help="COCO-format ground truth JSON (GT=)")
    parser.add_argument("--pred", default="", help="predictions JSON [{image_id, caption}] (PRED=)")
    parser.add_argument("--out", default="", help="write the metrics JSON here (OUT=)")
    parser.add_argument("--categories", default="", help="category mapping JSON (CATEGORIES=)")
    parser.add_argument("--spice", action="store_true", help="also SPICE, if its CoreNLP models are present")
    parser.add_argument("--no-meteor", action="store_true", help="skip METEOR (saves its ~8 s JVM start)")
    parser.add_argument("--quiet", action="store_true", help="no progress or log lines (warnings only)")
    return cli.run(parser, score, argv, logging=False)


def score(args: argparse.Namespace) -> int:
    cli.require(args, ("gt", "pred"), "make score GT=<gt.json> PRED=<pred.json>")
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(name)s: %(message)s")
    if (reason := java_missing_reason()) is not None:
        # Published numbers need Java (PTB tokenizer, METEOR); training and `make eval` do without, labelled.
        raise cli.UsageError(f"{reason}: make score needs Java for the COCO caption metrics")
    start = time.perf_counter()
    report = score_files(
        args.gt,
        args.pred,
        args.categories or None,
        spice=args.spice,
        meteor=not args.no_meteor,
        progress=not args.quiet,
    )
    print(
        f"{args.pred} against {args.gt}: {report.num_pairs['overall']} pairs, {time.perf_counter() - start:.1f} s"
    )
    print(report.to_markdown(scale=1), end="")
    if args.out:
        atomic_write_text(args.out, json.dumps(report.to_json(), indent=2) + "\n")
        print(f"metrics written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
