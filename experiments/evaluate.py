"""Evaluate a checkpoint, or a released model as it is (zero-shot), on a benchmark split:

    make eval CKPT=<ckpt> [DATA=..] [SPLIT=test] [OUT=<dir>] [ARGS=..]
    make eval MODEL=<model folder or cached hub id> [DATA=..] [SPLIT=test] [OUT=<dir>] [ARGS=..]

Writes the COCO-format ground truth and predictions (the benchmark's own ids), ``metrics.json`` and
``metrics.md`` to OUT (default: ``<run folder>/eval/<data>-<split>``; for MODEL=, the run folder is
``logs/zero_shot/<backbone>``). MODEL= builds the captioner from the folder as a fine-tune would start
(``experiments/common/zero_shot.py``: MDP at the identity, no adapters) for LLaVA-OneVision, and through
transformers' own processor, chat template and ``generate`` for any other image-text-to-text model whose processor
takes two images in one prompt (Qwen2-VL, Qwen2.5-VL, Idefics3 / SmolVLM, ...), and scores it the same way. With
``ARGS="trainer.devices=2 trainer.strategy=ddp"`` it runs on several processes; every pair is scored exactly once.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.common import assembly, cli, runs
from experiments.common.checkpoints import check_overrides, checkpoint_config, load_module, read_checkpoint
from experiments.common.config import apply_overrides, load_config, to_container
from experiments.common.outputs import check_writable_folder
from experiments.common.trainer import make_eval_callbacks, make_trainer
from experiments.common.zero_shot import checkpoint_or_model, zero_shot_parts

log = logging.getLogger("m3diff.eval")


def eval_config(saved: dict[str, Any], *, data: str, overrides: list[str]) -> DictConfig:
    """The checkpoint's config, with the data section replaced when DATA= is given, then ARGS applied."""
    cfg = OmegaConf.create(saved)
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
    """Score ``ckpt`` (a trained checkpoint) or ``model`` (a released model folder, zero-shot) on DATA's split.

    Everything a user can get wrong is checked before a model is built: SPLIT, the checkpoint file, DATA / ARGS
    (applied to its saved config) and OUT (a folder that can be written)."""
    checkpoint_or_model(str(ckpt), str(model), USAGE)
    if split not in SPLITS:
        raise cli.UsageError(f"SPLIT must be one of {list(SPLITS)}, got {split!r}")
    if out:
        check_writable_folder(Path(out))
    if ckpt:
        saved = checkpoint_config(read_checkpoint(ckpt), ckpt)
        cfg = eval_config(saved, data=data, overrides=list(overrides))
        check_overrides(saved, to_container(cfg), path=ckpt)
        run_dir = Path(ckpt).resolve().parent.parent
        if not out:
            check_writable_folder(run_dir / "eval" / f"{cfg.data.name}-{split}")
        module, datamodule = _from_checkpoint(ckpt, cfg)
    else:
        parts = zero_shot_parts(model, data=data, overrides=list(overrides))
        module, cfg, datamodule = parts.module, parts.cfg, parts.datamodule
        run_dir = runs.run_base(cfg)
    out_dir = Path(out) if out else run_dir / "eval" / f"{cfg.data.name}-{split}"
    trainer = make_trainer(cfg, logger=False, callbacks=make_eval_callbacks(cfg, out_dir))
    run = trainer.test if split == "test" else trainer.validate
    results = run(module, datamodule=datamodule, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(f"{split}/")}
    if trainer.is_global_zero:
        print(json.dumps(metrics, indent=2, sort_keys=True))
        print(f"files written to {out_dir}")
    return metrics, results


def _from_checkpoint(ckpt: str | Path, cfg: DictConfig):
    """The checkpoint's captioner, generating as ``cfg`` (its config with DATA= / ARGS= applied) says, and the
    DataModule of ``cfg``."""
    module = load_module(ckpt)
    assembly.apply_num_threads(cfg)
    module.config["generation"] = to_container(cfg.generation)
    return module, assembly.make_datamodule(cfg, module.image_spec)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--ckpt", default="", help="checkpoint file (CKPT=)")
    parser.add_argument(
        "--model", default="", help="a released model folder or cached hub id, evaluated zero-shot (MODEL=)"
    )
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
