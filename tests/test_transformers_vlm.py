"""``make eval MODEL=`` / ``make caption MODEL=`` for transformers image-text-to-text models other than LLaVA-OneVision,
on tiny random Qwen2-VL, Qwen2.5-VL and Idefics3 twins saved with ``save_pretrained`` (tests/support/vlm_twins.py): the kit's
captions are ``model.generate`` on the processor's output for the same files and prompt, token for token, batched or
not; the evaluation writes the files a checkpoint's evaluation writes, scored per category and subset; a model whose
processor cannot take two images in one prompt is refused in one line; a cached hub id is its snapshot folder."""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import VLM_FAMILIES
from PIL import Image

import mdp
from datamodules.contract import check_sample, collate_pairs
from datamodules.images import PIPELINES, ImageTransform
from experiments import caption, evaluate
from experiments.common.config import REPO_ROOT
from experiments.common.zero_shot import check_model, zero_shot_parts
from lightning_modules.model.transformers_vlm import to_pil
from lightning_modules.transformers_captioner import TransformersCaptionerModule

pytestmark = pytest.mark.usefixtures("one_thread")

INSTRUCTION = "Describe the differences between the two images."  # conf/model/zero_shot.yaml
NEW_TOKENS = 10
ARGS = [
    "model.lm.dtype=float32",  # the twins are saved in float32; the config's default is the release's bfloat16
    f"generation.max_new_tokens={NEW_TOKENS}",
    "data.num_workers=0",
    "data.eval_batch_size=3",  # batches of photos of different sizes: left padding, images as lists
    "data.categories=[color,addition]",
    "data.subsets={real: '*real*', render: '*render*'}",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """DATA=pairs on disk: non-square PNG/JPEG pairs, before and after of different sizes, in real/ and render/."""
    root = tmp_path_factory.mktemp("vlm_pairs")
    rng = np.random.default_rng(2)
    sizes = [(48, 27), (30, 45), (41, 33), (64, 36), (50, 50)]
    records = []
    for i in range(8):
        folder = "real" if i % 2 == 0 else "render"
        names = [f"{folder}/{i}_before.png", f"{folder}/{i}_after.jpg"]
        (root / folder).mkdir(exist_ok=True)
        for name, size in zip(names, (sizes[i % 5], sizes[(i + 2) % 5])):
            coarse = rng.integers(0, 256, (size[1] // 4 + 2, size[0] // 4 + 2, 3), dtype=np.uint8)
            Image.fromarray(coarse).resize(size, Image.Resampling.BILINEAR).save(root / name, quality=95)
        records.append(
            {
                "id": f"pair_{i}",
                "before": names[0],
                "after": names[1],
                "captions": ["the red cube on the left is gone.", "a small blue sphere appears."],
                "categories": ["color" if i % 3 else "addition"],
                "split": "test" if i < 5 else "val" if i == 5 else "train",
            }
        )
    (root / "pairs.json").write_text(json.dumps(records))
    return root


@functools.cache
def load_transformers(folder):
    """The folder's processor and model, read by transformers' Auto classes (once per folder)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return AutoProcessor.from_pretrained(folder), AutoModelForImageTextToText.from_pretrained(folder).eval()


def transformers_generate(folder, before, after, instruction: str = INSTRUCTION) -> tuple[list[int], str]:
    """What a user of transformers gets for one pair: the folder's processor and chat template (both images, then
    the instruction, in one user turn), ``model.generate`` greedy; the new ids up to the end token, the text."""
    processor, model = load_transformers(folder)
    user = {
        "role": "user",
        "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": instruction}],
    }
    text = processor.apply_chat_template([user], add_generation_prompt=True)
    images = [Image.open(path).convert("RGB") for path in (before, after)]
    inputs = processor(text=[text], images=[images], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    ids = out[0, inputs["input_ids"].shape[1] :].tolist()
    end = model.generation_config.eos_token_id
    ids = ids[: ids.index(end)] if end in ids else ids
    return ids, processor.decode(ids, skip_special_tokens=True).strip()


@pytest.mark.parametrize("family", VLM_FAMILIES)
def test_eval_model_writes_a_checkpoint_s_files_with_generate_s_captions(family, vlm_twins, pairs, tmp_path):
    folder, out = vlm_twins(family), tmp_path / "eval"
    common = ["--model", str(folder), "--data", "pairs", "--root", str(pairs), "--out", str(out)]
    assert evaluate.main([*common, "--args", shlex.join(ARGS)]) == 0

    # The files CaptionMetricsCallback writes for a checkpoint's evaluation, from the same callback.
    assert sorted(p.name for p in out.iterdir()) == [
        "gt.json",
        "metrics.json",
        "metrics.md",
        "pred.json",
        "subsets.json",
    ]
    predictions = {p["image_id"]: p["caption"] for p in json.loads((out / "pred.json").read_text())}
    records = {r["id"]: r for r in json.loads((pairs / "pairs.json").read_text()) if r["split"] == "test"}
    assert sorted(predictions) == sorted(records)
    for pair_id, record in records.items():
        _, expected = transformers_generate(folder, pairs / record["before"], pairs / record["after"])
        assert predictions[pair_id] == expected, pair_id
    assert len(set(predictions.values())) > 1  # a random twin: gibberish, but it depends on the pair

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_pairs"] == 5 and set(metrics["subsets"]) == {"real", "render"}
    assert set(metrics["categories"]) == {"color", "addition"}
    subsets = json.loads((out / "subsets.json").read_text())
    assert sorted(subsets["subsets"]["real"]) == ["pair_0", "pair_2", "pair_4"]
    gt = json.loads((out / "gt.json").read_text())
    assert sorted({a["image_id"] for a in gt["annotations"]}) == sorted(records)
    assert "make score GT=" in (out / "metrics.md").read_text()


@pytest.mark.parametrize("family", VLM_FAMILIES)
def test_batched_captions_equal_generate_token_for_token(family, vlm_twins, pairs):
    """One batch of three pairs of different sizes (left-padded prompts of different lengths), one pair with its
    own instruction: every pair's token ids are transformers' for that pair alone."""
    folder = vlm_twins(family)
    parts = zero_shot_parts(folder, data="pairs", overrides=[*ARGS, f"data.root={pairs}"])
    module = parts.module
    assert isinstance(module, TransformersCaptionerModule) and not module.training
    parts.datamodule.setup("test")
    batch = next(iter(parts.datamodule.test_dataloader()))
    assert isinstance(batch["before"], list) and batch["before"][0].dtype == torch.uint8  # raw, own sizes
    instructions = module.instructions([None, "What changed between them?", None], 3)
    images = [(to_pil(b), to_pil(a)) for b, a in zip(batch["before"], batch["after"])]
    ids, cut = module.captioner.generate(images, instructions, max_new_tokens=NEW_TOKENS)

    records = {r["id"]: r for r in json.loads((pairs / "pairs.json").read_text())}
    for pair_id, instruction, mine in zip(batch["pair_id"], instructions, ids):
        record = records[pair_id]
        theirs, _ = transformers_generate(
            folder, pairs / record["before"], pairs / record["after"], instruction
        )
        assert mine == theirs, pair_id
    assert max(len(s) for s in ids) > 3  # a random twin may end a caption early, not all of them
    assert cut == [len(s) >= NEW_TOKENS for s in ids]


def test_caption_model_from_a_cached_hub_id_equals_generate(vlm_twins, pairs, tmp_path, monkeypatch, capsys):
    """``make caption MODEL=<org>/<name>`` reads the snapshot in the Hugging Face cache (offline)."""
    from huggingface_hub import constants

    folder = vlm_twins("qwen2_vl")
    repo = tmp_path / "hub" / "models--tiny--qwen2-vl"
    shutil.copytree(folder, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    path, kind, _ = check_model("tiny/qwen2-vl")
    assert path == repo / "snapshots" / "0123abcd" and kind == "qwen2_vl"

    before, after = pairs / "real/0_before.png", pairs / "real/0_after.jpg"
    args = [
        "--model",
        "tiny/qwen2-vl",
        "--before",
        str(before),
        "--after",
        str(after),
        "--out",
        str(tmp_path / "out"),
    ]
    assert caption.main([*args, "--args", shlex.join(ARGS[:2])]) == 0  # the model's keys, not the data's
    mine = json.loads((tmp_path / "out" / "caption.json").read_text())["caption"]
    assert (tmp_path / "out" / "heatmap.png").is_file() and capsys.readouterr().out.startswith(mine)
    assert mine == transformers_generate(folder, before, after)[1] and len(mine) > 3


def test_models_that_cannot_caption_a_pair_are_refused_in_one_line(vlm_twins, tmp_path, capsys):
    """Exit 2 and one line naming what the folder is or takes, before any weights are read."""
    from support.vlm_twins import write_one_image_processor

    not_vlm = tmp_path / "siglip"
    not_vlm.mkdir()
    (not_vlm / "config.json").write_text(json.dumps({"model_type": "siglip"}))
    one_image = write_one_image_processor(tmp_path / "one_image")
    text_only = tmp_path / "text_only"  # a Qwen2-VL folder whose chat template is the text-only Qwen2 one
    shutil.copytree(vlm_twins("qwen2_vl"), text_only, ignore=shutil.ignore_patterns("*.safetensors"))
    (text_only / "chat_template.jinja").write_text(
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    for model in (not_vlm, one_image, text_only, "nobody/no-such-model"):
        assert evaluate.main(["--model", str(model)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and all(line.startswith("error: ") for line in err)
    assert "model_type 'siglip' is not an image-text-to-text model" in err[0] and "Qwen2-VL" in err[0]
    assert "takes a pair's two images in one prompt" in err[1]
    assert "ShieldGemma can process at most one image per sample" in err[1]
    assert "its chat template cannot render two images" in err[2]
    assert "no such model in the Hugging Face cache" in err[3]


def test_the_processor_pipeline_keeps_images_as_loaded():
    """``ImageSpec.pipeline="processor"``: 8-bit images at their own sizes; a batch of different sizes is a list."""
    assert PIPELINES == mdp.backbone.PIPELINES
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((20, 30), (25, 15))
    ]
    transform = ImageTransform(size=32, pipeline="processor")
    tensors = [transform(im) for im in images]
    assert tensors[0].dtype == torch.uint8 and tensors[0].shape == (3, 20, 30)
    assert np.array_equal(to_pil(tensors[1]), np.asarray(images[1]))
    sample = {"pair_id": "a", "before": tensors[0], "after": tensors[1], "captions": ["x"], "categories": []}
    check_sample({**sample, "benchmark": "b"})
    batch = collate_pairs([{**sample, "benchmark": "b"}] * 2)
    assert isinstance(batch["before"], torch.Tensor) and batch["before"].shape == (2, 3, 20, 30)
    mixed = collate_pairs([{**sample, "benchmark": "b"}, {**sample, "before": tensors[1], "benchmark": "b"}])
    assert isinstance(mixed["before"], list) and [t.shape[1] for t in mixed["before"]] == [20, 25]
    with pytest.raises(ValueError, match="pipeline 'processor'"):
        to_pil(torch.zeros(3, 8, 8))


@pytest.mark.slow
def test_two_processes_score_every_pair_once_with_the_single_process_files(vlm_twins, tmp_path):
    """``ARGS="trainer.devices=2 trainer.strategy=ddp"`` (gloo on CPU): 5 pairs of the embedded benchmark dealt to
    2 processes (DistributedSampler repeats one); the same predictions and metrics files as one process."""
    from support.processes import free_port

    folder = vlm_twins("qwen2_vl")
    args = "model.lm.dtype=float32 generation.max_new_tokens=8 data.test_size=5 data.eval_batch_size=2 "
    args += "data.num_workers=0 trainer.enable_progress_bar=false"
    logs = {}
    for name, extra in (("one", ""), ("two", " trainer.devices=2 trainer.strategy=ddp")):
        cmd = [
            sys.executable,
            "-m",
            "experiments.evaluate",
            "--model",
            str(folder),
            "--out",
            str(tmp_path / name),
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": str(free_port()), "PYTHONUNBUFFERED": "1"}
        result = subprocess.run(
            [*cmd, "--args", args + extra],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=500,
        )
        logs[name] = result.stdout + result.stderr
        assert result.returncode == 0, logs[name][-4000:]
    assert "MEMBER: 2/2" in logs["two"]  # two processes really ran
    for file in ("pred.json", "gt.json", "metrics.json", "subsets.json"):
        assert (tmp_path / "one" / file).read_text() == (tmp_path / "two" / file).read_text(), file
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics["num_pairs"] == 5 and "exact" in metrics["change_id"]


def test_null_caption_limits_are_measured_in_the_model_s_own_tokens(vlm_twins):
    """``generation.max_new_tokens=null``: the longest training reference in the model's tokenizer's tokens (end
    token included), as for a trained run, in the config the module decodes with."""
    from experiments.common.assembly import training_captions
    from experiments.common.token_limits import caption_lengths

    nulls = ["model.lm.dtype=float32", "generation.max_new_tokens=null", "model.max_caption_tokens=null"]
    parts = zero_shot_parts(vlm_twins("idefics3"), overrides=[*nulls, "model.lm.tokenizer_captions=30"])
    tokenizer = parts.module.captioner.processor.tokenizer
    longest = max(caption_lengths(tokenizer, training_captions(parts.datamodule, 30)))
    assert (
        parts.cfg.generation.max_new_tokens == longest == parts.module.config["generation"]["max_new_tokens"]
    )
    assert parts.cfg.model.max_caption_tokens == longest > 5
