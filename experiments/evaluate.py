"""Evaluate a checkpoint, or a released model as it is (zero-shot), on a benchmark split:

    make eval CKPT=<ckpt> [DATA=..] [SPLIT=test] [OUT=<dir>] [ARGS=..]
    make eval MODEL=<HF LLaVA-OneVision folder> [DATA=..] [SPLIT=test] [OUT=<dir>] [ARGS=..]

Writes the COCO-format ground truth and predictions (the benchmark's own ids), ``metrics.json`` and
``metrics.md`` to OUT (default: ``<run folder>/eval/<data>-<split>``; for MODEL=, the run folder is
``logs/zero_shot/<backbone>``). MODEL= builds the captioner from the folder as a fine-tune would start
(``experiments/common/zero_shot.py``: MDP at the identity, no adapters) and scores it the same way. With
``ARGS="trainer.devices=2 trainer.strategy=ddp"`` it runs on several processes; every pair is scored exactly once.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from experiments.common import assembly, cli
from experiments.common.checkpoints import check_overrides, load_module
from experiments.common.config import apply_overrides, load_config, to_container
from experiments.common.trainer import make_eval_callbacks, make_trainer
from experiments.common.zero_shot import checkpoint_or_model, zero_shot_parts
from lightning_modules.captioner import CaptionerModule

log = logging.getLogger("m3diff.eval")


def eval_config(module: CaptionerModule, *, data: str, overrides: list[str]) -> DictConfig:
    """The checkpoint's config, with the data section replaced when DATA= is given, then ARGS applied."""
    cfg = OmegaConf.create(module.config)
    if data:
        cfg.data = load_config(groups={"data": data}).data
    return apply_overrides(cfg, overrides)


SPLITS = ("val", "test")
USAGE = "make eval CKPT=<checkpoint> | MODEL=<model folder> [DATA=..] [SPLIT=test] [OUT=..]"


def evaluate(
    ckpt: str | Path = "",
    *,
    model: str | Path = "",
    data: str = "",
    split: str = "test",
    out: str = "",
    overrides: list[str] = (),
):
    """Score ``ckpt`` (a trained checkpoint) or ``model`` (a released model folder, zero-shot) on DATA's split."""
    checkpoint_or_model(str(ckpt), str(model), USAGE)
    if split not in SPLITS:
        raise cli.UsageError(f"SPLIT must be one of {list(SPLITS)}, got {split!r}")
    if ckpt:
        module, cfg, datamodule = _from_checkpoint(ckpt, data=data, overrides=list(overrides))
        run_dir = Path(ckpt).resolve().parent.parent
    else:
        parts = zero_shot_parts(model, data=data, overrides=list(overrides))
        module, cfg, datamodule = parts.module, parts.cfg, parts.datamodule
        run_dir = Path(cfg.logs_dir) / assembly.run_name(cfg)
    out_dir = Path(out) if out else run_dir / "eval" / f"{cfg.data.name}-{split}"
    trainer = make_trainer(cfg, logger=False, callbacks=make_eval_callbacks(cfg, out_dir))
    run = trainer.test if split == "test" else trainer.validate
    results = run(module, datamodule=datamodule, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(f"{split}/")}
    if trainer.is_global_zero:
        print(json.dumps(metrics, indent=2, sort_keys=True))
        print(f"files written to {out_dir}")
    return metrics, results


def _from_checkpoint(ckpt: str | Path, *, data: str, overrides: list[str]):
    """The checkpoint's captioner, its config with DATA= / ARGS= applied (no model-defining key), its DataModule."""
    module = load_module(ckpt)
    cfg = eval_config(module, data=data, overrides=overrides)
    check_overrides(module.config, to_container(cfg), path=ckpt)
    assembly.apply_num_threads(cfg)
    module.config["generation"] = to_container(cfg.generation)
    return module, cfg, assembly.make_datamodule(cfg, module.image_spec)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--ckpt", default="", help="checkpoint file (CKPT=)")
    parser.add_argument("--model", default="", help="a released model folder, evaluated zero-shot (MODEL=)")
    parser.add_argument(
        "--data", default="", help="benchmark (DATA=); default: the one it was trained on (MODEL=: synthetic)"
    )
    parser.add_argument("--split", default="", help="val or test (SPLIT=; default test)")
    parser.add_argument("--out", default="", help="output folder (OUT=)")
    cli.add_config_arguments(parser, groups=False)
    return cli.run(parser, command, argv)


def command(args: argparse.Namespace) -> None:
    evaluate(
        args.ckpt,
        model=args.model,
        data=args.data,
        split=args.split or "test",
        out=args.out,
        overrides=cli.overrides(args),
    )


if __name__ == "__main__":
    sys.exit(main())
