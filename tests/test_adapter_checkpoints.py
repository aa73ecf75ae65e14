"""LoRA on a LLaVA-OneVision base, end to end through the CLIs: ``make train`` from a tiny twin writes adapter-only
checkpoints (no frozen base tensor), a killed run resumes bit-identically, ``make caption`` / ``make eval`` rebuild
the base from the folder, a changed or missing base is refused (exit 2), and ``make export`` writes a peft adapter
and safetensors that load onto the base with transformers / peft / mdp alone, as its README shows."""

from __future__ import annotations

import importlib
import json
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from support.events import losses
from support.processes import finish, start_training, wait_for

from experiments.common.checkpoints import read_checkpoint

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def twin_run(twin: Path) -> list[str]:
    return [
        f"model.init_from={twin}",
        "model.lora.enabled=true",
        "model.lora.r=4",
        "model.lora.alpha=8",
        "model.prompt='Describe the differences.'",
        "data.train_size=24",  # 6 batches per epoch: the run crosses an epoch boundary after the resume
        "data.num_workers=0",
        "trainer.max_steps=8",
        "trainer.val_check_interval=null",
        "trainer.limit_val_batches=0",
        "checkpoint.every_n_train_steps=2",
        "optim.warmup_steps=2",
    ]


@pytest.fixture(scope="module")
def twin(tmp_path_factory, llava_twin):
    """A private copy: the tests below change it."""
    return Path(shutil.copytree(llava_twin, tmp_path_factory.mktemp("twin") / "llava"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, twin):
    """An uninterrupted run and a run SIGKILLed after its first checkpoint and resumed with RESUME=last."""
    root = tmp_path_factory.mktemp("lora_runs")
    full_logs, killed_logs = root / "uninterrupted", root / "killed"
    run = twin_run(twin)
    full = start_training(full_logs, *run)
    killed = start_training(killed_logs, *run)
    run_dir = next_run_dir(killed_logs, killed)
    last = run_dir / "checkpoints" / "last.ckpt"
    wait_for(last, killed)
    killed.kill()
    assert finish(killed)[0] == -signal.SIGKILL
    code, _, err = finish(full)
    assert code == 0, err[-3000:]
    saved_step = read_checkpoint(last)["global_step"]
    code, _, err = finish(start_training(killed_logs, *run, resume="last"))
    assert code == 0, err[-3000:]
    full_dir = next(full_logs.glob("default/*/version_0"))
    assert full_dir.parent.name == run_dir.parent.name and full_dir.parent.name.startswith("hf-")
    return {"full": full_dir, "resumed": run_dir, "saved_step": saved_step}


def next_run_dir(logs: Path, proc: subprocess.Popen) -> Path:
    """The run folder of the only run under ``logs`` (its name follows the twin's path)."""
    import time

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        found = list(logs.glob("default/*/version_0"))
        if found:
            return found[0]
        if proc.poll() is not None:
            raise AssertionError(proc.logs[1].read_text()[-3000:])
        time.sleep(0.1)
    raise AssertionError(f"no run folder under {logs}")


def trainable_names(twin: Path) -> tuple[set[str], set[str]]:
    from experiments.common.assembly import resolve_static
    from experiments.common.config import load_config, to_container
    from lightning_modules.captioner import CaptionerModule

    overrides = [o for o in twin_run(twin) if not o.startswith("model.prompt")]
    cfg = resolve_static(load_config(overrides=overrides))
    module = CaptionerModule(config=to_container(cfg))
    names = dict(module.named_parameters(remove_duplicate=False))
    return {n for n, p in names.items() if p.requires_grad}, {
        n for n, p in names.items() if not p.requires_grad
    }


def test_checkpoints_hold_no_frozen_base_tensor(trained, twin):
    checkpoint = read_checkpoint(trained["full"] / "checkpoints" / "last.ckpt")
    trainable, frozen = trainable_names(twin)
    keys = set(checkpoint["state_dict"])
    assert keys == trainable  # LoRA adapters, tower, MDP, projector, image_newline; nothing else
    assert not keys & frozen and any(".lm." in k and "lora_" in k for k in keys)
    assert set(checkpoint["base_model"]) == {str(twin)}
    assert checkpoint["base_model"][str(twin)]["fingerprint"].startswith("sha256-full:")


def test_killed_lora_run_resumes_bit_identically(trained):
    full, resumed, step = trained["full"], trained["resumed"], trained["saved_step"]
    expected, got = losses(full), losses(resumed)
    # Steps before the kill may be missing from the killed run's event file (SIGKILL does not flush it).
    assert sorted(expected) == list(range(8)) and set(range(step, 8)) <= set(got)
    assert {s: got[s] for s in range(step, 8)} == {s: expected[s] for s in range(step, 8)}
    a = read_checkpoint(full / "checkpoints" / "last.ckpt")["state_dict"]
    b = read_checkpoint(resumed / "checkpoints" / "last.ckpt")["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def run_cli(module: str, *args: str, capsys) -> tuple[int, str]:
    """An entry point's ``main`` in this process, as ``python -m <module>`` runs it: (exit status, stderr)."""
    code = importlib.import_module(module).main(list(args))
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("pair")
    for name, color in (("before.png", (200, 30, 30)), ("after.png", (30, 30, 200))):
        Image.new("RGB", (40, 40), color).save(folder / name)
    return folder / "before.png", folder / "after.png"


def test_caption_and_eval_rebuild_the_base(trained, pair, tmp_path, capsys):
    ckpt = trained["full"] / "checkpoints" / "last.ckpt"
    code, err = run_cli("experiments.caption", "--ckpt", str(ckpt), "--before", str(pair[0]), "--after",
                        str(pair[1]), "--out", str(tmp_path / "caption"), capsys=capsys)  # fmt: skip
    assert code == 0, err[-3000:]
    assert json.loads((tmp_path / "caption" / "caption.json").read_text())["caption"] is not None
    code, err = run_cli("experiments.evaluate", "--ckpt", str(ckpt), "--split", "val", "--out",
                        str(tmp_path / "eval"), "--args", "data.val_size=4 generation.max_new_tokens=4 trainer.limit_val_batches=null", capsys=capsys)  # fmt: skip
    assert code == 0, err[-3000:]
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["stage"] == "val"


def test_export_loads_onto_the_base_with_transformers_peft_and_mdp(trained, twin, tmp_path, capsys):
    ckpt = trained["full"] / "checkpoints" / "last.ckpt"
    out = tmp_path / "export"
    code, err = run_cli("experiments.export", "--ckpt", str(ckpt), "--out", str(out), capsys=capsys)
    assert code == 0, err[-3000:]
    assert (out / "lm_adapter" / "adapter_config.json").is_file()
    readme = (out / "README.md").read_text()
    snippet = readme.split("```python\n", 1)[1].split("```", 1)[0].replace("{this folder}", str(out))
    namespace: dict = {}
    exec(compile(snippet, "export-README", "exec"), namespace)  # the README's code, as written
    model, difference = namespace["model"], namespace["difference"]

    from experiments.evaluate import load_module

    kit = load_module(ckpt).eval().model
    g = torch.Generator().manual_seed(0)
    before, after = torch.randn(1, 3, 32, 32, generator=g), torch.randn(1, 3, 32, 32, generator=g)
    layers = json.loads((out / "m3diff.json").read_text())["backbone"]["layers"]
    llava = model.base_model.model.model
    with torch.no_grad():
        expected = kit.encode(before, after).images
        hidden = [llava.vision_tower(x, output_hidden_states=True).hidden_states for x in (before, after)]
        fused = difference([hidden[0][k + 1] for k in layers], [hidden[1][k + 1] for k in layers])
        for image, tokens in zip(expected, (fused.before, fused.after)):
            block = torch.cat([llava.multi_modal_projector(tokens), llava.image_newline[None, None]], dim=1)
            assert torch.allclose(block, image, atol=1e-5)
        ids = torch.tensor([[5, 17, 42, 99, 7]])
        theirs = model(input_ids=ids).logits
        ours = kit.lm(input_ids=ids).logits
    assert torch.allclose(theirs, ours, atol=1e-5)  # the LoRA'd language model, loaded by peft onto LLaVA


def test_a_changed_or_missing_base_is_refused(trained, twin, pair, tmp_path, capsys):
    ckpt = trained["full"] / "checkpoints" / "last.ckpt"
    weights = twin / "model.safetensors"
    state = load_file(weights)
    key = next(k for k in state if "language_model" in k and k.endswith("q_proj.weight"))
    original = state[key].clone()
    state[key][0, 0] += 1.0  # another fine-tune of the same layout
    save_file(state, weights)
    try:
        args = [
            "--ckpt",
            str(ckpt),
            "--before",
            str(pair[0]),
            "--after",
            str(pair[1]),
            "--out",
            str(tmp_path),
        ]
        code, err = run_cli("experiments.caption", *args, capsys=capsys)
        assert code == 2 and "has changed" in err and str(twin) in err
        code, err = run_cli(
            "experiments.train", "--resume", str(ckpt), "--args", " ".join(twin_run(twin)), capsys=capsys
        )
        assert code == 2 and "has changed" in err
    finally:
        state[key] = original
        save_file(state, weights)
    moved = twin.with_name("moved")
    twin.rename(moved)
    try:
        code, err = run_cli("experiments.evaluate", "--ckpt", str(ckpt), "--split", "val", capsys=capsys)
        assert code == 2 and "is not there" in err
    finally:
        moved.rename(twin)
