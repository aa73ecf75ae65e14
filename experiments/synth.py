"""Export the embedded benchmark to disk, draw a contact sheet, or measure the generator's speed.

    make synth OUT=<dir> N=<count> [SPLIT=val] [FORCE=1] [ARGS="data.caption_style=long ..."]
    python -m experiments.synth --out <dir> --n <count> [--split train,val] [--force]
    python -m experiments.synth --bench [--seconds 5]

The export writes ``<OUT>/images/<split>_<index>_{before,after}.png``, ``<OUT>/annotations.json`` in the kit's
"bring your own pairs" format (a JSON list of ``{"id", "before", "after", "captions", "categories", "split"}``,
paths relative to OUT; ``DATA=pairs ROOT=<OUT>`` reads it back) and ``<OUT>/contact_sheet.png`` (one pair per
category with its label and first reference). OUT must be new or empty; ``FORCE=1`` (``--force``) replaces an
earlier export there. The files are written into a temporary folder beside OUT, renamed to OUT at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from datamodules.synthetic.datamodule import SyntheticDataModule
from datamodules.synthetic.throughput import generator_throughput
from experiments.common import assembly, cli
from experiments.common.config import ConfigError, load_config
from experiments.common.outputs import OutputFolder, truthy

MARKER = (
    "annotations.json"  # what makes a folder an export of this command (FORCE=1 replaces only such a folder)
)
DEFAULT_N = 100
DEFAULT_SPLIT = "val"


def make_datamodule(overrides: Sequence[str] = ()) -> SyntheticDataModule:
    """The embedded benchmark's DataModule from the composed config (rendering at ``backbone.image_size``)."""
    cfg = load_config(overrides=list(overrides))
    if cfg.data.name != "synthetic":
        raise ConfigError(
            f"synth exports the embedded benchmark (data.name=synthetic), not {cfg.data.name!r}"
        )
    return assembly.make_datamodule(cfg)


# ---------------------------------------------------------------------------------------------- export
def export(
    dm: SyntheticDataModule, out: str | Path, n: int, splits: Sequence[str], *, force: bool = False
) -> tuple[list[dict], int]:
    """Write ``n`` pairs of each split as PNGs + ``annotations.json`` + ``contact_sheet.png`` into ``out``;
    returns the records and how many pairs have pixel-identical images. ``out`` must be new or empty, or with
    ``force`` an earlier export (replaced); it is written whole (:class:`~experiments.common.outputs.OutputFolder`)."""
    for split in splits:
        if split not in dm.sizes:
            raise cli.UsageError(f"unknown split {split!r}; choose from {list(dm.sizes)}")
        if n > dm.sizes[split]:
            raise cli.UsageError(
                f"N={n} is more than the {split} split's {dm.sizes[split]} pairs (data.{split}_size)"
            )
    with OutputFolder(out, force=force, marker=MARKER) as folder:
        records, identical = write_pairs(dm, folder.path, n, splits)
    return records, identical


def write_pairs(dm: SyntheticDataModule, out: Path, n: int, splits: Sequence[str]) -> tuple[list[dict], int]:
    """The files of :func:`export`, into the empty folder ``out``."""
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
    order = [*dm.categories, dm.generator.no_change_label or ""]
    contact_sheet(pick_one_per_category(tiles, order), out / "contact_sheet.png")
    (out / MARKER).write_text(json.dumps(records, indent=1))
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
    font, bold = ImageFont.load_default(size=11), ImageFont.load_default(size=12)
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__.split("\n\n")[0], prog="python -m experiments.synth")
    parser.add_argument("--out", default="", help="output folder (OUT=)")
    parser.add_argument("--n", default="", help=f"pairs per split (N=, default {DEFAULT_N})")
    parser.add_argument(
        "--split", default="", help=f"split(s), comma-separated (SPLIT=, default {DEFAULT_SPLIT})"
    )
    parser.add_argument("--args", default="", help='config overrides "key=value ..." (ARGS=)')
    cli.add_force_argument(parser, "an earlier export in OUT")
    parser.add_argument(
        "--bench", action="store_true", help="measure the generator's pairs/s instead of exporting"
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="--bench: measuring time")
    return cli.run(parser, command, argv, logging=False)


def command(ns: argparse.Namespace) -> None:
    dm = make_datamodule(cli.overrides(ns))
    if ns.bench:
        print_rates(dm, generator_throughput(dm, ns.seconds))
        return
    cli.require(ns, ("out",), "make synth OUT=<dir> [N=100] [SPLIT=val] [FORCE=1]")
    try:
        n = int(ns.n) if ns.n else DEFAULT_N
    except ValueError:
        raise cli.UsageError(f"N must be a whole number, got {ns.n!r}") from None
    if n < 1:
        raise cli.UsageError(f"N must be at least 1, got {n}")
    splits = [s.strip() for s in (ns.split or DEFAULT_SPLIT).split(",") if s.strip()]
    records, identical = export(dm, ns.out, n, splits, force=truthy(ns.force))
    counts = Counter(c for r in records for c in (r["categories"] or ["(none)"]))
    print(f"wrote {len(records)} pairs to {ns.out}: annotations.json, images/, contact_sheet.png")
    print("  " + ", ".join(f"{c}: {k}" for c, k in sorted(counts.items())))
    # With data.noise and data.jitter at 0, a no-change pair is two copies of one rendering.
    print(f"  pixel-identical pairs (before == after): {identical} of {len(records)}")
    print(
        f'  read it back with: make data-info DATA=pairs ROOT={ns.out} ARGS="data.annotations=annotations.json"'
    )


def print_rates(dm: SyntheticDataModule, rates: dict[str, float]) -> None:
    side = int(rates["image_size"])
    print(f"embedded benchmark generator, one process, {side}x{side} px, style={dm.generator.caption_style}:")
    for key, what in (("pairs", "generate + render + preprocess, like a DataLoader worker"),
                      ("captions_only_pairs", "captions only, no images")):  # fmt: skip
        print(f"  {rates[key + '_per_cpu_s']:7.0f} pairs per CPU-second  "
              f"({rates[key + '_per_s']:.0f}/s wall-clock)  {what}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
