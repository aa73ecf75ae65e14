"""What `train`, `eval` and `compare` share: config -> backbone -> DataModule -> tokenizer -> module -> Trainer."""

from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ModelSummary
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

import mdp
from callbacks.progress import progress_bar
from datamodules import build_datamodule
from datamodules.errors import DataError
from experiments.common import console
from experiments.common.checkpoints import CheckpointError
from experiments.common.config import ConfigError, load_config, save_config, to_container, trainer_kwargs
from experiments.common.token_limits import resolve_token_limits
from lightning_modules.captioner import CaptionerModule
from lightning_modules.model.build import build_backbone
from lightning_modules.model.language_model import is_tiny_lm
from lightning_modules.model.tokenizer import (
    load_pretrained_tokenizer,
    save_tokenizer_json,
    tokenizer_from_json,
    train_caption_tokenizer,
)

log = logging.getLogger("m3diff")


# ------------------------------------------------------------------------------------------------ CLI
def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The config options every entry point shares (empty strings mean "default", as make passes them)."""
    parser.add_argument("--backbone", default="", help="backbone group or timm model name (BACKBONE=)")
    parser.add_argument("--data", default="", help="data group: synthetic, clevr_change, ... (DATA=)")
    parser.add_argument("--root", default="", help="dataset folder, sets data.root (ROOT=)")
    parser.add_argument("--exp", default="", help="experiment YAML under experiments/ (EXP=)")
    parser.add_argument("--args", default="", help='space-separated key=value overrides (ARGS="a.b=1 c=2")')
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")


def config_from_args(args: argparse.Namespace) -> DictConfig:
    root = [f"data.root={args.root}"] if getattr(args, "root", "") else []
    overrides = [*root, *shlex.split(args.args or ""), *args.overrides]
    cfg = load_config(
        experiment=args.exp or None,
        groups={"backbone": args.backbone, "data": args.data},
        overrides=overrides,
    )
    return resolve_init_from(cfg)


def resolve_init_from(cfg: DictConfig) -> DictConfig:
    """``model.init_from``: the backbone and LM are the folder's, so the config says so (run folder name, saved
    config, TensorBoard hparams): ``backbone.name=hf:<folder>``, its weights and image size, ``model.lm.name``;
    and LLaVA-OneVision's multi-image layout feeds every patch token (``model.token_pool=1``)."""
    folder = cfg.model.get("init_from")
    if not folder:
        return cfg
    from lightning_modules.model.llava_onevision import InitFromError, read_config

    try:
        tower = read_config(folder).vision_config
    except InitFromError as err:
        raise ConfigError(str(err)) from None
    resolved = {
        "backbone.name": f"hf:{folder}",
        "backbone.pretrained": folder if cfg.model.init_weights else None,
        "backbone.image_size": int(tower.image_size),
        "model.lm.name": str(folder),
        "model.token_pool": 1,
    }
    changed = {k: v for k, v in resolved.items() if OmegaConf.select(cfg, k) != v}
    for key, value in changed.items():
        OmegaConf.update(cfg, key, value, merge=False)
    if changed:
        log.info("model.init_from=%s sets %s", folder, ", ".join(f"{k}={v}" for k, v in changed.items()))
    return cfg


# ------------------------------------------------------------------------------------------------ parts
def apply_num_threads(cfg: DictConfig) -> None:
    """``num_threads``: on a machine shared with other jobs one thread beats two (OpenMP barriers stall)."""
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))


def make_datamodule(cfg: DictConfig, spec: mdp.ImageSpec | None = None) -> L.LightningDataModule:
    """The DataModule of ``cfg.data``, preparing images as ``spec`` (the backbone's) says. ``None`` is for
    readers of the data that feed no model (caption statistics, ``make data-info``): ``backbone.image_size``
    pixels, mean/std 0.5."""
    spec = spec or mdp.ImageSpec(size=int(cfg.backbone.image_size), mean=(0.5,) * 3, std=(0.5,) * 3)
    return build_datamodule(
        to_container(cfg.data), image_size=spec.size, mean=spec.mean, std=spec.std, seed=int(cfg.seed)
    )


