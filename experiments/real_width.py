"""The paper experiment at a real width on this machine's CPU: ``make real-width [OUT=<dir>] [ARGS="--toy"]``.

``experiments/paper/m3diff_llava_ov_0.5b.yaml`` at LLaVA-OneVision-0.5B's published sizes (the 26-layer SigLIP-so400m
tower, Qwen2-0.5B, LoRA r=128, MDP with 16 heads) with random weights, written as released folders are (float16,
``save_pretrained``), then, one process at a time (each its own child, watched from here):

1. ``train``: 2 optimizer steps of one pair (384 px) with gradient clipping and activation checkpointing, fp32
   compute (``trainer.precision=32-true``, ``model.lm.dtype=float32``), checkpointed;
2. ``resume``: that checkpoint resumed for 1 more step, checkpointed again;
3. ``make caption`` from it (the kit's own command);
4. the activation estimator (``experiments/activation_memory.py``) at the same widths, precision and token count.

Measured: each step's wall time, the RSS bytes alive between the forward and the backward (what autograd and
activation checkpointing keep; children run with ``MALLOC_MMAP_THRESHOLD_`` so freed tensors leave RSS), the
saved-tensor bytes outside checkpointed layers (``saved_tensors_hooks``), each phase's peak RSS, the checkpoint
size. Before starting, and every 0.2 s while a child runs, memory is checked: a run that would not fit stops with
the numbers (exit 3) instead of taking the machine down. Results: ``OUT/real_width.json`` and a table.

``--toy``: the same path at the twin's toy sizes (minutes; ``make test`` runs it).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from experiments.common import cli, memwatch

EXPERIMENT = "paper/m3diff_llava_ov_0.5b"
QWEN2_05B = dict(  # Qwen/Qwen2-0.5B-Instruct's config.json
    vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
    num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1000000.0, tie_word_embeddings=True,
)  # fmt: skip
TOY_TEXT = dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, tie_word_embeddings=True)  # fmt: skip
TOY_TOWER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=6, num_attention_heads=2, image_size=32,
                 patch_size=8, vision_use_head=False)  # fmt: skip
GIB = memwatch.GIB


# ---------------------------------------------------------------------------------------------- config
def overrides(work: Path, *, steps: int, toy: bool) -> list[str]:
    out = [
        f"model.init_from={work / 'llava-onevision-0.5b'}", f"logs_dir={work / 'logs'}",
        "trainer.accelerator=cpu", "trainer.devices=1", "trainer.strategy=auto", "trainer.precision=32-true",
        "model.lm.dtype=float32", f"trainer.max_steps={steps}", "trainer.accumulate_grad_batches=1",
        "trainer.limit_val_batches=0", "trainer.val_check_interval=null", "trainer.enable_progress_bar=false",
        "data.batch_size=1", "data.num_workers=0", "data.train_size=8",
        "data.val_size=4", "data.test_size=4", "generation.max_new_tokens=16",
    ]  # fmt: skip
    if toy:
        out += ["backbone.layers=[1,3,5]", "mdp.num_heads=2", "model.lora.r=8"]
    return out


def compose(work: Path, *, steps: int, toy: bool) -> Any:
    from experiments.common.config import load_config

    return load_config(
        experiment=EXPERIMENT, groups={"data": "synthetic"}, overrides=overrides(work, steps=steps, toy=toy)
    )


def parameter_counts(toy: bool) -> dict[str, int]:
    """Parameters of the run's parts, built on the meta device (no memory): the memory arithmetic's inputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

    import mdp

    tower_sizes, text = (TOY_TOWER, TOY_TEXT) if toy else (mdp.LLAVA_OV_TOWER, QWEN2_05B)
    with torch.device("meta"):
        tower = SiglipVisionModel(SiglipVisionConfig(**tower_sizes))
        lm = Qwen2ForCausalLM(Qwen2Config(**text))
        width, taps = tower_sizes["hidden_size"], 3 if toy else 4
        module = mdp.MDP(dim=width, num_layers=taps, num_heads=2 if toy else 16, identity_init=True)
        lm_params = sum(p.numel() for p in lm.parameters())
        lora = get_peft_model(lm, LoraConfig(r=8 if toy else 128, target_modules="all-linear"))
    projector = width * text["hidden_size"] + text["hidden_size"] ** 2 + 2 * text["hidden_size"]
    return {
        "tower": sum(p.numel() for p in tower.parameters()),
        "mdp": sum(p.numel() for p in module.parameters()),
        "projector": projector,
        "lm_frozen": lm_params,
        "lora": sum(p.numel() for n, p in lora.named_parameters() if "lora_" in n),
    }


