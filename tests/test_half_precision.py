"""Half-precision base folders, as released: LLaVA-OneVision twins stored in float16 and bfloat16 (tests/support/llava_twin.py,
``dtype=``). What is trained (tower, MDP, projector, image_newline, LoRA) keeps float32 master weights; the frozen LM
follows ``model.lm.dtype`` and computes what transformers' own model loaded in that dtype computes. End to end (slow):
the paper experiment trains on each twin with its own precision and clipping, its checkpoint holds float32 tensors,
the tower moves at the paper's lr, and caption / eval / export / resume work; the export README's code, run as
written from a folder without the kit, gives the kit's caption token for token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

import mdp
from experiments.common.assembly import resolve_static
from experiments.common.checkpoints import read_checkpoint
from experiments.common.config import load_config, to_container
from lightning_modules.captioner import CaptionerModule

REPO = Path(__file__).resolve().parents[1]
HALF = ("float16", "bfloat16")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=HALF)
def half_twin(request, tmp_path_factory) -> Path:
    from support.llava_twin import write_llava_twin

    return write_llava_twin(tmp_path_factory.mktemp(f"twin_{request.param}") / "llava", dtype=request.param)


def stored(folder: Path) -> dict[str, torch.Tensor]:
    with safe_open(folder / "model.safetensors", "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is no dict)


def suffixed(state: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    return next(v for k, v in state.items() if k == name or k.endswith("." + name))


def test_mdp_builds_a_float32_tower_from_a_half_folder(half_twin):
    files = stored(half_twin)
    assert {t.dtype for t in files.values()} == {
        getattr(torch, json.loads((half_twin / "config.json").read_text())["dtype"])
    }
    tower = mdp.build_backbone(f"hf:{half_twin}", layers=[1, 3, 5], pretrained=str(half_twin))
    assert {p.dtype for p in tower.parameters()} == {torch.float32}
    weight = tower.model.state_dict()["embeddings.patch_embedding.weight"]
    assert torch.equal(weight, suffixed(files, "vision_tower.embeddings.patch_embedding.weight").float())
    half = mdp.build_backbone(f"hf:{half_twin}", layers=[5], pretrained=str(half_twin), dtype=torch.float16)
    assert {p.dtype for p in half.parameters()} == {torch.float16}  # asked for: a frozen tower may be half


def test_trained_parts_are_float32_and_the_lm_is_transformers_own_in_its_dtype(half_twin):
    from transformers import LlavaOnevisionForConditionalGeneration

    cfg = load_config(
        overrides=[f"model.init_from={half_twin}", "model.lora.enabled=true", "model.lora.r=4", "model.lm.dtype=bfloat16",
                   "model.prompt=Describe the differences.", "model.max_caption_tokens=16", "generation.max_new_tokens=4"]
    )  # fmt: skip
    model = CaptionerModule(config=to_container(resolve_static(cfg))).eval().model
    trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert {n.split(".")[0] for n in trained} == {"backbone", "mdp", "projector", "image_newline", "lm"}
    assert {p.dtype for p in trained.values()} == {torch.float32}
    assert {p.dtype for p in model.parameters() if not p.requires_grad} == {torch.bfloat16}
    files = stored(half_twin)  # read exactly, not through the LM's bfloat16
    assert torch.equal(
        model.projector[0].weight, suffixed(files, "multi_modal_projector.linear_1.weight").float()
    )
    assert torch.equal(model.image_newline, suffixed(files, "image_newline").float())
    hf = LlavaOnevisionForConditionalGeneration.from_pretrained(half_twin, dtype=torch.bfloat16).eval()
    embeds = torch.randn(1, 12, hf.config.text_config.hidden_size, generator=torch.Generator().manual_seed(0))
    with (
        torch.no_grad(),
        model.lm.disable_adapter(),
    ):  # LoRA's B is zero anyway; compare the frozen base alone
        ours = model.lm(inputs_embeds=embeds.bfloat16()).logits
        theirs = hf(inputs_embeds=embeds.bfloat16()).logits
    assert torch.equal(ours, theirs)  # a bfloat16 RoPE (inv_freq cast with the LM) would differ here


# ----------------------------------------------------------------------------------------------- end to end (slow)
def run(module: str, *args: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, *(["-m", module] if module else []), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def paper_args(twin: Path, logs: Path, steps: int) -> list[str]:
    """EXP=paper/m3diff_so400m_qwen2 at tiny size on one CPU process; its precision (bf16-mixed), clipping (1.0),
    learning rates (tower 2e-6), LoRA, checkpointing and lm dtype (bfloat16) as the experiment sets them."""
    overrides = [
        f"model.init_from={twin}", "backbone.layers=[1,3,5]", "mdp.num_heads=2", "model.lora.r=4",
        "trainer.accelerator=cpu", "trainer.devices=1", "trainer.strategy=auto", f"trainer.max_steps={steps}",
        "trainer.accumulate_grad_batches=1", "trainer.limit_val_batches=0", "trainer.val_check_interval=null",
        "trainer.enable_progress_bar=false", "data.num_workers=0", "data.train_size=8", "data.val_size=4",
        "data.batch_size=2", f"logs_dir={logs}", "checkpoint.every_n_train_steps=1",
    ]  # fmt: skip
    return ["--exp", "paper/m3diff_so400m_qwen2", "--data", "synthetic", "--args", " ".join(overrides)]


@pytest.fixture(scope="module")
def paper_run(half_twin, tmp_path_factory) -> dict:
    logs = tmp_path_factory.mktemp("logs")
    result = run("experiments.train", *paper_args(half_twin, logs, steps=3))
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = next(logs.glob("m3diff_so400m_qwen2/hf-*/version_0/checkpoints/last.ckpt"))
    return {"twin": half_twin, "logs": logs, "ckpt": ckpt, "checkpoint": read_checkpoint(ckpt)}


@pytest.mark.slow
def test_the_paper_run_keeps_float32_master_weights_and_moves_the_tower(paper_run):
    checkpoint, twin = paper_run["checkpoint"], paper_run["twin"]
    config = checkpoint["hyper_parameters"]["config"]
    assert config["trainer"]["precision"] == "bf16-mixed" and config["trainer"]["gradient_clip_val"] == 1.0
    assert config["optim"]["lr_backbone"] == 2e-6 and checkpoint["global_step"] == 3
    assert [g["foreach"] for g in checkpoint["optimizer_states"][0]["param_groups"]] == [True] * 3
    state = checkpoint["state_dict"]
    assert {t.dtype for t in state.values()} == {torch.float32}
    files, dtype = stored(twin), next(iter(stored(twin).values())).dtype
    tower = {
        k.removeprefix("model.backbone.model."): v
        for k, v in state.items()
        if k.startswith("model.backbone.")
    }
    moved = same_in_half = total = 0
    for name, value in tower.items():
        start = suffixed(files, f"vision_tower.{name}")
        moved += int((value != start.float()).sum())
        same_in_half += int((value.to(dtype) == start).sum())  # what a half-precision master copy would hold
        total += value.numel()
    assert moved / total > 0.95  # 3 steps at 2e-6 move (nearly) every weight in float32 ...
    assert (
        same_in_half / total > 0.5
    )  # ... and most of those updates would have rounded away in half precision


def kit_caption(ckpt: Path, folder: Path) -> tuple[tuple[Path, Path], str]:
    """``make caption`` from a checkpoint, in this process (the entry point's ``main``, as make runs it)."""
    from experiments import caption

    images = pair_images(folder)
    argv = ["--ckpt", str(ckpt), "--before", str(images[0]), "--after", str(images[1])]
    assert caption.main([*argv, "--out", str(folder / "caption")]) == 0
    return images, json.loads((folder / "caption" / "caption.json").read_text())["caption"]


@pytest.mark.slow
def test_caption_eval_and_resume_work_from_the_run(paper_run, tmp_path):
    from experiments import evaluate

    assert kit_caption(paper_run["ckpt"], tmp_path)[1]  # make caption runs from the half-precision base's run
    argv = ["--ckpt", str(paper_run["ckpt"]), "--split", "val", "--out", str(tmp_path / "eval")]
    assert evaluate.main([*argv, "--args", "trainer.limit_val_batches=null generation.max_new_tokens=4"]) == 0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["stage"] == "val"
    resumed = run(
        "experiments.train", *paper_args(paper_run["twin"], paper_run["logs"], steps=4), "--resume", "last"
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = read_checkpoint(paper_run["ckpt"])
    assert after["global_step"] == 4 and {t.dtype for t in after["state_dict"].values()} == {torch.float32}


def pair_images(folder: Path) -> tuple[Path, Path]:
    """Two 32 px noise images (the twin's size) of 0 / 255 values: their normalised pixels are exact in any
    arithmetic, so the kit's and transformers' image pipelines give bit-equal inputs."""
    from PIL import Image

    rng = np.random.default_rng(3)
    paths = folder / "before.png", folder / "after.png"
    for path in paths:
        Image.fromarray((rng.integers(0, 2, (32, 32, 3)) * 255).astype(np.uint8)).save(path)
    return paths


@pytest.mark.slow
def test_export_readme_code_run_without_the_kit_gives_the_kit_s_caption(paper_run, tmp_path):
    from experiments import export

    out = tmp_path / "export"
    assert export.main(["--ckpt", str(paper_run["ckpt"]), "--out", str(out)]) == 0
    readme = (out / "README.md").read_text()
    assert "float32" in readme and "729" not in readme  # dtypes said; no hard-coded token count
    images, kit_text = kit_caption(paper_run["ckpt"], tmp_path)
    code = readme.split("```python\n", 1)[1].split("```", 1)[0].replace("{this folder}", str(out))
    # A folder without the kit: only the mdp library (as installed from this checkout) is importable.
    site, work = tmp_path / "site", tmp_path / "work"
    site.mkdir(), work.mkdir()
    (site / "mdp").symlink_to(REPO / "mdp")
    script = (
        code
        + f"\ntext, ids = caption({str(images[0])!r}, {str(images[1])!r})\nprint(json.dumps([text, ids]))\n"
    )
    (work / "readme_code.py").write_text(script)
    alone = run("", "readme_code.py", cwd=work, env={"PYTHONPATH": str(site)})
    assert alone.returncode == 0, alone.stderr[-3000:]
    text, ids = json.loads(alone.stdout.strip().splitlines()[-1])
    assert text == kit_text
    kit_ids = kit_caption_ids(paper_run["ckpt"], out, images)
    assert ids == kit_ids and len(ids) > 3  # token for token


def kit_caption_ids(ckpt: Path, export: Path, images: tuple[Path, Path]) -> list[int]:
    """The kit's greedy token ids for the pair (its checkpoint, its generation settings), on the base folder's
    image processor's pixels (bit-equal to the kit's own for these images: :func:`pair_images`)."""
    from PIL import Image
    from transformers import AutoImageProcessor

    from experiments.common.checkpoints import load_module

    module = load_module(ckpt).eval()
    processor = AutoImageProcessor.from_pretrained(
        json.loads((export / "m3diff.json").read_text())["init_from"]
    )
    pair = [[Image.open(p).convert("RGB") for p in images]]
    pixels = processor(pair, return_tensors="pt")["pixel_values"].flatten(0, 1)
    sequences, _ = module.model.generate(pixels[:1], pixels[1:], **module.config["generation"])
    return sequences[0]
