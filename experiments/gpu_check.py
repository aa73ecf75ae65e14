"""The paper-scale model on one GPU: ``make gpu-check [ARGS="--toy"]``.

Builds ``experiments/paper/m3diff_so400m_qwen2.yaml``'s model at real size with random weights, nothing downloaded:
a config-only LLaVA-OneVision folder is written to a temporary directory (LLaVA-OneVision-7B's config: the 26-layer
SigLIP-so400m-384 tower and Qwen2-7B, vocabulary 152,064; a byte-level BPE trained on the embedded benchmark's
captions, with Qwen2's special tokens and chat template; SigLIP's preprocessor config) and the experiment runs
with ``model.init_from=<it> model.init_weights=false``. It then trains ~20 steps on the embedded benchmark at
384 px with the experiment's settings (bf16-mixed, activation checkpointing, LoRA r=128, its pairs per GPU; one
GPU, no accumulation), then a few steps with ``trainer.strategy=fsdp`` on the same GPU. Printed and written to
OUT (default ``bench_results/gpu_check.json``): step time, pairs/s, MFU, peak memory, checkpoint size.

MFU = model FLOPs per step / step time / the GPU's dense bf16 peak (:data:`PEAK_BF16_TFLOPS`, by device name;
``--peak-tflops`` for others). Model FLOPs: torch's FLOP counter over one training step's forward and backward
(matmuls and attention; the frozen LM's backward computes input gradients only), minus the forward FLOPs that
activation checkpointing repeats.

``--toy``: the same code path at toy sizes, fp32, 2 steps, on CPU when there is no GPU (``make test`` runs it);
its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from experiments.common import cli
from experiments.common.flops import flop_counter

DEFAULT_OUT = Path("bench_results") / "gpu_check.json"
EXPERIMENT = "paper/m3diff_so400m_qwen2"
# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, TFLOP/s; first match of the device name wins.
PEAK_BF16_TFLOPS: list[tuple[str, float]] = [
    (r"H100.*PCIe", 756.0),
    (r"H100.*NVL", 835.0),
    (r"GH200|H200|H100", 989.0),
    (r"B200", 2250.0),
    (r"A100", 312.0),
    (r"L40S", 362.0),
    (r"\bL4\b", 121.0),
    (r"\bA10\b", 125.0),
]
QWEN2_7B = dict(
    vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
    num_key_value_heads=4, max_position_embeddings=32768, rope_theta=1000000.0, tie_word_embeddings=False,
)  # fmt: skip
TOY_TEXT = dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, tie_word_embeddings=False)  # fmt: skip
TOY_TOWER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=6, num_attention_heads=2, image_size=32,
                 patch_size=8, vision_use_head=False)  # fmt: skip


def peak_tflops(device_name: str) -> float | None:
    return next((tf for pattern, tf in PEAK_BF16_TFLOPS if re.search(pattern, device_name)), None)


# ---------------------------------------------------------------------------------------------- the folder
def write_folder(folder: Path, captions: list[str], *, toy: bool) -> None:
    """A LLaVA-OneVision folder without weights: config.json, tokenizer with chat template, preprocessor."""
    from experiments.common.llava_folder import write_llava_folder
    from mdp import LLAVA_OV_TOWER

    write_llava_folder(
        folder, captions, tower=TOY_TOWER if toy else LLAVA_OV_TOWER, text=TOY_TEXT if toy else QWEN2_7B
    )


def compose(folder: Path, logs: Path, *, toy: bool, fsdp: bool, steps: int, device: str) -> Any:
    from experiments.common.config import load_config

    overrides = [
        f"model.init_from={folder}",
        "model.init_weights=false",
        f"logs_dir={logs}",
        f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
        "trainer.devices=1",
        f"trainer.strategy={'fsdp' if fsdp else 'auto'}",
        f"trainer.max_steps={steps}",
        "trainer.accumulate_grad_batches=1",
        "trainer.limit_val_batches=0",
        "trainer.val_check_interval=null",
        "trainer.enable_progress_bar=false",
        "trainer.enable_checkpointing=false",
        f"data.num_workers={min(8, os.cpu_count() or 1) if device == 'cuda' else 0}",
        "data.val_size=8",
        "data.test_size=8",
    ]
    if fsdp:  # FSDP keeps each unit's parameters in one flat fp32 tensor and casts for compute itself
        overrides.append("model.lm.dtype=float32")
    if toy:
        overrides += ["backbone.layers=[1,3,5]", "mdp.num_heads=2", "model.lora.r=8", "model.lm.dtype=float32",
                      "model.max_caption_tokens=16", "trainer.precision=32-true"]  # fmt: skip
    cfg = load_config(experiment=EXPERIMENT, groups={"data": "synthetic"}, overrides=overrides)
    cfg.data.train_size = max(int(cfg.data.batch_size) * (steps + 1), 64)
    return cfg


# ---------------------------------------------------------------------------------------------- one run
class StepTimer(L.Callback):
    """Wall time of every training step (forward, backward, optimizer), synchronised with the GPU."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.losses: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        _sync()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        _sync()
        self.times.append(time.perf_counter() - self._start)
        self.losses.append(float(outputs["loss"]) if isinstance(outputs, dict) else float(outputs))


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def model_flops(module: Any, batch: dict, *, precision: str) -> dict[str, float]:
    """Model FLOPs of one training step on ``batch``: torch's FLOP counter over its forward and backward, minus the
    forward FLOPs that activation checkpointing repeats in the backward (the MFU convention counts them once).
    Gradients are computed and dropped; the optimizer is not stepped."""
    model = module.model
    batch = {k: v.to(module.device) if torch.is_tensor(v) else v for k, v in batch.items()}
    ids, mask = module.tokenize(module.pick_references(batch, step=0))
    dtype = torch.bfloat16 if precision.startswith("bf16") else None
    autocast = torch.autocast(module.device.type, dtype=dtype, enabled=dtype is not None)
    root = type(model).__name__
    # transformers checkpoints per layer (GradientCheckpointingLayer); the encoder / model above them carry the
    # same flag but are not recomputed as a whole.
    recomputed = [
        f"{root}.{n}"
        for n, m in model.named_modules()
        if getattr(m, "gradient_checkpointing", False)
        and any(c.__name__ == "GradientCheckpointingLayer" for c in type(m).__mro__)
    ]
    forward = flop_counter()
    with torch.no_grad(), autocast, forward:
        model(batch["before"], batch["after"], ids, mask)
    per_module = {name: sum(ops.values()) for name, ops in forward.get_flop_counts().items()}
    repeated = sum(per_module.get(name, 0) for name in recomputed)
    step = flop_counter()
    model.train()
    with step:
        with autocast:
            loss, _ = model(batch["before"], batch["after"], ids, mask)
        loss.backward()
    model.zero_grad(set_to_none=True)
    image_tokens = model.backbone.num_tokens + (model.image_newline is not None)  # token_pool 1 (init_from)
    tokens = sum(t.numel() for t in model.text_segments) + 2 * image_tokens + ids.shape[1]
    return {
        "forward": float(forward.get_total_flops()),
        "train_step": float(step.get_total_flops() - repeated),
        "recomputed": float(repeated),
        "tokens": tokens,
    }


