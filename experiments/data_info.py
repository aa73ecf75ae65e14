"""Inspect a dataset without loading a model: pairs, references, per-category counts and every problem.

    make data-info DATA=<benchmark> ROOT=<dir> [SPLIT=test] [JSON=1] [ARGS="--check-images=exists data.k=v"]
    python -m experiments.data_info --data clevr_change --root /data/clevr_change --split test --json 1

Counts come from the annotation files alone, so they are right even when images are missing; missing or
unreadable images (and bad records) are listed as problems. ``ARGS`` holds ``--check-images=decode|exists|none``
(default ``decode``: every image of the inspected splits is opened fully; ``exists`` only checks that the files
are there and non-empty) and ``data.*=value`` config overrides (e.g. ``data.block_types=[...]``).

Exit status: 0 = everything readable; 1 = problems listed (missing/unreadable images, bad records), counts still
computed; 2 = the data cannot be read at all (missing or malformed annotation file, bad root or config): the
message names the file and record.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from dataclasses import asdict
from typing import Any

from datamodules.errors import DataError, MissingFile
from datamodules.mixture import MixtureDataModule
from datamodules.records import RecordDataModule, SplitReport
from experiments.common import cli

MAX_LISTED = 1000  # problems listed in the JSON (all are counted); the text output shows the first 20
EXIT_OK, EXIT_PROBLEMS, EXIT_UNREADABLE = 0, 1, 2
EMPTY = "make train / make eval stop with this message"


def _parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__.split("\n\n")[0], prog="python -m experiments.data_info")
    parser.add_argument("--data", default="", help="benchmark config name (conf/data/<name>.yaml)")
    parser.add_argument("--root", default="", help="dataset folder (data.root)")
    parser.add_argument("--split", default="", help="train | val | test (default: all)")
    parser.add_argument("--json", default="", help="1: print one JSON object")
    parser.add_argument("--check-images", default="", choices=["", "decode", "exists", "none"])
    parser.add_argument("--args", default="", help="more options and data.*=value overrides, as one string")
    return parser


def _glue_args(argv: list[str] | None) -> list[str]:
    """``--args "--check-images=exists"``: glue the value on, or argparse takes it for an option."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(argv[:-1]):
        if arg == "--args":
            argv[i : i + 2] = [f"--args={argv[i + 1]}"]
            break
    return argv


def generic_report(module: Any, split: str) -> SplitReport:
    """For DataModules without an annotation index (the embedded benchmark). Counted without images when the
    module can say what a pair is (``specs(split)`` with ids, captions and categories, as the embedded benchmark
    has); otherwise by loading every sample."""
    report = SplitReport(missing_images=0)  # generated or loaded: no image file is missing
    counts: Counter[str] = Counter()
    ids: set[str] = set()
    specs = module.specs(split)
    if specs is not None:
        items = ((i, s.pair_id, s.captions, s.categories) for i, s in enumerate(specs))
    else:
        items = _samples(module, split, report)
    for _, pair_id, captions, categories in items:
        report.pairs += 1
        ids.add(pair_id)
        report.references += len(captions)
        report.blank_references += sum(1 for c in captions if not c.strip())
        counts.update(categories)
    report.unique_ids = len(ids)
    report.categories = {c: counts.pop(c, 0) for c in module.categories} | dict(sorted(counts.items()))
    return report


def _samples(module: Any, split: str, report: SplitReport) -> Any:
    dataset = module.dataset(split)
    for i in range(len(dataset)):
        try:
            sample = dataset[i]
        except Exception as err:  # report every unreadable sample, keep counting
            report.problems.append(f"{module.benchmark} {split} sample {i}: {err}")
            continue
        yield i, sample["pair_id"], sample["captions"], sample["categories"]


def inspect_module(module: Any, split: str, check_images: str) -> dict[str, Any]:
    """``{"benchmark", "root", "splits": {split: report}}`` plus totals, for one (non-mixture) DataModule."""
    splits = [split] if split else list(module.splits)
    reports, absent = {}, {}
    for name in splits:
        if isinstance(module, RecordDataModule):
            try:
                reports[name] = module.inspect(name, check_images=check_images)
            except MissingFile as err:
                if split:  # asked for: its file must be there
                    raise
                absent[name] = str(err)  # e.g. an instruction file holding only a training split
        else:
            reports[name] = generic_report(module, name)
    if absent and not reports:
        raise MissingFile(next(iter(absent.values())))
    for name, report in reports.items():
        if not report.pairs:  # what make train / make eval would stop at (RecordDataModule.build_dataset)
            report.problems.append(
                f"{module.config.root or module.benchmark}: no usable pairs in split '{name}' ({EMPTY})"
            )
    info = summarize({"benchmark": module.benchmark, "root": str(module.config.root)}, reports)
    return {**info, "absent_splits": absent} if absent else info