def memory_plan_gib(counts: dict[str, int]) -> dict[str, float]:
    """fp32 on CPU: trained tensors x (weight + gradient + 2 AdamW moments), the frozen LM x 4 bytes."""
    trained = counts["tower"] + counts["mdp"] + counts["projector"] + counts["lora"]
    return {
        "trained_weights_grads_adam": round(trained * 16 / GIB, 2),
        "frozen_lm": round(counts["lm_frozen"] * 4 / GIB, 2),
        "checkpoint_file": round(trained * 12 / GIB, 2),  # weights + 2 moments
    }


# ---------------------------------------------------------------------------------------------- children
class Meter:
    """A Lightning callback (built lazily: Lightning is imported in the child only) timing each step and measuring
    what the forward leaves alive for the backward."""

    @staticmethod
    def build() -> Any:
        import lightning as L
        import torch

        class _Meter(L.Callback):
            def __init__(self) -> None:
                self.steps: list[dict[str, Any]] = []

            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
                # Last step's gradients freed now rather than after the forward (Lightning's zero_grad comes between
                # forward and backward): the RSS difference below is then the forward's alone.
                pl_module.zero_grad(set_to_none=True)
                memwatch.reset_peak_rss()
                self.batch, self.rss0 = batch, memwatch.rss()
                params = {p.untyped_storage().data_ptr() for p in pl_module.parameters()}
                self.saved = memwatch.SavedBytes(torch, params)
                self.saved.start()
                self.t0 = time.perf_counter()

            def on_before_backward(self, trainer, pl_module, loss) -> None:
                self.saved.stop()
                self.forward_s, self.rss1 = time.perf_counter() - self.t0, memwatch.rss()

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
                model = pl_module.model
                ids, _ = pl_module.tokenize(
                    pl_module.pick_references(self.batch, step=trainer.global_step - 1)
                )
                image = model.backbone.num_tokens + (model.image_newline is not None)
                self.steps.append({
                    "step": trainer.global_step,
                    "seconds": round(time.perf_counter() - self.t0, 2),
                    "forward_seconds": round(self.forward_s, 2),
                    "loss": round(float(outputs["loss"] if isinstance(outputs, dict) else outputs), 4),
                    "tokens": sum(t.numel() for t in model.text_segments) + 2 * image + ids.shape[1],
                    "caption_tokens": int(ids.shape[1]),
                    "activation_rss_gib": round((self.rss1 - self.rss0) / GIB, 3),
                    "saved_outside_checkpoints_gib": round(self.saved.total / GIB, 3),
                    "step_peak_rss_gib": round(memwatch.peak_rss() / GIB, 2),
                })  # fmt: skip

        return _Meter()


def phase_folder(work: Path, toy: bool) -> dict[str, Any]:
    """The float16 LLaVA-OneVision-0.5B folder with random weights, and the caption command's two images."""
    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    from experiments.common.assembly import make_datamodule, training_captions
    from experiments.common.config import load_config
    from experiments.common.llava_folder import write_llava_folder
    from mdp import LLAVA_OV_TOWER

    captions = training_captions(make_datamodule(load_config()), 500)
    folder = write_llava_folder(work / "llava-onevision-0.5b", captions, tower=TOY_TOWER if toy else LLAVA_OV_TOWER,
                                text=TOY_TEXT if toy else QWEN2_05B, weights_dtype=torch.float16,
                                image_processor=True)  # fmt: skip
    rng = np.random.default_rng(0)
    for name, box in (("before", (60, 60, 200, 160)), ("after", (300, 180, 440, 280))):  # a block that moved
        image = Image.fromarray(rng.integers(0, 256, (384, 512, 3), dtype=np.uint8))
        ImageDraw.Draw(image).rectangle(box, fill=(220, 40, 40))
        image.save(work / f"{name}.png")
    weights = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    return {"folder": str(folder), "weights_gib": round(weights / GIB, 3)}


