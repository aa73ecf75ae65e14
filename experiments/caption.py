"""Caption one pair of images with a trained checkpoint, or with a released model as it is (zero-shot):

    make caption CKPT=<ckpt> BEFORE=<before.png> AFTER=<after.png> [OUT=<dir>] [ARGS="generation.num_beams=3"]
    make caption MODEL=<HF LLaVA-OneVision folder> BEFORE=<before.png> AFTER=<after.png> [OUT=<dir>] [ARGS=..]

Prints the caption and writes ``caption.json`` and ``heatmap.png`` to OUT (default: the current folder):
before | after | after with the MDP difference heatmap overlaid, each panel upscaled to at least 256 px so a
64-px model input stays readable, titled, with the generated caption underneath.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image, ImageDraw, ImageFont

from callbacks.panels import GAP, compose_panel
from datamodules.images import ImageTransform, load_image
from experiments.common import cli
from experiments.common.checkpoints import check_overrides, load_module
from experiments.common.config import apply_overrides
from experiments.common.zero_shot import checkpoint_or_model, zero_shot_parts
from lightning_modules.model.m3diff import heatmaps

PANEL_SIDE = 256  # at least this many pixels per panel in heatmap.png
TITLES = ("before", "after", "after + MDP difference")
USAGE = "make caption CKPT=<ckpt> | MODEL=<model folder> BEFORE=<png> AFTER=<png> [OUT=<dir>]"


def caption_pair(
    ckpt: str | Path = "",
    before: str | Path = "",
    after: str | Path = "",
    *,
    model: str | Path = "",
    overrides: list[str] = (),
) -> dict:
    """Load the checkpoint (or build ``model``'s captioner, zero-shot: ``experiments/common/zero_shot.py``),
    caption ``before`` -> ``after``; return caption, heatmap and the figure."""
    checkpoint_or_model(str(ckpt), str(model), USAGE)
    if ckpt:
        module = load_module(ckpt).eval()
        cfg = apply_overrides(OmegaConf.create(module.config), list(overrides))
        check_overrides(module.config, OmegaConf.to_container(cfg), path=ckpt)
    else:
        parts = zero_shot_parts(model, overrides=list(overrides))
        module, cfg = parts.module, parts.cfg
    generation = OmegaConf.to_container(cfg.generation)
    spec = module.image_spec
    transform = ImageTransform(size=spec.size, mean=spec.mean, std=spec.std, pipeline=spec.pipeline)
    images = [transform(load_image(path)) for path in (before, after)]
    with torch.no_grad():
        sequences, visual = module.model.generate(images[0][None], images[1][None], **generation)
    heat = heatmaps(visual)
    heat = heat[0] if heat is not None else None
    caption = module.decode(sequences)[0]
    figure = caption_figure(transform.denormalize(images[0]), transform.denormalize(images[1]), heat, caption)
    return {"caption": caption, "heatmap": heat, "figure": figure}


def caption_figure(
    before: torch.Tensor,
    after: torch.Tensor,
    heatmap: torch.Tensor | None,
    caption: str,
    *,
    side: int = PANEL_SIDE,
) -> Image.Image:
    """``heatmap.png``: the panels of :func:`~callbacks.panels.compose_panel` upscaled so the shorter side
    is at least ``side`` px, a title above each and ``caption`` word-wrapped under them.

    ``before`` / ``after``: denormalised ``(3, H, W)`` in [0, 1]; ``heatmap``: ``(h, w)`` in [0, 1] or None.
    """
    height, width = after.shape[-2:]
    scale = max(1.0, side / min(height, width))
    size = (round(height * scale), round(width * scale))
    # Bicubic for the photographs; the heatmap is upsampled (bilinearly) to the same size by compose_panel.
    up = lambda t: F.interpolate(t[None].float(), size=size, mode="bicubic", align_corners=False)[0]  # noqa: E731
    panel = compose_panel(up(before).clamp(0, 1), up(after).clamp(0, 1), heatmap)
    array = (panel.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    image = Image.fromarray(array)

    font_px = max(14, size[0] // 14)
    font = ImageFont.load_default(size=font_px)  # Pillow's own font: nothing to install
    margin, line = font_px // 2, round(font_px * 1.3)
    lines = wrap_text(caption or "(empty caption)", font, image.width - 2 * margin)
    out = Image.new("RGB", (image.width, line + margin + image.height + margin + line * len(lines)), "white")
    out.paste(image, (0, line + margin))
    draw = ImageDraw.Draw(out)
    for i, title in enumerate(TITLES[: 3 if heatmap is not None else 2]):
        x = i * (size[1] + GAP) + (size[1] - font.getlength(title)) / 2
        draw.text((x, margin // 2), title, fill="dimgray", font=font)
    top = line + margin + image.height + margin
    for i, text in enumerate(lines):
        draw.text((margin, top + i * line), text, fill="black", font=font)
    return out


def wrap_text(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: float) -> list[str]:
    """Greedy word wrap to ``width`` pixels in ``font`` (a word longer than a line gets a line of its own)."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--ckpt", default="", help="checkpoint (CKPT=)")
    parser.add_argument("--model", default="", help="a released model folder, run zero-shot (MODEL=)")
    parser.add_argument("--before", default="", help="the 'before' image (BEFORE=)")
    parser.add_argument("--after", default="", help="the 'after' image (AFTER=)")
    parser.add_argument("--out", default="", help="output folder (OUT=; default: current folder)")
    parser.add_argument("--args", default="", help="key=value overrides, e.g. generation.num_beams=3 (ARGS=)")
    return cli.run(parser, command, argv, logging=False)


def command(args: argparse.Namespace) -> None:
    checkpoint_or_model(args.ckpt, args.model, USAGE)
    cli.require(args, ("before", "after"), USAGE)
    result = caption_pair(args.ckpt, args.before, args.after, model=args.model, overrides=cli.overrides(args))
    out = Path(args.out or ".")
    out.mkdir(parents=True, exist_ok=True)
    result["figure"].save(out / "heatmap.png")
    record = {"before": str(args.before), "after": str(args.after), "caption": result["caption"]}
    (out / "caption.json").write_text(json.dumps(record, indent=2) + "\n")
    print(result["caption"])
    print(f"wrote {out / 'caption.json'} and {out / 'heatmap.png'}")


if __name__ == "__main__":
    sys.exit(main())
