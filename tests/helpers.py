"""Shared test helpers: the tiny model every end-to-end test trains, distinct free ports for DDP runs, and a
run's CUSTOM SCALARS layout read back from its event file."""

from __future__ import annotations

import re
import socket
from typing import Any

# A model that builds and trains in seconds on CPU; each test adds the data / trainer keys it needs
# (a later override of the same key wins).
TINY_MODEL = [
    "backbone.image_size=32",
    "model.lm.num_layers=1",
    "model.lm.hidden_size=64",
    "model.lm.num_heads=2",
    "model.lm.vocab_size=128",
    "mdp.num_heads=2",
]

_handed_out: set[int] = set()


def free_port() -> int:
    """A port that is free now and was not returned before in this test session.

    Lightning picks a free port itself when ``MASTER_PORT`` is unset, but two DDP runs started at the same
    moment (the kill-and-resume test starts an uninterrupted and a to-be-killed run together) can be handed
    the same one, and the second then fails with EADDRINUSE. Tests set ``MASTER_PORT`` from here instead.
    """
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


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
