"""Train an M³Diff captioner: ``make train [BACKBONE=..] [DATA=..] [EXP=..] [RESUME=last] [ARGS="k=v .."]``.

Logs go to ``logs/<experiment>/<backbone>/version_N`` (TensorBoard), with the resolved config, the caption
tokenizer and the checkpoints (``checkpoints/best-*.ckpt`` by validation CIDEr, ``checkpoints/last.ckpt``).
``RESUME=last`` continues the newest run of this experiment, backbone and data in its own folder; a checkpoint
of another run is refused (:mod:`experiments.common.runs`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import warnings
from functools import partial
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from callbacks.safety import NonFiniteError, TrainingStopped
from datamodules.base import PairDataModule
from evaluation import HEADLINE_METRICS
from experiments.common import assembly, cli, runs
from experiments.common.checkpoint_io import remove_partial_saves
from experiments.common.checkpoints import (
    CheckpointError,
    check_base_model,
    checkpoint_config,
    read_checkpoint,
)
from experiments.common.config import save_config, to_container
from experiments.common.trainer import epoch_summary, make_callbacks, make_trainer
from lightning_modules.model.tokenizer import save_tokenizer_json

log = logging.getLogger("m3diff.train")


def train(cfg: DictConfig, *, resume: str = "") -> dict[str, float]:
    """Fit (and validate) one run; return the final validation metrics."""
    seed_everything(int(cfg.seed), workers=True, verbose=False)
    assembly.apply_num_threads(cfg)
    # The run folder is named by the resolved backbone (model.init_from: hf:<folder>), as the run saves it.
    static = assembly.resolve_static(cfg)
    name = runs.run_base(static).relative_to(Path(str(cfg.logs_dir)).expanduser()).as_posix()
    found = runs.find_resume(static, resume) if resume else None
    checkpoint = read_resumable(found.path) if found else None
    parts = assembly.assemble(
        cfg,
        tokenizer_json=checkpoint["hyper_parameters"].get("tokenizer_json") if checkpoint else None,
        check=partial(check_resumable, checkpoint, found=found) if checkpoint else None,
    )
    cfg, datamodule, module = parts.cfg, parts.datamodule, parts.module
    logger = TensorBoardLogger(
        save_dir=cfg.logs_dir, name=name, version=found.version if found else None, default_hp_metric=False
    )
    run_dir = Path(logger.log_dir)
    last_val = _LastValidation()
    # Built before anything is written: a Trainer argument it refuses leaves no run folder behind.
    trainer = make_trainer(cfg, logger=logger, callbacks=[*make_callbacks(cfg, run_dir), last_val])
    # Under DDP every rank runs this; only global rank 0 writes (another rank would pick the next
    # version_N and leave a stray run folder). The checkpoint folder is broadcast from rank 0 by Lightning.
    leader = _launch_rank_is_zero()
    new_folder = not run_dir.exists()
    if leader and not new_folder:
        for partial_file in remove_partial_saves(run_dir / "checkpoints"):
            log.info("removed %s: the partial file of a checkpoint save that was killed", partial_file)
    try:
        if leader:
            save_run_files(cfg, run_dir, module.hparams.get("tokenizer_json"))
        metrics = _fit(
            cfg, trainer, module, datamodule, ckpt_path=found.path if found else None, run_dir=run_dir
        )
    except BaseException:
        if leader and new_folder and trainer.global_step == 0:
            _remove_unstarted(run_dir)
        raise
    if leader:
        (run_dir / "final_metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return metrics


def _fit(
    cfg: DictConfig, trainer: Any, module: Any, datamodule: Any, *, ckpt_path: Path | None, run_dir: Path
) -> dict[str, float]:
    """``trainer.fit`` (resuming ``ckpt_path``), then a last validation if the budget stopped mid-epoch."""
    log.info("run folder: %s%s", run_dir, f" (resuming {ckpt_path})" if ckpt_path else "")
    if _launch_rank_is_zero():
        log.info("%s", epoch_summary(cfg, datamodule, world_size=trainer.world_size))
    if isinstance(datamodule, PairDataModule):
        # Its checkpointed state holds the training order's position (datamodules/samplers.py); Lightning only
        # looks for a stateful DataLoader and would warn that a mid-epoch resume is unreliable.
        warnings.filterwarnings(
            "ignore", message="You're resuming from a checkpoint that ended before the epoch"
        )
    if ckpt_path:
        # Resuming continues the run in its own folder: ModelCheckpoint finding its files there is the point.
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    last_val = next(c for c in trainer.callbacks if isinstance(c, _LastValidation))
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except NonFiniteError as err:
        err.last_checkpoint = run_dir / "checkpoints" / "last.ckpt"  # the CLI reports it
        raise
    if last_val.step != trainer.global_step and not trainer.interrupted and trainer.limit_val_batches != 0:
        # A step or time budget stops mid-epoch, before the epoch's validation: score the final weights.
        trainer.validate(module, datamodule=datamodule, verbose=False)
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}


def _remove_unstarted(run_dir: Path) -> None:
    """A new run folder of a run that failed before its first optimizer step (a data or config error found by
    Lightning's setup): removed, so a refused run leaves nothing behind. Never one that holds a checkpoint."""
    if run_dir.is_dir() and not any(run_dir.glob("checkpoints/*.ckpt")):
        shutil.rmtree(run_dir, ignore_errors=True)


def save_run_files(cfg: DictConfig, run_dir: Path, tokenizer_json: str | None) -> None:
    """``config.yaml`` (the resolved config: it rebuilds exactly this model) and a tiny LM's ``tokenizer.json``."""
    save_config(cfg, run_dir / "config.yaml")
    if tokenizer_json:
        save_tokenizer_json(tokenizer_json, run_dir)


def read_resumable(ckpt_path: Path) -> dict[str, Any]:
    """The checkpoint to resume (read weights-only), refused early if its base model folder is gone or changed."""
    checkpoint = read_checkpoint(ckpt_path)
    check_base_model(checkpoint, path=ckpt_path)
    checkpoint_config(checkpoint, ckpt_path)
    return checkpoint


def check_resumable(checkpoint: dict[str, Any], resolved: DictConfig, *, found: runs.Resume) -> None:
    """This run's resolved config is the checkpoint's run: the same experiment, backbone, data and model (its
    values decided at start, token limits and ``init_from``, are resolved again from the same data and the
    checkpoint's tokenizer and must agree), and the run folder it continues in is that run's
    (:func:`~experiments.common.runs.check_same_run`)."""
    runs.check_same_run(checkpoint, to_container(resolved), path=found.path, run_dir=found.run_dir)


class _LastValidation(Callback):
    """Remembers the global step of the latest (non-sanity-check) validation."""

    def __init__(self) -> None:
        self.step: int | None = None

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.step = trainer.global_step


def _launch_rank_is_zero() -> bool:
    """Global rank 0 as the launcher's environment says, before the Trainer exists (torchrun: RANK;
    SLURM: SLURM_PROCID; Lightning's own DDP launcher: LOCAL_RANK and NODE_RANK)."""
    return rank_zero_only.rank == 0 and os.environ.get("NODE_RANK", "0") == "0"


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    cli.add_config_arguments(parser)
    parser.add_argument("--resume", default="", help="'last' or a checkpoint path (RESUME=)")
    return cli.run(parser, command, argv)


def command(args: argparse.Namespace) -> int:
    cfg = cli.compose(args)
    if args.print_config:
        print(OmegaConf.to_yaml(assembly.resolve_static(cfg)), end="")
        return 0
    try:
        metrics = train(cfg, resume=args.resume)
    except NonFiniteError as err:
        print(f"error: {err}. Training stopped. {_last_good(err)}", file=sys.stderr)
        return 3
    except TrainingStopped as err:
        if _launch_rank_is_zero():  # every rank stopped after the same step: one message
            print(
                f"{err}. Continue with: make train ... RESUME=last (the same BACKBONE/EXP/ARGS)",
                file=sys.stderr,
            )
        return 128 + err.signum
    if not _launch_rank_is_zero():
        return 0
    print(summary(metrics))
    return 0


def summary(metrics: dict[str, float]) -> str:
    """The final validation scores a person reads first; every key is in final_metrics.json and TensorBoard."""
    overall = [f"{m} {metrics[f'val/{m}']:.3f}" for m in HEADLINE_METRICS if f"val/{m}" in metrics]
    lines = ["", "final validation metrics: " + (" | ".join(overall) or "none logged")]
    reference = [
        f"{name} CIDEr {metrics[key]:.3f}"
        for name in ("ceiling", "trivial")
        if (key := f"val/{name}/CIDEr") in metrics
    ]
    if reference:
        lines.append("  reference points: " + " | ".join(reference))
    if "val/change_id/exact" in metrics:
        keys = ("category", "attributes", "location", "cell", "exact")
        lines.append(
            "  change identification: "
            + " | ".join(
                f"{k} {metrics[f'val/change_id/{k}']:.3f}" for k in keys if f"val/change_id/{k}" in metrics
            )
        )
    per_category = {k.removeprefix("val/CIDEr/"): v for k, v in metrics.items() if k.startswith("val/CIDEr/")}
    if per_category:
        lines.append("  CIDEr by category: " + ", ".join(f"{c} {v:.2f}" for c, v in per_category.items()))
    return "\n".join(lines)


def _last_good(err: NonFiniteError) -> str:
    path = getattr(err, "last_checkpoint", None)
    if path is None or not Path(path).is_file():
        return "No checkpoint was saved before it."
    try:
        step = read_checkpoint(path).get("global_step")
    except CheckpointError:
        step = None
    return (
        f"The last good checkpoint is {path} (step {step}): lower the learning rate or check the data, "
        "then resume with RESUME=last or start a new run."
    )


if __name__ == "__main__":
    sys.exit(main())