def make_parts(
    cfg: DictConfig, *, tokenizer_json: str | None = None
) -> tuple[L.LightningDataModule, CaptionerModule]:
    """DataModule and captioner, each part built once, from what the one before it produced:

    1. the backbone (``backbone.*``; missing weights fail here, first): its ``spec`` is the input size and
       mean/std its weights expect;
    2. the DataModule, preparing images with that spec;
    3. the caption tokenizer of a tiny LM, trained on the DataModule's training captions (a resumed run passes
       its checkpoint's ``tokenizer_json`` instead: its weights were trained with those token ids);
    4. the caption token limits left ``null``, from the training captions in that tokenizer's tokens;
    5. the module around that backbone (MDP, projector, LM). It keeps only config values and the tokenizer as
       hyper-parameters, so ``load_from_checkpoint`` rebuilds all of it, the backbone included, from the file.
    """
    config = to_container(resolve_init_from(cfg))
    backbone = build_backbone(config)
    datamodule = make_datamodule(cfg, backbone.spec)
    captions = training_captions(datamodule, int(cfg.model.lm.tokenizer_captions))
    if tokenizer_json is None:
        tokenizer_json = make_tokenizer(cfg, datamodule, captions)
    config = resolve_token_limits(config, caption_tokenizer(config, tokenizer_json), captions)
    module = CaptionerModule(config=config, tokenizer_json=tokenizer_json, backbone=backbone)
    return datamodule, module


def training_captions(datamodule: Any, limit: int) -> list[str]:
    """References of the training split, for the tiny LM's tokenizer (the DataModule's hook)."""
    return list(datamodule.training_captions(limit))


def make_tokenizer(cfg: DictConfig, datamodule: Any, captions: Sequence[str] | None = None) -> str | None:
    """A tiny LM's caption tokenizer (JSON), trained on the training captions (``captions`` when already read);
    None for a pretrained LM."""
    if not is_tiny_lm(cfg.model.lm.name):
        return None
    if captions is None:
        captions = training_captions(datamodule, int(cfg.model.lm.tokenizer_captions))
    return train_caption_tokenizer(list(captions), vocab_size=int(cfg.model.lm.vocab_size))


def caption_tokenizer(config: dict[str, Any], tokenizer_json: str | None) -> Any:
    """The tokenizer the captioner will use: the tiny LM's trained one, or the pretrained LM's own."""
    if tokenizer_json is not None:
        return tokenizer_from_json(tokenizer_json)
    return load_pretrained_tokenizer(config["model"].get("init_from") or config["model"]["lm"]["name"])


def run_name(cfg: DictConfig) -> str:
    """``<experiment>/<backbone>`` with characters that are awkward in paths replaced."""
    backbone = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(cfg.backbone.name))
    return f"{cfg.experiment}/{backbone}"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to a temporary file and rename: a kill during a save never leaves a corrupt file.

    The temporary file is flushed to disk before the rename (and the folder after it), so that a power cut
    cannot leave a renamed but empty ``last.ckpt`` either. Temporary files of killed saves are removed.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(path)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            _fsync(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync(path.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale_temporaries(path: Path) -> None:
    """``.<name>.tmp-<pid>`` files whose writer is gone (a save killed mid-write)."""
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


# Errors a user fixes with a setting or a file, not bugs: the entry points print one line (no traceback), exit 2.
USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, CheckpointError, mdp.BackboneWeightsError, DataError)


def error_line(err: Exception) -> str:
    """``config error: ...`` / ``checkpoint error: ...`` / ``data error: ...`` / ``error: ...``."""
    kinds = {ConfigError: "config error", CheckpointError: "checkpoint error", DataError: "data error"}
    return f"{next((k for cls, k in kinds.items() if isinstance(err, cls)), 'error')}: {err}"


def configure_logging() -> None:
    console.configure_logging()


def save_run_files(cfg: DictConfig, run_dir: Path, module: CaptionerModule) -> None:
    save_config(cfg, run_dir / "config.yaml")
    if module.hparams.get("tokenizer_json"):
        save_tokenizer_json(module.hparams["tokenizer_json"], run_dir)


def print_config(cfg: DictConfig) -> None:
    print(OmegaConf.to_yaml(cfg), end="")
