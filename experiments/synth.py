"""Export the embedded benchmark to disk, draw a contact sheet, or measure the generator's speed.

    make synth OUT=<dir> N=<count> [SPLIT=val] [ARGS="data.caption_style=long ..."]
    python -m experiments.synth --out <dir> --n <count> [--split train,val] [--force]
    python -m experiments.synth --bench [--seconds 5]

The export writes ``<OUT>/images/<split>_<index>_{before,after}.png``, ``<OUT>/annotations.json`` in the kit's
"bring your own pairs" format (a JSON list of ``{"id", "before", "after", "captions", "categories", "split"}``,
paths relative to OUT; ``DATA=pairs ROOT=<OUT>`` reads it back) and ``<OUT>/contact_sheet.png`` (one pair per
category with its label and first reference). It refuses a non-empty OUT unless ``--force`` (which overwrites
the files it writes and leaves every other file alone).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from datamodules import build_datamodule
from datamodules.synthetic.datamodule import SyntheticDataModule
from datamodules.synthetic.render import _font
from experiments.common.config import ConfigError, load_config, to_container

DEFAULT_N = 100
DEFAULT_SPLIT = "val"


def make_datamodule(overrides: Sequence[str] = ()) -> SyntheticDataModule:
    """The embedded benchmark's DataModule from the composed config (rendering at ``backbone.image_size``)."""
    cfg = load_config(overrides=list(overrides))
    if cfg.data.name != "synthetic":
        raise ConfigError(
            f"synth exports the embedded benchmark (data.name=synthetic), not {cfg.data.name!r}"
        )
    return build_datamodule(
        to_container(cfg.data),
        image_size=int(cfg.backbone.image_size),
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        seed=int(cfg.seed),
    )


