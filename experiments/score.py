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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evaluation import SUBSET_KINDS, CaptionScorer, ScoreReport, atomic_write_text, java_missing_reason

log = logging.getLogger("m3diff.score")


class ScoreInputError(ValueError):
    """A GT / prediction / category file that cannot be scored; the message names the file and record."""


def _read_json(path: str | Path, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ScoreInputError(f"{what} file not found: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as err:
        raise ScoreInputError(
            f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from err
    except UnicodeDecodeError as err:
        raise ScoreInputError(f"{path}: not UTF-8 text ({err})") from err


def load_ground_truth(path: str | Path) -> dict[str, list[str]]:
    """COCO caption GT -> id (as str) -> references, in file order."""
    data = _read_json(path, "GT")
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise ScoreInputError(f"{path}: not a COCO caption file (needs an 'annotations' list)")
    refs: dict[str, list[str]] = {}
    raw: dict[str, Any] = {}
    for n, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or not isinstance(ann.get("caption"), str):
            raise ScoreInputError(
                f"{path}: annotations[{n}] needs 'image_id' and a string 'caption', got {ann!r:.200}"
            )
        key = str(ann["image_id"])
        if key in raw and raw[key] != ann["image_id"]:
            raise ScoreInputError(f"{path}: ids {raw[key]!r} and {ann['image_id']!r} collide as strings")
        raw[key] = ann["image_id"]
        refs.setdefault(key, []).append(ann["caption"])
    return refs


def load_predictions(path: str | Path) -> dict[str, str]:
    """COCO result list -> id (as str) -> caption; duplicate ids are an error (pycocoevalcap would assert)."""
    data = _read_json(path, "PRED")
    if not isinstance(data, list):
        raise ScoreInputError(f"{path}: predictions must be a JSON list of {{'image_id', 'caption'}}")
    preds: dict[str, str] = {}
    for n, rec in enumerate(data):
        if not isinstance(rec, dict) or "image_id" not in rec or not isinstance(rec.get("caption"), str):
            raise ScoreInputError(
                f"{path}: record [{n}] needs 'image_id' and a string 'caption', got {rec!r:.200}"
            )
        key = str(rec["image_id"])
        if key in preds:
            raise ScoreInputError(f"{path}: record [{n}]: a second prediction for id {rec['image_id']!r}")
        preds[key] = rec["caption"]
    return preds


def load_subsets(path: str | Path, known_ids: set[str]) -> dict[str, dict[str, list[str]]]:
    """A category mapping file -> ``{"categories": {name: ids}}`` (or the kinds of a kit ``subsets.json``)."""
    data = _read_json(path, "CATEGORIES")
    if not isinstance(data, dict) or not data:
        raise ScoreInputError(f"{path}: expected a non-empty JSON object")
    if all(isinstance(v, dict) for v in data.values()):  # the kit's own subsets.json
        unknown = sorted(set(data) - set(SUBSET_KINDS))
        if unknown:
            log.info("%s: extra subset kinds %s are scored too", path, unknown)
        return {kind: _name_to_ids(path, named, known_ids) for kind, named in data.items()}
    return {"categories": _name_to_ids(path, data, known_ids)}


def _name_to_ids(path: str | Path, data: Mapping[str, Any], known_ids: set[str]) -> dict[str, list[str]]:
    """category -> ids, or id -> category / categories (told apart by which side holds the GT ids)."""
    for key, value in data.items():
        if not isinstance(value, (str, list)) or (
            isinstance(value, list) and not all(isinstance(v, (str, int)) for v in value)
        ):
            raise ScoreInputError(
                f"{path}: entry {key!r}: expected a string or a list of strings, got {value!r:.100}"
            )
    values = [str(v) for value in data.values() for v in (value if isinstance(value, list) else [value])]
    keys_hit = sum(str(k) in known_ids for k in data) / len(data)
    values_hit = sum(v in known_ids for v in values) / max(1, len(values))
    if keys_hit == 0 and values_hit == 0:
        raise ScoreInputError(
            f"{path}: none of its ids match an id of the ground truth (e.g. {list(data)[:3]})"
        )
    out: dict[str, list[str]] = {}
    if keys_hit > values_hit:  # id -> category(s)
        for pair_id, cats in data.items():
            for cat in cats if isinstance(cats, list) else [cats]:
                out.setdefault(str(cat), []).append(str(pair_id))
    else:  # category -> ids
        for cat, ids in data.items():
            out[str(cat)] = [str(i) for i in (ids if isinstance(ids, list) else [ids])]
    return out


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
    parser = argparse.ArgumentParser(
        prog="python -m experiments.score",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--gt", default="", help="COCO-format ground truth JSON (GT=)")
    parser.add_argument("--pred", default="", help="predictions JSON [{image_id, caption}] (PRED=)")
    parser.add_argument("--out", default="", help="write the metrics JSON here (OUT=)")
    parser.add_argument("--categories", default="", help="category mapping JSON (CATEGORIES=)")
    parser.add_argument("--spice", action="store_true", help="also SPICE, if its CoreNLP models are present")
    parser.add_argument("--no-meteor", action="store_true", help="skip METEOR (saves its ~8 s JVM start)")
    parser.add_argument("--quiet", action="store_true", help="no progress or log lines (warnings only)")
    args = parser.parse_args(argv)
    if not args.gt or not args.pred:
        parser.error("both GT=<gt.json> and PRED=<pred.json> are required")
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(name)s: %(message)s")
    if (reason := java_missing_reason()) is not None:
        # Published numbers need Java (PTB tokenizer, METEOR); training and `make eval` do without, labelled.
        print(f"error: {reason}: make score needs Java for the COCO caption metrics", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        report = score_files(
            args.gt,
            args.pred,
            args.categories or None,
            spice=args.spice,
            meteor=not args.no_meteor,
            progress=not args.quiet,
        )
    except (ScoreInputError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
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