def summarize(head: dict[str, Any], reports: dict[str, SplitReport]) -> dict[str, Any]:
    refs = [r.references for r in reports.values()]
    missing = [r.missing_images for r in reports.values()]
    categories: Counter[str] = Counter()
    for r in reports.values():
        categories.update(r.categories)
    # A record every split reads (one annotation file for all splits) is reported by each split that scans it;
    # list it once. A problem names its file and record, so two different records never merge.
    problems = list(dict.fromkeys(p for r in reports.values() for p in r.problems))
    return {
        **head,
        "pairs": sum(r.pairs for r in reports.values()),
        "references": None if any(x is None for x in refs) else sum(refs),
        # Files, per split (a file shared by two splits counts in each); None: images not checked.
        "missing_images": None if any(x is None for x in missing) else sum(missing),
        "categories": {
            c: categories[c] for c in dict.fromkeys(c for r in reports.values() for c in r.categories)
        },
        "problems": problems[:MAX_LISTED],
        "problem_count": len(problems),
        "splits": {name: {**asdict(r), "problem_count": len(r.problems)} for name, r in reports.items()},
    }


def build(data: str, root: str, overrides: list[str]) -> Any:
    from experiments.common.assembly import make_datamodule

    args = argparse.Namespace(backbone="", data=data, exp="", root=root, args="", overrides=overrides)
    return make_datamodule(cli.compose(args))  # images at backbone.image_size, mean / std 0.5: no model


def print_text(info: dict[str, Any], out: Any = None) -> None:
    out = out or sys.stdout

    def table(item: dict[str, Any], indent: str = "") -> None:
        print(f"{indent}{item['benchmark']}  (root: {item['root']})", file=out)
        print(
            f"{indent}  {'split':<6} {'pairs':>8} {'unique ids':>11} {'references':>11} {'missing images':>15}"
            "  categories",
            file=out,
        )
        for name, s in item["splits"].items():
            refs = "unknown" if s["references"] is None else s["references"]
            missing = "not checked" if s.get("missing_images") is None else s["missing_images"]
            cats = ", ".join(f"{c} {n}" for c, n in s["categories"].items()) or "-"
            print(
                f"{indent}  {name:<6} {s['pairs']:>8} {s['unique_ids']:>11} {refs!s:>11} {missing!s:>15}  {cats}",
                file=out,
            )
            if s.get("subsets"):
                parts = ", ".join(f"{name} {n}" for name, n in s["subsets"].items())
                print(
                    f"{indent}         (subsets: {parts}; {s['pairs'] - sum(s['subsets'].values())} in none)",
                    file=out,
                )
            if s["blank_references"]:
                print(f"{indent}         ({s['blank_references']} blank references, as released)", file=out)

    for member in info.get("members", {}).values() or [info]:
        table(member, "  " if "members" in info else "")
        for name, why in member.get("absent_splits", {}).items():
            print(f"{'  ' if 'members' in info else ''}  {name:<6} absent: {why}", file=out)
    refs = "unknown (caption file missing)" if info["references"] is None else info["references"]
    print(f"total: {info['pairs']} pairs, {refs} references", file=out)
    if info["problem_count"]:
        print(f"problems: {info['problem_count']}", file=out)
        for problem in info["problems"][:20]:
            print(f"  {problem}", file=out)
        if info["problem_count"] > 20:
            print(f"  ... and {info['problem_count'] - 20} more (JSON=1 lists up to {MAX_LISTED})", file=out)
    else:
        print("problems: none", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    return cli.run(parser, lambda args: command(args, parser), _glue_args(argv), logging=False)


def command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    extra = cli.split_args(args.args)
    parser.parse_args([a for a in extra if a.startswith("--")], namespace=args)
    overrides = [a for a in extra if not a.startswith("--")]
    as_json = args.json.strip().lower() in ("1", "true", "yes", "on")
    if args.root and not args.data:
        raise cli.UsageError("ROOT= needs DATA=<benchmark> (e.g. DATA=spot_the_diff)")
    try:
        info = inspect(args.data, args.root, overrides, args.split, args.check_images or "decode")
    except (DataError, ValueError, KeyError, OSError) as err:
        message = str(err).strip("'\"")
        if as_json:
            print(json.dumps({"error": message, "problems": [message], "pairs": None}))
        print(f"error: data cannot be read: {message}", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        if as_json:
            print(json.dumps(info, indent=1, ensure_ascii=False))
        else:
            print_text(info)
        sys.stdout.flush()
    except BrokenPipeError:  # `... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_PROBLEMS if info["problem_count"] else EXIT_OK


def inspect(data: str, root: str, overrides: list[str], split: str, check_images: str) -> dict[str, Any]:
    """The report of ``make data-info``: one per member for a mixture."""
    module = build(data, root, overrides)
    if not isinstance(module, MixtureDataModule):
        return inspect_module(module, split, check_images)
    members = {name: inspect_module(m, split, check_images) for name, m in module.members.items()}
    reports = {
        f"{name}/{s}": SplitReport(**_report(r))
        for name, m in members.items()
        for s, r in m["splits"].items()
    }
    return {**summarize({"benchmark": "mixture", "root": None}, reports), "members": members}


def _report(split_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in split_dict.items() if k in SplitReport.__dataclass_fields__}


if __name__ == "__main__":
    sys.exit(main())
