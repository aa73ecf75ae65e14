"""Pretrain the default tiny SigLIP on the embedded benchmark's scenes: ``make pretrain [ARGS="k=v .."]``.

Writes the open_clip model's weights (float16 safetensors, what ``backbone.pretrained=<file>`` loads) to
``out`` — by default the file the default backbone (``conf/backbone/siglip.yaml``) starts from — and the
TensorBoard run (``train/loss``, zero-shot retrieval ``val/i2t_R@1`` / ``val/t2i_R@1`` over held-out scenes)
to ``logs/pretrain/version_N``.

Why a committed file instead of pretraining on first use: pretraining takes longer than the default run's
whole budget, and a file loads in milliseconds. The run is deterministic on CPU (fixed seed, thread count
and data), so this command regenerates the committed file bit for bit on the same torch build
(``sha256sum`` to check); other thread counts or builds give another, equally good, file.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import OmegaConf
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from callbacks.progress import progress_bar
from datamodules.config import merge_checked
from datamodules.images import ImageTransform
from datamodules.synthetic.scene_text import SceneTexts
from experiments.common import cli
from experiments.common.config import REPO_ROOT, parse_overrides
from lightning_modules.scene_pretrainer import ScenePretrainer

log = logging.getLogger("m3diff.pretrain")
DEFAULT_OUT = "experiments/weights/siglip-tiny-scenes.safetensors"


@dataclass
class PretrainConfig:
    out: str = DEFAULT_OUT  # the weights file written (relative paths: from the repository root)
    logs_dir: str = "logs"
    seed: int = 0
    max_steps: int = 800
    batch_size: int = 64
    lr: float = 1.0e-3
    weight_decay: float = 0.05
    warmup_steps: int = 80
    image_size: int = 128
    noise: float = 3.0  # as the pair benchmark's data.noise / data.jitter
    jitter: float = 0.04
    min_objects: int = 3
    max_objects: int = 6
    val_scenes: int = 512  # held-out scenes for zero-shot retrieval
    val_every: int = 200  # steps between retrieval checks
    num_threads: int = 2  # fixed: the result is bit-identical only for one thread count
    num_workers: int = 1  # scene rendering in a worker process (the data do not depend on it)


def load(args: list[str]) -> PretrainConfig:
    """``ARGS`` on :class:`PretrainConfig`, checked like every config of the kit (unknown keys, types)."""
    cfg = OmegaConf.structured(PretrainConfig)
    OmegaConf.set_struct(cfg, True)
    merge_checked(cfg, parse_overrides(args), source="ARGS")
    return OmegaConf.to_object(cfg)


def loaders(cfg: PretrainConfig) -> tuple[DataLoader, DataLoader]:
    transform = ImageTransform(size=cfg.image_size)  # SigLIP's mean/std 0.5: the default backbone's
    common = dict(
        transform=transform,
        seed=cfg.seed,
        noise=cfg.noise,
        jitter=cfg.jitter,
        objects=(cfg.min_objects, cfg.max_objects),
    )
    train = SceneTexts(split="train", size=cfg.max_steps * cfg.batch_size, **common)
    val = SceneTexts(split="val", size=cfg.val_scenes, **common)
    # Scene i of the train split is step i // batch_size's: no shuffling needed, every scene is new.
    kwargs = dict(
        batch_size=cfg.batch_size, num_workers=cfg.num_workers, persistent_workers=cfg.num_workers > 0
    )
    return DataLoader(train, shuffle=False, **kwargs), DataLoader(val, shuffle=False, **kwargs)


def save_weights(module: ScenePretrainer, out: Path) -> str:
    """The open_clip model's state dict as float16 safetensors (half the size; the kit loads it into fp32)."""
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in module.model.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})
    tmp.replace(out)
    return hashlib.sha256(out.read_bytes()).hexdigest()


def pretrain(cfg: PretrainConfig) -> tuple[Path, str]:
    torch.set_num_threads(cfg.num_threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = ScenePretrainer(
        image_size=cfg.image_size,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_steps,
        max_steps=cfg.max_steps,
    )
    train, val = loaders(cfg)
    trainer = L.Trainer(
        accelerator="cpu",
        precision="32-true",
        max_steps=cfg.max_steps,
        val_check_interval=cfg.val_every,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        gradient_clip_val=1.0,
        deterministic=True,
        logger=TensorBoardLogger(cfg.logs_dir, name="pretrain", default_hp_metric=False),
        enable_checkpointing=False,
        enable_model_summary=False,
        log_every_n_steps=min(10, cfg.max_steps),
        callbacks=[progress_bar(every_n_steps=50)],
    )
    trainer.fit(module, train, val)
    metrics = {k: round(float(v), 4) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    log.info("held-out retrieval: %s", metrics)
    out = Path(cfg.out) if Path(cfg.out).is_absolute() else REPO_ROOT / cfg.out
    return out, save_weights(module, out)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--args", default="", help='key=value overrides, e.g. "max_steps=200 out=/tmp/w.safetensors"'
    )
    return cli.run(parser, command, argv)


def command(args: argparse.Namespace) -> None:
    out, digest = pretrain(load(cli.split_args(args.args)))
    log.info("wrote %s (sha256 %s); use it with backbone.pretrained=%s", out, digest, out)


if __name__ == "__main__":
    sys.exit(main())
