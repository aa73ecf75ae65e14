"""The Trainer of a run: its callbacks, strategy, precision plugin and checkpoint writer, from the config.

:func:`make_trainer` is the one place a ``lightning.Trainer`` is built (``make train``, ``make eval``, ``make
compare``'s runs, ``make gpu-check``); :func:`make_callbacks` is a training run's callback list,
:func:`make_eval_callbacks` an evaluation's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ModelSummary
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig

from callbacks.progress import progress_bar
from experiments.common.checkpoint_io import AtomicCheckpointIO
from experiments.common.config import ConfigError, to_container, trainer_kwargs


def make_trainer(
    cfg: DictConfig, *, logger: TensorBoardLogger | bool, callbacks: Sequence[L.Callback]
) -> L.Trainer:
    kwargs = trainer_kwargs(cfg)
    if kwargs.get("strategy") == "fsdp" and cfg.model.lm.get("dtype", "float32") != "float32":
        raise ConfigError(
            "trainer.strategy=fsdp keeps each unit's parameters in one flat float32 tensor (and casts them for "
            f"compute itself): set model.lm.dtype=float32 (it is {cfg.model.lm.dtype})"
        )
    kwargs["strategy"] = make_strategy(kwargs.get("strategy", "auto"))
    callbacks = list(callbacks)
    # Chosen here, not by Lightning (which picks its rich bar and table whenever `rich` is importable): a bar
    # on a terminal, plain lines in a log file, and a plain-text model summary either way.
    if kwargs.get("enable_progress_bar", True):
        callbacks.append(progress_bar(every_n_steps=int(kwargs.get("log_every_n_steps") or 50)))
    if kwargs.pop("enable_model_summary", True):
        callbacks.append(ModelSummary(max_depth=1))
    kwargs["enable_model_summary"] = False  # ours is in `callbacks`; Lightning would say it skips its own
    return L.Trainer(
        **kwargs,
        logger=logger,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=cfg.logs_dir,
    )


def make_callbacks(cfg: DictConfig, run_dir: Path) -> list[L.Callback]:
    from callbacks.caption_metrics import CaptionMetricsCallback, monitor_key
    from callbacks.panels import PanelsCallback
    from callbacks.safety import LastCheckpoint, NonFiniteGuard, StepSeed, StopOnSignal
    from callbacks.tensorboard import HparamsCallback, ScalarLayout

    monitor = monitor_key(cfg.metrics.monitor)
    # best-*.ckpt by validation score only; last.ckpt is LastCheckpoint's (unmonitored: see its docstring).
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best-{step}",
        monitor=monitor,
        mode="max",
        save_top_k=int(cfg.checkpoint.save_top_k),
        save_last=False,
        auto_insert_metric_name=False,
    )
    every = cfg.checkpoint.every_n_train_steps
    last = [LastCheckpoint(run_dir / "checkpoints", every)] if cfg.checkpoint.save_last else []
    return [
        CaptionMetricsCallback(
            spice=bool(cfg.metrics.spice), change_id=bool(cfg.metrics.change_id), output_dir=run_dir / "eval"
        ),
        PanelsCallback(num_panels=int(cfg.metrics.num_panels)),
        ScalarLayout(change_id=bool(cfg.metrics.change_id), spice=bool(cfg.metrics.spice)),
        HparamsCallback(hparams=hparams_for_tensorboard(cfg)),
        checkpoint,
        LearningRateMonitor(logging_interval="step"),
        # Kill-and-resume safety: per-batch seeds, last.ckpt every N steps and on SIGINT/SIGTERM, no
        # checkpoint with non-finite weights.
        *last,
        StepSeed(int(cfg.seed)),
        StopOnSignal(last[0].path if last else None),
        NonFiniteGuard(),
    ]


def make_eval_callbacks(cfg: DictConfig, out_dir: Path) -> list[L.Callback]:
    """``make eval``: metrics and the rescorable files written straight into ``out_dir``."""
    from callbacks.caption_metrics import CaptionMetricsCallback

    return [
        CaptionMetricsCallback(
            spice=bool(cfg.metrics.spice),
            change_id=bool(cfg.metrics.change_id),
            output_dir=out_dir,
            subfolders=False,
        )
    ]


def hparams_for_tensorboard(cfg: DictConfig) -> dict[str, Any]:
    """The knobs that tell runs apart in TensorBoard's hparams tab (backbone, MDP switches, LM, data)."""
    flat: dict[str, Any] = {"experiment": cfg.experiment, "seed": cfg.seed}
    for section in ("backbone", "mdp"):
        for key, value in to_container(cfg[section]).items():
            flat[f"{section}.{key}"] = (
                str(value) if isinstance(value, (list, dict)) or value is None else value
            )
    flat.update(
        {"model.lm": cfg.model.lm.name, "model.token_pool": cfg.model.token_pool, "data": cfg.data.name}
    )
    flat.update({"trainer.max_steps": cfg.trainer.max_steps, "data.batch_size": cfg.data.batch_size})
    return flat


