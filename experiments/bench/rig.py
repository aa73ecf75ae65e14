"""The training-step rig: a model built as ``make train`` builds it, stepped through Lightning's own hooks.

Why not ``Trainer.fit``: the bench compares single steps of two models (MDP on / off) and matmul bursts in one
interleaved loop, counts the FLOPs of one step, replays each module of one step alone and profiles one step.
``fit`` owns its loop, so none of that can be done between its steps. The rig therefore calls, for each step,
the same LightningModule hooks that Lightning's automatic optimization calls, in its order:
``optimizer_zero_grad`` -> ``training_step`` (inside the precision plugin's ``train_step_context``, i.e.
autocast for ``bf16-mixed``) -> ``backward`` -> ``on_before_optimizer_step`` -> ``configure_gradient_clipping``
(Lightning's clipping, with the config's value and algorithm) -> ``optimizer_step`` -> ``lr_scheduler_step``.
The module is attached to a barebones ``lightning.Trainer`` built from the run config's ``trainer`` section, so
``configure_optimizers`` sees the real step budget (the LR schedule's length), clipping reads the Trainer's
settings, and ``self.log`` is off (Lightning's barebones mode: logging is not part of the step's cost).
``tests/test_bench.py`` checks that two rig steps leave the same weights as two steps of ``Trainer.fit``.

Left out, on purpose: callbacks (metrics, panels, per-batch seeding, the non-finite guard) and data loading,
which runs in DataLoader workers beside the step (measured in the ``data`` section). One CPU device: the
figures are compared with the CPU's matmul peak. Gradient accumulation is not applied (one step per batch).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch import nn

from experiments.common.flops import flop_counter

# The LR schedule's length when the config sets no step budget (it changes learning rates, not speed).
SCHEDULE_STEPS_WITHOUT_BUDGET = 10_000


@dataclasses.dataclass
class Rig:
    """One model ready to train: the LightningModule on its Trainer, its optimizer / schedule, fixed batches."""

    name: str
    overrides: list[str]
    module: Any  # CaptionerModule
    trainer: L.Trainer
    optimizer: torch.optim.Optimizer
    scheduler: Any
    batches: list[dict[str, Any]]
    flops: int = 0  # forward + backward FLOPs of one step on batches[0]
    steps: int = 0

    @property
    def batch_size(self) -> int:
        return len(self.batches[0]["pair_id"])

    def step(self) -> None:
        """One training step, through the hooks Lightning's automatic optimization calls (module docstring)."""
        module, optimizer, trainer = self.module, self.optimizer, self.trainer
        index = self.steps % len(self.batches)
        module.optimizer_zero_grad(0, index, optimizer)
        with trainer.precision_plugin.train_step_context():
            loss = module.training_step(self.batches[index], index)
        module.backward(loss)
        module.on_before_optimizer_step(optimizer)
        module.configure_gradient_clipping(
            optimizer,
            gradient_clip_val=trainer.gradient_clip_val,
            gradient_clip_algorithm=trainer.gradient_clip_algorithm,
        )
        module.optimizer_step(0, index, optimizer)
        module.lr_scheduler_step(self.scheduler, None)
        self.steps += 1

    def count_flops(self) -> int:
        """Forward + backward FLOPs of one step (counted while running it; the optimizer's are elementwise)."""
        counter = flop_counter()
        with counter:
            self.step()
        self.flops = int(counter.get_total_flops())
        return self.flops


def step_trainer(trainer_cfg: Any) -> L.Trainer:
    """The run config's Trainer reduced to what a step reads (precision, gradient clipping, the step budget),
    on one CPU device, barebones (no logging, checkpoints, progress bar or summaries)."""
    max_steps = int(trainer_cfg.get("max_steps") or -1)
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        precision=trainer_cfg.get("precision"),
        gradient_clip_val=trainer_cfg.get("gradient_clip_val"),
        gradient_clip_algorithm=trainer_cfg.get("gradient_clip_algorithm"),
        max_steps=max_steps if max_steps > 0 else SCHEDULE_STEPS_WITHOUT_BUDGET,
        # Bounded by steps only: estimated_stepping_batches is then max_steps, without a train DataLoader.
        max_epochs=-1,
        barebones=True,
    )


def caption_tokenizer(cfg: Any) -> str | None:
    """The tiny LM's caption tokenizer, trained on the DataModule's captions by ``make train``'s own
    :func:`~experiments.common.assembly.make_tokenizer` (None: a pretrained LM brings its own). Trained once per
    bench and shared by every model it builds."""
    from experiments.common import assembly

    return assembly.make_tokenizer(cfg, assembly.make_datamodule(cfg))


def first_batches(datamodule: Any, n: int) -> list[dict[str, Any]]:
    """The first ``n`` batches of the DataModule's own training DataLoader (its sampler and collate)."""
    return list(itertools.islice(datamodule.train_dataloader(), n))


def build_rig(name: str, overrides: Sequence[str], tokenizer_json: str | None, *, n_batches: int = 1) -> Rig:
    """DataModule and captioner as ``make train`` builds them from config, the module's own optimizer and
    schedule, and its first ``n_batches`` training batches (``data.batch_size`` sets their size).

    The batches are drawn in this process (``data.num_workers=0``): the datasets are a pure function of the
    index, so workers would produce the same batches, and idle worker processes are not left beside the timing.
    """
    from experiments.common.assembly import assemble
    from experiments.common.config import load_config

    cfg = load_config(overrides=[*overrides, "data.num_workers=0"])
    torch.manual_seed(int(cfg.seed))
    parts = assemble(cfg, tokenizer_json=tokenizer_json)
    cfg, datamodule, module = parts.cfg, parts.datamodule, parts.module
    module.train()
    trainer = step_trainer(cfg.trainer)
    module.trainer = trainer
    optim = module.configure_optimizers()
    return Rig(
        name=name,
        overrides=list(overrides),
        module=module,
        trainer=trainer,
        optimizer=optim["optimizer"],
        scheduler=optim["lr_scheduler"]["scheduler"],
        batches=first_batches(datamodule, n_batches),
    )


def parameters_m(module: nn.Module) -> dict[str, float]:
    """Millions of parameters of the model, in total and per top-level part (backbone, mdp, projector, lm)."""
    parts = {n: sum(p.numel() for p in m.parameters()) / 1e6 for n, m in module.model.named_children()}
    return {"total": round(sum(parts.values()), 2), **{k: round(v, 2) for k, v in parts.items()}}