# ---------------------------------------------------------------------------------------------- export
def export(
    dm: SyntheticDataModule, out: str | Path, n: int, splits: Sequence[str], *, force: bool = False
) -> tuple[list[dict], int]:
    """Write ``n`` pairs of each split as PNGs + ``annotations.json`` + ``contact_sheet.png`` into ``out``;
    returns the records and how many pairs have pixel-identical images."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise FileExistsError(
            f"{out} exists and is not empty; choose another OUT or pass --force to overwrite"
        )
    for split in splits:
        if split not in dm.sizes:
            raise ValueError(f"unknown split {split!r}; choose from {list(dm.sizes)}")
        if n > dm.sizes[split]:
            raise ValueError(
                f"N={n} is more than the {split} split's {dm.sizes[split]} pairs (data.{split}_size)"
            )
    (out / "images").mkdir(parents=True, exist_ok=True)
    records, tiles, identical = [], [], 0
    for split in splits:
        dataset = dm.dataset(split)
        for index in range(n):
            spec, before, after = dataset.images(index)
            stem = f"images/{split}_{index:06d}"
            before.save(out / f"{stem}_before.png")
            after.save(out / f"{stem}_after.png")
            records.append(
                {
                    "id": spec.pair_id,
                    "before": f"{stem}_before.png",
                    "after": f"{stem}_after.png",
                    "captions": list(spec.captions),
                    "categories": list(spec.categories),
                    "split": split,
                }
            )
            tiles.append((before, after, spec.categories, spec.captions[0]))
            identical += before.tobytes() == after.tobytes()
    tmp = out / ".annotations.json.tmp"
    tmp.write_text(json.dumps(records, indent=1))
    os.replace(tmp, out / "annotations.json")  # never a half-written annotation file
    order = [*dm.categories, dm.generator.no_change_label or ""]
    contact_sheet(pick_one_per_category(tiles, order), out / "contact_sheet.png")
    return records, identical


def pick_one_per_category(tiles: list, order: Sequence[str]) -> list:
    """The first tile of each category, in ``order`` (pairs without a category count as ``""``)."""
    first: dict[str, tuple] = {}
    for tile in tiles:
        key = tile[2][0] if tile[2] else ""
        first.setdefault(key, tile)
    return [first[c] for c in order if c in first]


def contact_sheet(tiles: Sequence[tuple], path: str | Path, columns: int = 4) -> Image.Image:
    """A grid of (before | after) pairs, each with its categories and one caption below it."""
    if not tiles:
        raise ValueError("contact sheet: no pairs")
    side = tiles[0][0].width
    font, bold = _font(11), _font(12)
    text_h, pad = 62, 6
    tile_w, tile_h = 2 * side + 3, side + text_h
    rows = (len(tiles) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * (tile_w + pad) + pad, rows * (tile_h + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k, (before, after, categories, caption) in enumerate(tiles):
        x = pad + (k % columns) * (tile_w + pad)
        y = pad + (k // columns) * (tile_h + pad)
        sheet.paste(before, (x, y))
        sheet.paste(after, (x + side + 3, y))
        draw.text((x, y + side + 2), " + ".join(categories) or "(no change)", font=bold, fill=(170, 20, 20))
        lines = textwrap.wrap(caption, width=2 * side // 6)[:3]
        for j, line in enumerate(lines):
            draw.text((x, y + side + 17 + 14 * j), line, font=font, fill=(20, 20, 20))
    sheet.save(path, optimize=True)
    return sheet


# ---------------------------------------------------------------------------------------------- speed
def benchmark(dm: SyntheticDataModule, seconds: float = 5.0, split: str = "train") -> dict[str, float]:
    """Pairs per second in one process: full samples (generate + render + preprocess to tensors, as a
    DataLoader worker does it: one torch thread) and captions only (no rendering).

    ``*_per_s`` divide by wall-clock time; ``*_per_cpu_s`` by this process's CPU time, which is what one
    worker delivers on an idle core (on a busy shared machine the wall-clock rate is lower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what every DataLoader worker runs with
    try:
        dataset = dm.dataset(split)
        rates = {}
        for name, fn in (("pairs", dataset.__getitem__), ("captions_only_pairs", dataset.spec)):
            fn(0)  # warm up (font, caches)
            count, start, cpu = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - start < seconds / 2:
                fn(count % len(dataset))
                count += 1
            rates[f"{name}_per_s"] = count / (time.perf_counter() - start)
            rates[f"{name}_per_cpu_s"] = count / max(1e-9, time.process_time() - cpu)
    finally:
        torch.set_num_threads(threads)
    rates["image_size"] = float(dm.transform.size)
    return rates


# ---------------------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.synth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="", help="output folder (OUT=)")
    parser.add_argument("--n", default="", help=f"pairs per split (N=, default {DEFAULT_N})")
    parser.add_argument(
        "--split", default="", help=f"split(s), comma-separated (SPLIT=, default {DEFAULT_SPLIT})"
    )
    parser.add_argument("--args", default="", help='config overrides "key=value ..." (ARGS=)')
    parser.add_argument(
        "--force", action="store_true", help="write into a non-empty OUT (overwrites its own files)"
    )
    parser.add_argument(
        "--bench", action="store_true", help="measure the generator's pairs/s instead of exporting"
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="--bench: measuring time")
    ns = parser.parse_args(argv)
    try:
        dm = make_datamodule(shlex.split(ns.args))
        if ns.bench:
            rates = benchmark(dm, ns.seconds)
            side = int(rates["image_size"])
            print(
                f"embedded benchmark generator, one process, {side}x{side} px, style={dm.generator.caption_style}:"
            )
            for key, what in (("pairs", "generate + render + preprocess, like a DataLoader worker"),
                              ("captions_only_pairs", "captions only, no images")):  # fmt: skip
                print(f"  {rates[key + '_per_cpu_s']:7.0f} pairs per CPU-second  "
                      f"({rates[key + '_per_s']:.0f}/s wall-clock)  {what}")  # fmt: skip
            return 0
        if not ns.out:
            parser.error("--out (OUT=) is required")
        n = int(ns.n) if ns.n else DEFAULT_N
        splits = [s.strip() for s in (ns.split or DEFAULT_SPLIT).split(",") if s.strip()]
        records, identical = export(dm, ns.out, n, splits, force=ns.force)
    except (ConfigError, FileExistsError, ValueError) as err:
        print(f"python -m experiments.synth: error: {err}", file=sys.stderr)
        return 2
    counts = Counter(c for r in records for c in (r["categories"] or ["(none)"]))
    print(f"wrote {len(records)} pairs to {ns.out}: annotations.json, images/, contact_sheet.png")
    print("  " + ", ".join(f"{c}: {k}" for c, k in sorted(counts.items())))
    # With data.noise and data.jitter at 0, a no-change pair is two copies of one rendering.
    print(f"  pixel-identical pairs (before == after): {identical} of {len(records)}")
    print(
        f'  read it back with: make data-info DATA=pairs ROOT={ns.out} ARGS="data.annotations=annotations.json"'
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
