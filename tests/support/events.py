"""Reading a run's TensorBoard event files back: ``train/loss`` by step, the CUSTOM SCALARS layout."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


def losses(run_dir: Path) -> dict[int, float]:
    """``train/loss`` by step; where event files overlap (the killed run's and the resumed run's), the
    newest file's value wins."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    out: dict[int, float] = {}
    for path in sorted(run_dir.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == "train/loss":
                    out[event.step] = value.simple_value
    return out


def read_layout(acc: Any) -> dict[str, dict[str, list[str]]]:
    """The CUSTOM SCALARS layout of a run: {category: {chart title: [tag regex, ...]}}."""
    from tensorboard.plugins.custom_scalar.layout_pb2 import Layout

    assert "custom_scalars__config__" in acc.Tags()["tensors"], "no custom_scalars layout in the event file"
    proto = acc.Tensors("custom_scalars__config__")[-1].tensor_proto
    layout = Layout.FromString(proto.string_val[0])
    return {c.title: {chart.title: list(chart.multiline.tag) for chart in c.chart} for c in layout.category}


def unmatched_tags(layout: dict[str, dict[str, list[str]]], scalars: set[str]) -> list[str]:
    """``category / chart: regex`` for every chart line that matches no logged scalar."""
    return [
        f"{category} / {chart}: {regex}"
        for category, charts in layout.items()
        for chart, regexes in charts.items()
        for regex in regexes
        if not any(re.search(regex, tag) for tag in scalars)
    ]
