"""Which pairs each score covers: the subsets (change categories, groups, OmniDiff-style subsets, benchmarks)
rescored beside the overall score, from the evaluated pairs' own labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def build_subsets(
    pairs: Mapping[str, Mapping[str, Any]],
    categories: Sequence[str] = (),
    groups: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, dict[str, list[str]]]:
    """The subsets to rescore: ``{"categories": {c: ids}, "groups": {g: ids}, "subsets": {s: ids},
    "benchmarks": {b: ids}}``.

    ``categories`` come from config (the DataModule's); when empty, the categories found in the records are
    used. A group holds the pairs that carry any of its categories. ``subsets`` are the pairs' own ``subset``
    labels (OmniDiff's real / render), listed when there are any. Benchmarks are listed only when the records
    hold more than one.
    """
    groups = dict(groups or {})
    if not categories:
        categories = list(dict.fromkeys(c for rec in pairs.values() for c in rec["categories"]))
    clash = set(groups) & set(categories)
    if clash:
        raise ValueError(f"data.groups names {sorted(clash)} are also category names: log keys would collide")
    by_cat: dict[str, list[str]] = {c: [] for c in categories}
    by_bench: dict[str, list[str]] = {}
    by_subset: dict[str, list[str]] = {}
    for pid, rec in pairs.items():
        for c in dict.fromkeys(rec["categories"]):
            if c in by_cat:
                by_cat[c].append(pid)
        by_bench.setdefault(rec["benchmark"], []).append(pid)
        if rec.get("subset"):
            by_subset.setdefault(rec["subset"], []).append(pid)
    clash = set(by_subset) & (set(groups) | set(categories))
    if clash:
        raise ValueError(
            f"subset names {sorted(clash)} are also category or group names: log keys would collide"
        )
    out: dict[str, dict[str, list[str]]] = {"categories": by_cat}
    if groups:
        out["groups"] = {
            g: [pid for pid, rec in pairs.items() if set(rec["categories"]) & set(members)]
            for g, members in groups.items()
        }
    if by_subset:
        out["subsets"] = dict(sorted(by_subset.items()))
    if len(by_bench) > 1:
        out["benchmarks"] = by_bench
    return out