def phase_train(work: Path, toy: bool, *, steps: int, resume: bool) -> dict[str, Any]:
    """``steps`` optimizer steps (from the checkpoint when ``resume``), then the checkpoint written."""
    import torch

    from callbacks.safety import LastCheckpoint
    from experiments.common.assembly import assemble
    from experiments.common.trainer import make_trainer

    cfg = compose(work, steps=steps, toy=toy)
    torch.manual_seed(int(cfg.seed))
    start = time.perf_counter()
    parts = assemble(cfg)
    build_s = time.perf_counter() - start
    meter, ckpt = Meter.build(), work / "last.ckpt"
    # The kit's last.ckpt writer, saving at the final step (mid-epoch: the state a killed or stopped run resumes from).
    last = LastCheckpoint(work, every_n_train_steps=steps)
    trainer = make_trainer(parts.cfg, logger=False, callbacks=[meter, last])
    trainer.fit(
        parts.module, datamodule=parts.datamodule, ckpt_path=ckpt if resume else None, weights_only=True
    )
    module = parts.module
    state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)["state_dict"]
    optimizer = trainer.optimizers[0]
    return {
        "global_step": trainer.global_step,
        "build_seconds": round(build_s, 1),
        "steps": meter.steps,
        "optimizer": "fused" if optimizer.defaults.get("fused") else "foreach",
        "trainable_params": sum(p.numel() for p in module.parameters() if p.requires_grad),
        "frozen_params": sum(p.numel() for p in module.parameters() if not p.requires_grad),
        "checkpoint_gib": round(ckpt.stat().st_size / GIB, 3),
        "checkpoint_dtypes": sorted({str(t.dtype) for t in state.values()}),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, 2),
    }


# ---------------------------------------------------------------------------------------------- the parent
def preflight(toy: bool) -> dict[str, Any]:
    """What the run needs against what the machine has now: ``need_gib`` for its steps (a run that cannot have it is
    not started), ``peak_gib`` while a checkpoint is written or read (Lightning holds the whole file in RAM: measured
    17.0 GiB at full width, docs/paper_scale.md; the guard stops the run if the machine cannot give it then)."""
    counts = parameter_counts(toy)
    plan = memory_plan_gib(counts)
    # + activations (~1 GiB at full width, measured) and the interpreter and libraries (~1 GiB)
    need = plan["trained_weights_grads_adam"] + plan["frozen_lm"] + (0.1 if toy else 2.0)
    return {"parameters": counts, "plan_gib": plan, "need_gib": round(need, 1),
            "peak_gib": round(need + plan["checkpoint_file"], 1),
            "mem_available_gib": round(memwatch.mem_available() / GIB, 1)}  # fmt: skip


def phases(work: Path, *, toy: bool, steps: int) -> list[tuple[str, list[str]]]:
    me = ["-m", "experiments.real_width", "--work", str(work), *(["--toy"] if toy else [])]
    return [
        ("folder", [*me, "--phase", "folder"]),
        ("train", [*me, "--phase", "train", "--steps", str(steps)]),
        ("resume", [*me, "--phase", "resume", "--steps", str(steps + 1)]),
        ("caption", ["-m", "experiments.caption", "--ckpt", str(work / "last.ckpt"), "--before",
                     str(work / "before.png"), "--after", str(work / "after.png"), "--out", str(work / "caption")]),
    ]  # fmt: skip


def estimate(work: Path, *, toy: bool, tokens: int, caption_tokens: int) -> dict[str, Any]:
    """experiments/activation_memory.py at the run's widths, precision (32-true) and token counts."""
    cmd = ["-m", "experiments.activation_memory", "--model", "0.5b", "--precision", "32-true",
           "--tokens", str(tokens), "--layer-tokens", str(tokens), "--caption-tokens", str(caption_tokens),
           *(["--toy"] if toy else [])]  # fmt: skip
    watched = memwatch.run_child(cmd, work / "estimate.log", stdout=work / "estimate.json")
    if watched.get("returncode") == 0:
        watched["result"] = json.loads((work / "estimate.json").read_text())
    return watched


