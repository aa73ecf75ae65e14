"""Evaluate a checkpoint on a benchmark split: ``make eval CKPT=<ckpt> [DATA=..] [SPLIT=test] [OUT=<dir>]``.

Writes the COCO-format ground truth and predictions (the benchmark's own ids), ``metrics.json`` and
``metrics.md`` to OUT (default: ``<run folder>/eval/<data>-<split>``). With ``ARGS="trainer.devices=2
trainer.strategy=ddp"`` it runs on several processes; every pair is scored exactly once.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from experiments.common import runner
from experiments.common.checkpoints import (
    CheckpointError,
    CheckpointNotFoundError,
    check_base_model,
    check_overrides,
    checkpoint_config,
    read_checkpoint,
)
from experiments.common.config import apply_overrides, load_config
from lightning_modules.captioner import CaptionerModule
from lightning_modules.model.llava_onevision import InitFromError

log = logging.getLogger("m3diff.eval")


def load_module(ckpt: str | Path) -> CaptionerModule:
    """Rebuild the captioner from the checkpoint alone (weights-only loading: no pickled code runs)."""
    path = Path(ckpt)
    if not path.is_file():
        raise CheckpointNotFoundError(f"CKPT={ckpt}: no such checkpoint file")
    # Read (memory-mapped) first for clear errors: refused pickled code, a damaged file, not a captioner, a base
    # model folder missing or other than the one an adapter-only checkpoint was trained on.
    checkpoint = read_checkpoint(path)
    checkpoint_config(checkpoint, path)
    check_base_model(checkpoint, path=path)
    try:
        return CaptionerModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except InitFromError as err:  # trained from a LLaVA-OneVision folder that is not there any more
        raise CheckpointError(f"{path}: cannot rebuild its model: {err}") from None


def eval_config(module: CaptionerModule, *, data: str, overrides: list[str]) -> DictConfig:
    """The checkpoint's config, with the data section replaced when DATA= is given, then ARGS applied."""
    cfg = OmegaConf.create(module.config)
    if data:
        cfg.data = load_config(groups={"data": data}).data
    return apply_overrides(cfg, overrides)


def evaluate(
    ckpt: str | Path, *, data: str = "", split: str = "test", out: str = "", overrides: list[str] = ()
):
    module = load_module(ckpt)
    cfg = eval_config(module, data=data, overrides=list(overrides))
    check_overrides(module.config, runner.to_container(cfg), path=ckpt)
    runner.apply_num_threads(cfg)
    if split not in ("val", "test"):
        raise ValueError(f"SPLIT must be 'val' or 'test', got {split!r}")
    module.config["generation"] = runner.to_container(cfg.generation)
    out_dir = Path(out) if out else Path(ckpt).resolve().parent.parent / "eval" / f"{cfg.data.name}-{split}"
    datamodule = runner.make_datamodule(cfg, module.image_spec)
    callbacks = runner.make_eval_callbacks(cfg, out_dir)
    trainer = runner.make_trainer(cfg, logger=False, callbacks=callbacks)
    run = trainer.test if split == "test" else trainer.validate
    results = run(module, datamodule=datamodule, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(f"{split}/")}
    if trainer.is_global_zero:
        print(json.dumps(metrics, indent=2, sort_keys=True))
        print(f"files written to {out_dir}")
    return metrics, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt", required=True, help="checkpoint file (CKPT=)")
    parser.add_argument("--data", default="", help="benchmark (DATA=); default: the one it was trained on")
    parser.add_argument("--root", default="", help="dataset folder, sets data.root (ROOT=)")
    parser.add_argument("--split", default="", help="val or test (SPLIT=; default test)")
    parser.add_argument("--out", default="", help="output folder (OUT=)")
    parser.add_argument("--args", default="", help="key=value overrides (ARGS=)")
    args = parser.parse_args(argv)
    if not args.ckpt:
        parser.error("CKPT=<checkpoint> is required")
    runner.configure_logging()
    root = [f"data.root={args.root}"] if args.root else []
    try:
        evaluate(
            args.ckpt,
            data=args.data,
            split=args.split or "test",
            out=args.out,
            overrides=root + shlex.split(args.args),
        )
    except runner.USER_ERRORS as err:
        print(runner.error_line(err), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
