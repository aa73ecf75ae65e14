"""Caption one pair of images with a trained checkpoint:

    make caption CKPT=<ckpt> BEFORE=<before.png> AFTER=<after.png> [OUT=<dir>] [ARGS="generation.num_beams=3"]

Prints the caption and writes ``caption.json`` and ``heatmap.png`` (before | after | after with the MDP
difference heatmap overlaid) to OUT (default: the current folder).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf
from PIL import Image

from callbacks.panels import compose_panel
from datamodules.images import ImageLoadError, ImageTransform, load_image
from experiments.common.checkpoints import CheckpointError, check_overrides
from experiments.common.config import apply_overrides
from experiments.evaluate import load_module
from lightning_modules.model.m3diff import heatmaps


def caption_pair(
    ckpt: str | Path, before: str | Path, after: str | Path, *, overrides: list[str] = ()
) -> dict:
    """Load the checkpoint, caption ``before`` -> ``after``; return caption, heatmap and the panel image."""
    module = load_module(ckpt).eval()
    cfg = apply_overrides(OmegaConf.create(module.config), list(overrides))
    check_overrides(module.config, OmegaConf.to_container(cfg), path=ckpt)
    generation = OmegaConf.to_container(cfg.generation)
    spec = module.image_spec
    transform = ImageTransform(size=spec.size, mean=spec.mean, std=spec.std)
    images = [transform(load_image(path)) for path in (before, after)]
    with torch.no_grad():
        sequences, visual = module.model.generate(images[0][None], images[1][None], **generation)
    heat = heatmaps(visual)
    heat = heat[0] if heat is not None else None
    panel = compose_panel(transform.denormalize(images[0]), transform.denormalize(images[1]), heat)
    return {"caption": module.decode(sequences)[0], "heatmap": heat, "panel": panel}


def save_panel(panel: torch.Tensor, path: Path) -> None:
    array = (panel.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(array).save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt", default="", help="checkpoint (CKPT=)")
    parser.add_argument("--before", default="", help="the 'before' image (BEFORE=)")
    parser.add_argument("--after", default="", help="the 'after' image (AFTER=)")
    parser.add_argument("--out", default="", help="output folder (OUT=; default: current folder)")
    parser.add_argument("--args", default="", help="key=value overrides, e.g. generation.num_beams=3 (ARGS=)")
    args = parser.parse_args(argv)
    missing = [name.upper() for name in ("ckpt", "before", "after") if not getattr(args, name)]
    if missing:
        parser.error(f"{', '.join(missing)} required: make caption CKPT=<ckpt> BEFORE=<png> AFTER=<png>")
    try:
        result = caption_pair(args.ckpt, args.before, args.after, overrides=shlex.split(args.args))
    except (FileNotFoundError, ImageLoadError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out or ".")
    out.mkdir(parents=True, exist_ok=True)
    save_panel(result["panel"], out / "heatmap.png")
    record = {"before": str(args.before), "after": str(args.after), "caption": result["caption"]}
    (out / "caption.json").write_text(json.dumps(record, indent=2) + "\n")
    print(result["caption"])
    print(f"wrote {out / 'caption.json'} and {out / 'heatmap.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