# Transformer blocks that become one FSDP unit each (LM decoder layers, ViT blocks), by class name.
FSDP_BLOCKS = (
    "GPT2Block",
    "Qwen2DecoderLayer",
    "LlamaDecoderLayer",
    "MistralDecoderLayer",
    "ResidualAttentionBlock",
    "Block",
    "SiglipEncoderLayer",
    "CLIPEncoderLayer",
)


def _is_fsdp_block(module: Any) -> bool:
    cls = type(module)
    return cls.__name__ in FSDP_BLOCKS and cls.__module__.startswith(("transformers.", "open_clip.", "timm."))


def make_strategy(strategy: Any) -> Any:
    """``trainer.strategy: fsdp`` -> Lightning's FSDP, sharded per transformer block (the plain string would
    make the whole model one unit, gathered at once); any other value is passed through."""
    if strategy != "fsdp":
        return strategy
    from functools import partial

    from lightning.pytorch.strategies import FSDPStrategy
    from torch.distributed.fsdp.wrap import lambda_auto_wrap_policy

    # use_orig_params: a unit may mix frozen and trained parameters (a decoder layer under LoRA).
    return FSDPStrategy(
        auto_wrap_policy=partial(lambda_auto_wrap_policy, lambda_fn=_is_fsdp_block), use_orig_params=True
    )


def epoch_summary(cfg: DictConfig, datamodule: Any, *, world_size: int) -> str:
    """One line for the start of training: what one epoch is, in samples and in optimizer steps.

    An optimizer step takes ``world_size x data.batch_size x trainer.accumulate_grad_batches`` samples; each
    process sees ``ceil(samples / world_size)`` of the epoch's samples (DistributedSampler), in whole batches
    when the loader drops the last one, and an accumulation cut short by the epoch's end still steps.
    """
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    samples = len(loader.sampler)
    batch, accumulate = int(cfg.data.batch_size), int(cfg.trainer.accumulate_grad_batches)
    per_rank = -(-samples // world_size)
    batches = per_rank // batch if loader.drop_last else -(-per_rank // batch)
    steps = -(-batches // accumulate)
    what = {"caption": "one per reference caption", "pair": "one per pair"}.get(datamodule.sample_per)
    detail = [what] if what else []
    if parts := datamodule.epoch_parts():  # a plain concatenation (a mixture with weights: null)
        detail.append(" + ".join(f"{name} {n:,}" for name, n in parts.items()))
    detail_text = f" ({'; '.join(detail)})" if detail else ""
    line = (
        f"one epoch = {samples:,} training samples{detail_text} = {steps:,} "
        f"optimizer steps of {world_size * batch * accumulate:,} samples "
        f"(world size {world_size} x batch {batch} x accumulation {accumulate})"
    )
    max_steps = cfg.trainer.get("max_steps")
    if isinstance(max_steps, int) and max_steps > 0 and steps:
        line += f"; trainer.max_steps={max_steps:,} is {max_steps / steps:.3g} epoch(s)"
    return line