def run_once(cfg: Any, *, device: str, label: str, peak: float | None) -> dict[str, Any]:
    from experiments.common.assembly import assemble
    from experiments.common.trainer import make_trainer

    torch.manual_seed(int(cfg.seed))
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    # Parameters created on the GPU: random init of 8B weights there takes seconds, not minutes. (The DataModule's
    # workers inherit no CUDA tensors: it holds none.)
    parts = assemble(cfg, device=device)
    cfg, datamodule, module = parts.cfg, parts.datamodule, parts.module
    build_s = time.perf_counter() - start
    timer = StepTimer()
    trainer = make_trainer(cfg, logger=False, callbacks=[timer])
    trainer.fit(module, datamodule=datamodule)
    ckpt = Path(cfg.logs_dir) / f"{label}.ckpt"
    trainer.save_checkpoint(ckpt)
    result: dict[str, Any] = {
        "strategy": str(cfg.trainer.strategy),
        "precision": str(cfg.trainer.precision),
        "pairs_per_step": int(cfg.data.batch_size),
        "steps": len(timer.times),
        "build_s": round(build_s, 1),
        "losses": [round(x, 4) for x in timer.losses],
        "trainable_params_m": round(sum(p.numel() for p in module.parameters() if p.requires_grad) / 1e6, 1),
        "params_m": round(sum(p.numel() for p in module.parameters()) / 1e6, 1),
        "checkpoint_mb": round(ckpt.stat().st_size / 2**20, 1),
    }
    timed = timer.times[3:] or timer.times  # the first steps include allocator and kernel warm-up
    step_s = statistics.median(timed)
    result.update(step_s=round(step_s, 4), pairs_per_s=round(result["pairs_per_step"] / step_s, 3))
    if device == "cuda":
        result["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        result["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
    else:
        result["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    batch = next(iter(datamodule.train_dataloader()))
    flops = model_flops(module, batch, precision=str(cfg.trainer.precision))
    result.update(
        tokens_per_pair=flops["tokens"], model_tflop_per_step=float(f"{flops['train_step'] / 1e12:.4g}")
    )
    if peak:
        result["mfu"] = round(flops["train_step"] / step_s / (peak * 1e12), 4)
    del module, trainer, datamodule
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


# ---------------------------------------------------------------------------------------------- main
def machine(device: str, peak: float | None) -> dict[str, Any]:
    info: dict[str, Any] = {"torch": torch.__version__, "device": device}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1), peak_bf16_tflops=peak)
        if peak is None:
            info["note"] = (
                f"unknown GPU {props.name!r}: no bf16 peak known, MFU not computed (pass --peak-tflops)"
            )
    return info