def command(args: argparse.Namespace) -> int:
    if args.phase:
        work, run = Path(args.work), {"folder": lambda: phase_folder(Path(args.work), args.toy)}
        run["train"] = lambda: phase_train(work, args.toy, steps=args.steps, resume=False)
        run["resume"] = lambda: phase_train(work, args.toy, steps=args.steps, resume=True)
        (work / f"{args.phase}.json").write_text(json.dumps(run[args.phase](), indent=2) + "\n")
        return 0
    results: dict[str, Any] = {"toy": args.toy, "command": "make real-width" + (' ARGS="--toy"' if args.toy else ""),
                               "preflight": preflight(args.toy), "phases": {}}  # fmt: skip
    work = Path(args.out or tempfile.mkdtemp(prefix="m3diff-real-width-"))
    work.mkdir(parents=True, exist_ok=True)
    pre = results["preflight"]
    if not args.toy and pre["need_gib"] > pre["mem_available_gib"]:
        results["stopped"] = (f"not started: needs ~{pre['need_gib']} GiB ({pre['plan_gib']}), the machine has "
                              f"{pre['mem_available_gib']} GiB available now")  # fmt: skip
        return finish(results, work, code=3)
    for name, cmd in phases(work, toy=args.toy, steps=args.steps):
        watched = memwatch.run_child(cmd, work / f"{name}.log")
        if (work / f"{name}.json").is_file():
            watched.update(json.loads((work / f"{name}.json").read_text()))
        results["phases"][name] = watched
        if "stopped" in watched or watched["returncode"] != 0:
            results["stopped"] = f"phase {name}: " + watched.get(
                "stopped", f"exit {watched['returncode']} ({work / name}.log)"
            )
            return finish(results, work, code=3 if "stopped" in watched else 1)
    first = results["phases"]["train"]["steps"][0]
    results["estimate"] = estimate(
        work, toy=args.toy, tokens=first["tokens"], caption_tokens=first["caption_tokens"]
    )
    results["caption"] = json.loads((work / "caption" / "caption.json").read_text())["caption"]
    return finish(results, work, code=0)


def finish(results: dict[str, Any], work: Path, *, code: int) -> int:
    out = work / "real_width.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    print(f"written to {out}")
    return code


def render(results: dict[str, Any]) -> str:
    pre = results["preflight"]
    lines = [f"real-width ({'toy sizes: numbers mean nothing' if results['toy'] else 'LLaVA-OneVision-0.5B widths'})",
             f"planned: {pre['plan_gib']} GiB; needs ~{pre['need_gib']} GiB for its steps, ~{pre['peak_gib']} GiB while "
             f"a checkpoint is written or read; available at start {pre['mem_available_gib']} GiB"]  # fmt: skip
    for name, phase in results["phases"].items():
        shown = {k: v for k, v in phase.items() if k not in ("steps", "folder")}
        lines.append(f"{name}: {shown}")
        lines += [f"  step {s['step']}: {s}" for s in phase.get("steps", [])]
    if "estimate" in results and "result" in results["estimate"]:
        lines.append(
            f"estimate (activation_memory, same widths): {results['estimate']['result']['with_checkpointing_gib']}"
        )
    if "stopped" in results:
        lines.append(f"STOPPED: {results['stopped']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--toy", action="store_true", help="toy sizes (seconds; the code path only)")
    parser.add_argument(
        "--steps", type=int, default=2, help="optimizer steps before the checkpoint (default 2)"
    )
    parser.add_argument(
        "--out", default="", help="folder for the run and real_width.json (default: a temp folder)"
    )
    parser.add_argument(
        "--args", default="", help='these options as one string (make real-width ARGS="--toy")'
    )
    parser.add_argument("--phase", default="", help=argparse.SUPPRESS)  # a child's phase
    parser.add_argument("--work", default="", help=argparse.SUPPRESS)
    argv = list(sys.argv[1:] if argv is None else argv)
    return cli.run(parser, lambda args: command(parser.parse_args([*argv, *cli.split_args(args.args)])), argv)


if __name__ == "__main__":
    sys.exit(main())
