"""``make eval MODEL=<folder>`` / ``make caption MODEL=<folder>``: a released LLaVA-OneVision folder scored and run as it
is, no checkpoint. Its evaluation writes what a checkpoint's evaluation writes (the same files, per-category and
per-subset metrics; equal to those of a checkpoint that changed no weight), its caption is transformers' ``generate``
on the same files and prompt, and CKPT= with MODEL= (or neither) is one usage line."""

import json
import shlex

import numpy as np
import pytest
import torch
from PIL import Image

from experiments import caption, evaluate, train
from experiments.common.zero_shot import zero_shot_config

pytestmark = pytest.mark.usefixtures("one_thread")

# The twin is 6 tower layers deep (the paper recipe taps 16/19/22/25 of 26), its LM computes in float32 here.
TWIN = ["backbone.layers=[1,3,5]", "model.lm.dtype=float32", "generation.max_new_tokens=12"]
DATA = [
    "data.num_workers=0",
    "data.categories=[color,addition]",
    "data.subsets={real: '*real*', render: '*render*'}",
]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """DATA=pairs on disk: non-square PNG/JPEG pairs of several sizes in real/ and render/, two categories."""
    root = tmp_path_factory.mktemp("zero_shot_pairs")
    rng = np.random.default_rng(1)
    sizes = [(48, 27), (30, 45), (41, 33), (64, 36)]
    records = []
    for i in range(9):
        folder = "real" if i % 2 == 0 else "render"
        names = [f"{folder}/{i}_before.png", f"{folder}/{i}_after.jpg"]
        for name, size in zip(names, (sizes[i % 4], sizes[(i + 1) % 4])):
            (root / folder).mkdir(exist_ok=True)
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


@pytest.mark.slow
def test_eval_model_writes_what_a_checkpoint_s_evaluation_writes(llava_twin_processor, pairs, tmp_path):
    """A checkpoint trained one step at learning rate 0 from the same folder holds the same weights: its
    evaluation and the zero-shot one give the same files, predictions and metrics (per category, per subset)."""
    logs = f"logs_dir={tmp_path / 'logs'}"
    frozen = ["optim.lr_backbone=0", "optim.lr_mdp=0", "optim.lr_lm=0", "trainer.max_steps=1"]
    no_val = ["trainer.limit_val_batches=0", "trainer.val_check_interval=null"]
    cfg = zero_shot_config(
        llava_twin_processor,
        data="pairs",
        overrides=[*TWIN, *DATA, f"data.root={pairs}", logs, *frozen, *no_val],
    )
    train.train(cfg)
    (ckpt,) = (tmp_path / "logs").glob("zero_shot/*/version_0/checkpoints/last.ckpt")

    common = ["--data", "pairs", "--root", str(pairs)]
    zero_args = shlex.join([*TWIN, *DATA, logs])  # ARGS="..." as a shell would split it back
    assert evaluate.main(["--model", str(llava_twin_processor), *common, "--args", zero_args]) == 0
    (zero_shot_dir,) = (tmp_path / "logs").glob("zero_shot/*/eval/pairs-test")  # the default OUT
    ckpt_args = shlex.join([*DATA, "generation.max_new_tokens=12"])
    assert (
        evaluate.main(
            ["--ckpt", str(ckpt), *common, "--out", str(tmp_path / "ckpt_eval"), "--args", ckpt_args]
        )
        == 0
    )

    files = sorted(p.name for p in zero_shot_dir.iterdir())
    assert files == sorted(p.name for p in (tmp_path / "ckpt_eval").iterdir())
    assert {"gt.json", "pred.json", "metrics.json", "metrics.md"} <= set(files)
    for name in files:
        if name.endswith(".json"):
            mine, theirs = (
                json.loads((d / name).read_text()) for d in (zero_shot_dir, tmp_path / "ckpt_eval")
            )
            if name == "metrics.json":  # the checkpoint's step differs; everything scored does not
                mine, theirs = (
                    {k: v for k, v in m.items() if k not in ("step", "epoch")} for m in (mine, theirs)
                )
            assert mine == theirs, name
    metrics = json.loads((zero_shot_dir / "metrics.json").read_text())
    scored = json.dumps(metrics) + (zero_shot_dir / "metrics.md").read_text()
    assert metrics["num_pairs"] == 5 and all(k in scored for k in ("color", "addition", "real", "render"))


def test_caption_model_equals_transformers_generate(llava_twin_processor, pairs, tmp_path, capsys):
    """``make caption MODEL=``: the kit's file loading, image pipeline, prompt and greedy decoding give
    transformers' caption for the same two (non-square) files and the prompt of the rule (system turn included)."""
    from transformers import AutoProcessor, LlavaOnevisionForConditionalGeneration

    before, after = pairs / "real/0_before.png", pairs / "real/0_after.jpg"
    args = ["--model", str(llava_twin_processor), "--before", str(before), "--after", str(after)]
    assert caption.main([*args, "--out", str(tmp_path), "--args", " ".join(TWIN)]) == 0
    mine = json.loads((tmp_path / "caption.json").read_text())["caption"]
    assert (tmp_path / "heatmap.png").is_file() and capsys.readouterr().out.startswith(mine)

    processor = AutoProcessor.from_pretrained(llava_twin_processor)
    hf = LlavaOnevisionForConditionalGeneration.from_pretrained(llava_twin_processor).eval()
    instruction = zero_shot_config(llava_twin_processor).model.prompt
    system = {"role": "system", "content": [{"type": "text", "text": "You are a helpful assistant."}]}
    user = {
        "role": "user",
        "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": instruction}],
    }
    text = processor.apply_chat_template([system, user], add_generation_prompt=True)
    inputs = processor(text=[text], images=[[Image.open(before), Image.open(after)]], return_tensors="pt")
    end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    with torch.no_grad():
        out = hf.generate(**inputs, max_new_tokens=12, do_sample=False, eos_token_id=end, pad_token_id=0)
    theirs = processor.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    assert mine == theirs and len(mine) > 5  # a random twin: gibberish, but several tokens of it


@pytest.mark.parametrize("command", [evaluate, caption], ids=["eval", "caption"])
def test_checkpoint_and_model_together_or_neither_is_one_usage_line(command, llava_twin_processor, capsys):
    images = ["--before", "a.png", "--after", "b.png"] if command is caption else []
    assert command.main(["--ckpt", "x.ckpt", "--model", str(llava_twin_processor), *images]) == 2
    assert command.main(images) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: CKPT= and MODEL= together") and err[1].startswith(
        "error: CKPT= or MODEL= required"
    )
    assert len(err) == 2


def test_a_model_folder_of_another_kind_is_one_usage_line(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "siglip"}))
    assert evaluate.main(["--model", str(tmp_path)]) == 2
    assert evaluate.main(["--model", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(
        f"error: MODEL={tmp_path}: model_type 'siglip' is not an image-text-to-text model of transformers"
    )
    assert "no config.json there" in err[1] and len(err) == 2