def render(results: dict[str, Any]) -> str:
    lines = [f"gpu-check ({'toy sizes: numbers mean nothing' if results['toy'] else 'real sizes, random weights'})",
             "machine: " + ", ".join(f"{k} {v}" for k, v in results["machine"].items())]  # fmt: skip
    keys = ("steps", "pairs_per_step", "tokens_per_pair", "step_s", "pairs_per_s", "model_tflop_per_step", "mfu",
            "peak_allocated_gib", "peak_reserved_gib", "peak_rss_gib", "checkpoint_mb", "trainable_params_m",
            "params_m", "build_s")  # fmt: skip
    for name, run in results["runs"].items():
        if "skipped" in run:
            lines.append(f"{name}: skipped ({run['skipped']})")
            continue
        if "error" in run:
            lines.append(f"{name}: FAILED: {run['error']}")
            continue
        shown = ", ".join(f"{k} {run[k]}" for k in keys if k in run)
        lines.append(f"{name} ({run['strategy']}, {run['precision']}): {shown}; losses {run['losses']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--toy", action="store_true", help="toy sizes, fp32, 2 steps (CPU without a GPU)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 20, toy 2)")
    parser.add_argument(
        "--fsdp-steps", type=int, default=None, help="steps of the FSDP run (default 8; 0 = skip)"
    )
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, for MFU")
    parser.add_argument("--out", default="", help=f"JSON results (default {DEFAULT_OUT})")
    parser.add_argument(
        "--args", default="", help='these options as one string (make gpu-check ARGS="--toy")'
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    return cli.run(parser, lambda args: command(parser.parse_args([*argv, *cli.split_args(args.args)])), argv)


def command(args: argparse.Namespace) -> int:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.toy:
        raise cli.UsageError("make gpu-check needs a CUDA GPU (or --toy for the toy-size check on CPU)")
    steps = args.steps or (2 if args.toy else 20)
    fsdp_steps = args.fsdp_steps if args.fsdp_steps is not None else (2 if args.toy else 8)
    peak = args.peak_tflops or (peak_tflops(torch.cuda.get_device_name(0)) if device == "cuda" else None)
    results: dict[str, Any] = {"toy": args.toy, "machine": machine(device, peak), "runs": {}}
    with tempfile.TemporaryDirectory(prefix="m3diff-gpu-check-") as tmp:
        folder, logs = Path(tmp) / "llava-onevision-config", Path(tmp) / "logs"
        folder.mkdir()
        write_folder(folder, scene_captions(), toy=args.toy)
        plan = [("single", False, steps)] + ([("fsdp", True, fsdp_steps)] if fsdp_steps else [])
        for name, fsdp, n in plan:
            if fsdp and device != "cuda":
                results["runs"][name] = {"skipped": "Lightning's FSDP needs a CUDA GPU"}
                continue
            cfg = compose(folder, logs, toy=args.toy, fsdp=fsdp, steps=n, device=device)
            try:
                results["runs"][name] = run_once(cfg, device=device, label=name, peak=peak)
            except Exception as err:  # report the other run too (an OOM here is a finding, not a crash)
                results["runs"][name] = {
                    "strategy": str(cfg.trainer.strategy),
                    "error": f"{type(err).__name__}: {err}",
                }
    out = Path(args.out or DEFAULT_OUT)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    print(f"written to {out}")
    return 1 if any("error" in r for r in results["runs"].values()) else 0


def scene_captions() -> list[str]:
    """Training captions of the embedded benchmark, for the folder's tokenizer."""
    from experiments.common.assembly import make_datamodule, training_captions
    from experiments.common.config import load_config

    return training_captions(make_datamodule(load_config()), 500)


if __name__ == "__main__":
    sys.exit(main())
