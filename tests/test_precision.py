"""Mixed precision with gradient clipping: every trainer YAML's precision takes an optimizer step with clipping on CPU
(Lightning refuses to clip for torch's fused AdamW under 16-mixed / bf16-mixed, so the kit picks foreach there), and
FSDP clips with its own all-shard norm (Lightning's FSDP precision plugin refuses norm clipping)."""

from __future__ import annotations

import pytest
import torch
from support.tiny import TINY_MODEL

from experiments.common import assembly
from experiments.common.config import CONF_DIR, load_config
from experiments.common.trainer import make_trainer
from lightning_modules.captioner import adamw_implementation

TRAINER_FILES = sorted(p.stem for p in (CONF_DIR / "trainer").glob("*.yaml"))
CLIP = 1e-3  # far below the tiny model's gradient norm: clipping certainly acts


def test_fused_adamw_unless_lightning_must_clip_around_it():
    assert adamw_implementation("32-true", 1.0) == "fused"
    assert adamw_implementation("bf16-mixed", None) == "fused"
    assert adamw_implementation("bf16-mixed", 0.0) == "fused"
    assert adamw_implementation("bf16-mixed", 1.0) == "foreach"
    assert adamw_implementation("16-mixed", 1.0) == "foreach"
    assert adamw_implementation("32-true", None, fused_supported=False) == "foreach"


@pytest.mark.parametrize("name", TRAINER_FILES)
def test_each_trainer_precision_takes_a_clipped_step_on_cpu(name, tmp_path):
    precision = str(load_config(groups={"trainer": name}).trainer.precision)
    cfg = load_config(
        groups={"trainer": name},
        overrides=[
            *TINY_MODEL,
            "model.lm.tokenizer_captions=40",
            "model.max_caption_tokens=16",
            "generation.max_new_tokens=4",
            "data.train_size=8",
            "data.val_size=4",
            "data.batch_size=4",
            "data.num_workers=0",
            f"logs_dir={tmp_path}",
            # the YAML's precision, on this machine: one CPU process (DDP / FSDP need several GPUs)
            "trainer.accelerator=cpu",
            "trainer.devices=1",
            "trainer.strategy=auto",
            "trainer.max_steps=1",
            f"trainer.gradient_clip_val={CLIP}",
            "trainer.limit_val_batches=0",
            "trainer.val_check_interval=null",
            "trainer.enable_progress_bar=false",
            "trainer.enable_checkpointing=false",
        ],
    )
    torch.manual_seed(0)
    parts = assembly.assemble(cfg)
    module = parts.module
    before = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}
    norms = []
    clip = module.configure_gradient_clipping

    def clip_and_measure(optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        clip(optimizer, gradient_clip_val, gradient_clip_algorithm)
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    module.configure_gradient_clipping = clip_and_measure
    trainer = make_trainer(cfg, logger=False, callbacks=[])
    trainer.fit(module, datamodule=parts.datamodule)
    assert trainer.global_step == 1 and trainer.precision == precision
    group = trainer.optimizers[0].defaults
    expected = "foreach" if precision in ("16-mixed", "bf16-mixed") else "fused"
    assert group[expected] is True and not group["fused" if expected == "foreach" else "foreach"]
    assert len(norms) == 1 and norms[0] == pytest.approx(CLIP, rel=1e-3)  # clipped to the limit
    moved = [n for n, p in module.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert len(moved) == len(before)


def test_fsdp_clips_with_its_own_norm_over_all_shards():
    """Lightning cannot start FSDP on CPU: the routing is checked with the strategy object and a stand-in root."""
    from types import SimpleNamespace

    from lightning.pytorch.strategies import FSDPStrategy

    from lightning_modules.captioner import CaptionerModule

    calls = []
    strategy = FSDPStrategy()
    strategy.model = SimpleNamespace(
        clip_grad_norm_=calls.append
    )  # the root FullyShardedDataParallel's method
    module = SimpleNamespace(trainer=SimpleNamespace(strategy=strategy))
    CaptionerModule.configure_gradient_clipping(module, None, 1.0, "norm")
    assert calls == [1.0]
