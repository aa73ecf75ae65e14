"""Caption one pair of images with a trained checkpoint, or with a released model as it is (zero-shot):

    make caption CKPT=<ckpt> BEFORE=<before.png> AFTER=<after.png> [OUT=<dir>] [FORCE=1] [ARGS="generation.num_beams=3"]
    make caption MODEL=<model folder or cached hub id> BEFORE=<before.png> AFTER=<after.png> [OUT=<dir>] [ARGS=..]

Prints the caption and writes ``caption.json`` and ``heatmap.png`` to the folder OUT (default
``caption-<before>-<after>``; new or empty: ``FORCE=1`` replaces an earlier caption output there), written whole:
before | after | after with the MDP difference heatmap overlaid, each panel upscaled to at least 256 px so a
64-px model input stays readable, titled, with the generated caption underneath. A transformers model without MDP
(MODEL= other than LLaVA-OneVision: its own processor reads the files) has no heatmap: before | after.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image, ImageDraw, ImageFont

from callbacks.panels import GAP, compose_panel
from datamodules.images import ImageTransform, load_image
from experiments.common import cli
from experiments.common.checkpoints import check_overrides, checkpoint_config, load_module, read_checkpoint
from experiments.common.config import apply_overrides
from experiments.common.outputs import OutputFolder, truthy
from experiments.common.zero_shot import checkpoint_or_model, zero_shot_parts
from lightning_modules.captioner import CaptionerModule
from lightning_modules.model.m3diff import heatmaps
from lightning_modules.transformers_captioner import TransformersCaptionerModule

PANEL_SIDE = 256  # at least this many pixels per panel in heatmap.png
MARKER = "caption.json"  # what makes a folder an output of this command (FORCE=1 replaces only such a folder)
TITLES = ("before", "after", "after + MDP difference")
USAGE = "make caption CKPT=<ckpt> | MODEL=<model folder> BEFORE=<png> AFTER=<png> [OUT=<dir>] [FORCE=1]"


def caption_pair(
    ckpt: str | Path = "",
    before: str | Path = "",
    after: str | Path = "",
    *,
    model: str | Path = "",
    overrides: list[str] = (),
) -> dict:
    """Load the checkpoint (or build ``model``'s captioner, zero-shot: ``experiments/common/zero_shot.py``),
    caption ``before`` -> ``after``; return caption, heatmap and the figure.

    Everything a user can get wrong is checked before a model is built: the checkpoint file, ``ARGS`` (applied
    to its saved config: unknown keys, bad values, model keys) and the two images.
    """
    checkpoint_or_model(str(ckpt), str(model), USAGE)
    if ckpt:
        saved = checkpoint_config(read_checkpoint(ckpt), ckpt)
        cfg = apply_overrides(OmegaConf.create(saved), list(overrides))
        check_overrides(saved, OmegaConf.to_container(cfg), path=ckpt)
    pictures = [load_image(path) for path in (before, after)]
    if ckpt:
        module = load_module(ckpt).eval()
    else:
        parts = zero_shot_parts(model, overrides=list(overrides))
        module, cfg = parts.module, parts.cfg
        if not isinstance(module, CaptionerModule):
            return transformers_caption(module, *pictures)
    generation = OmegaConf.to_container(cfg.generation)
    spec = module.image_spec
    transform = ImageTransform(size=spec.size, mean=spec.mean, std=spec.std, pipeline=spec.pipeline)
    images = [transform(picture) for picture in pictures]
    with torch.no_grad():
        sequences, visual = module.model.generate(images[0][None], images[1][None], **generation)
    heat = heatmaps(visual)
    heat = heat[0] if heat is not None else None
    caption = module.decode(sequences)[0]
    figure = caption_figure(transform.denormalize(images[0]), transform.denormalize(images[1]), heat, caption)
    return {"caption": caption, "heatmap": heat, "figure": figure}


def transformers_caption(
    module: TransformersCaptionerModule, before: Image.Image, after: Image.Image
) -> dict:
    """A transformers model's caption of two images as loaded (its processor prepares them) and the
    before | after figure (the before image shown at the after image's size)."""
    (caption,), _ = module.caption([before], [after])
    shown = [before.resize(after.size, Image.Resampling.BICUBIC), after]
    tensors = [torch.from_numpy(np.array(im, dtype=np.float32) / 255.0).permute(2, 0, 1) for im in shown]
    return {"caption": caption, "heatmap": None, "figure": caption_figure(*tensors, None, caption)}


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
    parser.add_argument(
        "--model", default="", help="a released model folder or cached hub id, run zero-shot (MODEL=)"
    )
    parser.add_argument("--before", default="", help="the 'before' image (BEFORE=)")
    parser.add_argument("--after", default="", help="the 'after' image (AFTER=)")
    parser.add_argument(
        "--out", default="", help="output folder (OUT=; default caption-<before>-<after>), new or empty"
    )
    cli.add_force_argument(parser, "an earlier caption output in OUT")
    parser.add_argument("--args", default="", help="key=value overrides, e.g. generation.num_beams=3 (ARGS=)")
    return cli.run(parser, command, argv, logging=False)


def default_out(before: str | Path, after: str | Path) -> Path:
    """``caption-<before stem>-<after stem>`` in the current folder."""
    return Path(f"caption-{Path(before).stem}-{Path(after).stem}")


def command(args: argparse.Namespace) -> None:
    checkpoint_or_model(args.ckpt, args.model, USAGE)
    cli.require(args, ("before", "after"), USAGE)
    overrides = cli.overrides(args)
    out = OutputFolder(
        args.out or default_out(args.before, args.after), force=truthy(args.force), marker=MARKER
    )
    with out:  # OUT checked before the model is loaded; written whole at the end
        result = caption_pair(args.ckpt, args.before, args.after, model=args.model, overrides=overrides)
        result["figure"].save(out.path / "heatmap.png")
        record = {"before": str(args.before), "after": str(args.after), "caption": result["caption"]}
        (out.path / MARKER).write_text(json.dumps(record, indent=2) + "\n")
    print(result["caption"])
    print(f"wrote {out.out / MARKER} and {out.out / 'heatmap.png'}")


if __name__ == "__main__":
    sys.exit(main())
