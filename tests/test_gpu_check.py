"""``make gpu-check`` at toy size on CPU: the paper experiment's code path (config-only LLaVA-OneVision folder,
random init, LoRA, checkpointing) trains, measures, saves an adapter-only checkpoint; FLOPs and GPU peaks are right."""

from __future__ import annotations

import json
import math

import pytest
import torch

from experiments import gpu_check


def test_known_gpus_have_their_bf16_peak_and_others_none():
    names = {
        "NVIDIA H200": 989.0,
        "NVIDIA H100 80GB HBM3": 989.0,
        "NVIDIA H100 PCIe": 756.0,
        "NVIDIA H100 NVL": 835.0,
        "NVIDIA A100-SXM4-40GB": 312.0,
        "NVIDIA A100 80GB PCIe": 312.0,
        "NVIDIA L40S": 362.0,
        "NVIDIA L4": 121.0,
        "NVIDIA A10": 125.0,
        "Tesla T4": None,
        "NVIDIA GeForce RTX 4090": None,
    }
    assert {n: gpu_check.peak_tflops(n) for n in names} == names


@pytest.mark.slow
def test_toy_gpu_check_trains_measures_and_reports(tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--args", f"--toy --out {out}"]) == 0
    results = json.loads(out.read_text())
    assert results["toy"] and results["machine"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    run = results["runs"]["single"]
    assert run["steps"] == 2 and run["pairs_per_step"] == 2 and run["strategy"] == "auto"
    assert all(math.isfinite(x) for x in run["losses"]) and run["step_s"] > 0 and run["pairs_per_s"] > 0
    # 2 x (16 patch tokens + image_newline) + the chat prompt + the caption
    assert run["tokens_per_pair"] > 2 * 17 + 20 and run["model_tflop_per_step"] > 0
    assert 0 < run["checkpoint_mb"] < 50 and 0 < run["trainable_params_m"] < run["params_m"]
    if not torch.cuda.is_available():
        assert "mfu" not in run and run["peak_rss_gib"] > 0
        assert "needs a CUDA GPU" in results["runs"]["fsdp"]["skipped"]
    printed = capsys.readouterr().out
    assert "toy sizes: numbers mean nothing" in printed and "single (auto, 32-true)" in printed


@pytest.mark.slow
def test_model_flops_count_recomputation_once(tmp_path):
    """Checkpointing repeats layers' forwards in backward; model FLOPs leave the repeats out, so they match the
    count of the same step without checkpointing."""
    from experiments.common import assembly
    from experiments.common.config import load_config

    folder = tmp_path / "folder"
    folder.mkdir()
    gpu_check.write_folder(
        folder, assembly.training_captions(assembly.make_datamodule(load_config()), 200), toy=True
    )
    counts = []
    for checkpointing in (True, False):
        cfg = gpu_check.compose(folder, tmp_path / "logs", toy=True, fsdp=False, steps=2, device="cpu")
        cfg.backbone.grad_checkpointing = cfg.model.lm.grad_checkpointing = checkpointing
        torch.manual_seed(0)
        parts = assembly.assemble(cfg, device="cpu")
        datamodule, module = parts.datamodule, parts.module
        datamodule.setup("fit")
        counts.append(
            gpu_check.model_flops(module, next(iter(datamodule.train_dataloader())), precision="32-true")
        )
    with_ckpt, without = counts
    assert with_ckpt["recomputed"] > 0 and without["recomputed"] == 0
    assert with_ckpt["train_step"] == pytest.approx(without["train_step"], rel=0.03)
    assert (
        without["train_step"] > 2 * without["forward"]
    )  # backward through a frozen LM still costs ~1 forward


def test_activation_memory_counts_what_autograd_saves_and_checkpointing_keeps_less():
    from experiments.activation_memory import estimate

    result = estimate(tokens=100_000, layer_tokens=16, toy=True)  # the layer runs at 16 tokens
    counted = result["counted"]
    assert counted["lm_layer_bytes_per_token"] > 0 and counted["mdp_mib_per_pair"] > 0
    with_ckpt, without = result["with_checkpointing_gib"], result["without_checkpointing_gib"]
    assert 0 < with_ckpt["kept_total"] < without["total"]
    assert without["lm_layers"] == pytest.approx(
        2 * 100_000 * counted["lm_layer_bytes_per_token"] / 2**30, abs=1e-3
    )


@pytest.mark.slow
def test_real_size_model_builds_on_the_meta_device_with_the_documented_sizes(tmp_path):
    """make gpu-check's model, built without memory: the architecture docs/paper_scale.md's arithmetic uses."""
    from experiments.common import assembly
    from experiments.common.config import load_config

    folder = tmp_path / "folder"
    folder.mkdir()
    gpu_check.write_folder(
        folder, assembly.training_captions(assembly.make_datamodule(load_config()), 200), toy=False
    )
    cfg = gpu_check.compose(folder, tmp_path / "logs", toy=False, fsdp=False, steps=2, device="cpu")
    parts = assembly.assemble(cfg, device="meta")
    cfg, model = parts.cfg, parts.module.model  # the resolved config: the folder's tower and sizes

    def count(module, keep=lambda p: True):
        return sum(p.numel() for p in module.parameters() if keep(p))

    assert count(model.lm, lambda p: not p.requires_grad) == 7_615_616_512  # Qwen2-7B, frozen
    assert count(model.lm, lambda p: p.requires_grad) == 322_961_408  # LoRA r=128 on every linear layer
    assert (count(model.backbone), count(model.mdp), count(model.projector)) == (
        397_745_440,
        71_075_520,
        16_980_992,
    )
    assert {p.dtype for p in model.lm.parameters() if not p.requires_grad} == {torch.bfloat16}
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    assert model.backbone.grid == (27, 27) and model.backbone.layers == (16, 19, 22, 25)
    assert (
        cfg.data.batch_size == 2 and cfg.backbone.image_size == 384 and cfg.trainer.precision == "bf16-mixed"
    )
