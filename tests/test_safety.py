"""Safety: non-finite losses/gradients stop the run with the step and keep the last good checkpoint; checkpoints
are read weights-only (a pickle payload never runs) and a model-config mismatch names its keys; config values
are never code; Makefile variables never reach a shell as code."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from support.tiny import TINY_MODEL

from callbacks.safety import NonFiniteError, NonFiniteGuard
from experiments import caption, evaluate, train
from experiments.common import assembly
from experiments.common.checkpoints import CheckpointError, read_checkpoint
from experiments.common.config import ConfigError, load_config
from lightning_modules.captioner import CaptionerModule

REPO = Path(__file__).resolve().parents[1]
TINY = [
    *TINY_MODEL,
    "model.lm.tokenizer_captions=200",
    "data.val_size=8",
    "data.batch_size=4",
    "data.num_workers=0",
    "generation.max_new_tokens=8",
    "metrics.change_id=false",
    "trainer.enable_progress_bar=false",
    "trainer.val_check_interval=null",
]


def save_module(module: CaptionerModule, path: Path) -> Path:
    """What ``load_from_checkpoint`` needs, without running a Trainer."""
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "pytorch-lightning_version": L.__version__,
        },
        path,
    )
    return path


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    cfg = load_config(overrides=TINY)
    module = assembly.assemble(cfg).module
    return save_module(module, tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


# ------------------------------------------------------------------------------------------------ non-finite
@pytest.fixture
def one_thread():
    """In-process training on shared cores: oversubscribed OpenMP threads make tiny steps slow."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train_args(tmp_path: Path, *extra: str) -> list[str]:
    overrides = [
        *TINY,
        f"logs_dir={tmp_path}",
        "data.train_size=200",
        "trainer.max_steps=10",
        "checkpoint.every_n_train_steps=2",
        *extra,
    ]
    return ["--args", " ".join(overrides)]


def last_ckpt(tmp_path: Path) -> Path:
    (path,) = tmp_path.glob("default/*/version_0/checkpoints/last.ckpt")
    return path


def all_finite(state_dict: dict) -> bool:
    return all(torch.isfinite(t).all() for t in state_dict.values() if t.is_floating_point())


def test_nonfinite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path, monkeypatch, capsys, one_thread
):
    original = CaptionerModule.shared_step

    def shared_step(self, batch, captions):
        loss, logits, labels = original(self, batch, captions)
        if self.training and self.global_step >= 3:
            loss = loss * float("nan")
        return loss, logits, labels

    monkeypatch.setattr(CaptionerModule, "shared_step", shared_step)
    assert train.main(train_args(tmp_path)) == 3
    err = capsys.readouterr().err
    assert "non-finite training loss (nan) at step 3" in err
    assert "Traceback" not in err  # one clear line, not a stack
    path = last_ckpt(tmp_path)
    assert f"last good checkpoint is {path} (step 2)" in err
    checkpoint = read_checkpoint(path)
    assert checkpoint["global_step"] == 2 and all_finite(checkpoint["state_dict"])
    assert not list(path.parent.glob("best-*.ckpt"))  # nothing else was written after the failure


def test_nonfinite_gradient_is_never_applied(tmp_path, monkeypatch, capsys, one_thread):
    """A finite loss with an inf gradient: the run stops before the optimizer step, weights stay finite."""
    seen: list[CaptionerModule] = []

    def on_after_backward(self):
        seen.append(self)
        if self.global_step == 2:
            next(p for p in self.parameters() if p.grad is not None).grad[0].fill_(float("inf"))

    monkeypatch.setattr(CaptionerModule, "on_after_backward", on_after_backward)
    assert train.main(train_args(tmp_path)) == 3
    err = capsys.readouterr().err
    assert "non-finite gradient (in model." in err and "at step 2" in err
    assert all_finite(seen[-1].state_dict())  # gradient clipping would have spread the inf to every weight
    checkpoint = read_checkpoint(last_ckpt(tmp_path))
    assert checkpoint["global_step"] == 2 and all_finite(checkpoint["state_dict"])


def test_a_checkpoint_with_nonfinite_weights_is_not_written():
    guard = NonFiniteGuard()
    module = torch.nn.Module()
    module.w = torch.nn.Parameter(torch.ones(3))
    module.frozen = torch.nn.Parameter(torch.ones(3), requires_grad=False)
    good = {"state_dict": {"w": torch.ones(3), "steps": torch.tensor([1])}}
    guard.on_save_checkpoint(SimpleNamespace(global_step=7), module, good)
    bad = {"state_dict": {"w": torch.tensor([1.0, float("nan")])}}
    with pytest.raises(NonFiniteError, match=r"non-finite weights \(w\) at step 7"):
        guard.on_save_checkpoint(SimpleNamespace(global_step=7), module, bad)


def test_frozen_tensors_are_not_scanned():
    """Training never changes frozen weights (a 7B base under LoRA): reading them at every save is wasted time."""
    module = torch.nn.Module()
    module.w = torch.nn.Parameter(torch.ones(3))
    module.frozen = torch.nn.Parameter(torch.ones(3), requires_grad=False)

    class Untouchable(torch.Tensor):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            raise AssertionError(f"a frozen tensor was read ({func})")

    state = {"w": torch.ones(3), "frozen": torch.ones(3).as_subclass(Untouchable)}
    NonFiniteGuard().on_save_checkpoint(SimpleNamespace(global_step=1), module, {"state_dict": state})


# ------------------------------------------------------------------------------------------------ pickles
class Payload:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious_checkpoints(tmp_path: Path, tiny_ckpt: Path) -> tuple[Path, list[Path]]:
    """A real checkpoint with a payload added (zip format, what torch.save writes) and a bare legacy pickle."""
    marker = tmp_path / "PAYLOAD_RAN"
    checkpoint = torch.load(tiny_ckpt, weights_only=True)
    checkpoint["hyper_parameters"]["extra"] = Payload(marker)
    zipped = tmp_path / "evil.ckpt"
    torch.save(checkpoint, zipped)
    assert zipfile.is_zipfile(zipped)
    legacy = tmp_path / "evil_legacy.ckpt"
    legacy.write_bytes(pickle.dumps({"state_dict": {}, "x": Payload(marker)}))
    # The payload is real: an ordinary unpickler would run it.
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()
    marker.unlink()
    return marker, [zipped, legacy]


def test_a_pickle_payload_in_a_checkpoint_never_runs(tmp_path, tiny_ckpt, capsys):
    marker, files = malicious_checkpoints(tmp_path, tiny_ckpt)
    before = tmp_path / "b.png"
    for path in files:
        with pytest.raises(CheckpointError, match=r"refused to load.*nothing in the file was executed"):
            read_checkpoint(path)
        # make eval's loader, make caption, resuming, and Lightning's own loader
        assert evaluate.main(["--ckpt", str(path), "--out", str(tmp_path / "eval")]) == 2
        assert "refused to load" in capsys.readouterr().err
        assert caption.main(["--ckpt", str(path), "--before", str(before), "--after", str(before)]) == 2
        assert "refused to load" in capsys.readouterr().err
        assert train.main([*train_args(tmp_path), "--resume", str(path)]) == 2
        assert "refused to load" in capsys.readouterr().err
        with pytest.raises(pickle.UnpicklingError):
            CaptionerModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    assert not marker.exists()
    assert not (tmp_path / "eval").exists()


def test_what_the_kit_saves_is_plain_data(tiny_ckpt):
    """Config and caption tokenizer travel as plain values and a JSON string: weights-only loading suffices."""

    def plain(value) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list | tuple):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, str | int | float | bool)

    hparams = read_checkpoint(tiny_ckpt)["hyper_parameters"]
    assert set(hparams) == {"config", "tokenizer_json"} and plain(hparams)
    assert json.loads(hparams["tokenizer_json"])["model"]["vocab"]


def test_damaged_checkpoints_get_a_clear_error(tmp_path, tiny_ckpt):
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(tiny_ckpt.read_bytes()[:5000])
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    for path in (truncated, empty):
        with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
            read_checkpoint(path)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    assert evaluate.main(["--ckpt", str(foreign)]) == 2
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        read_checkpoint(tmp_path / "missing.ckpt")


# ------------------------------------------------------------------------------------------------ mismatch
def test_resuming_under_another_model_config_names_the_keys(tmp_path, tiny_ckpt, capsys):
    args = train_args(tmp_path, "model.lm.hidden_size=96", "backbone.layers=[1,3]")
    assert train.main([*args, "--resume", str(tiny_ckpt)]) == 2
    err = capsys.readouterr().err
    assert "2 key(s) differ" in err and len(err.strip().splitlines()) == 1
    assert "model.lm.hidden_size: checkpoint 64, this run's config 96" in err
    assert "backbone.layers: checkpoint [1, 3, 5], this run's config [1, 3]" in err
    assert "size mismatch" not in err and "Traceback" not in err


def test_eval_and_caption_refuse_args_that_change_the_model(tmp_path, tiny_ckpt, capsys):
    args = "model.lm.num_layers=2 mdp.gate=false generation.num_beams=2"
    assert evaluate.main(["--ckpt", str(tiny_ckpt), "--out", str(tmp_path), "--args", args]) == 2
    err = capsys.readouterr().err
    assert "does not match ARGS (2 key(s)" in err
    assert (
        "model.lm.num_layers: checkpoint 1, ARGS 2" in err and "mdp.gate: checkpoint True, ARGS False" in err
    )
    assert "generation" not in err  # decoding settings are not the model's
    png = tmp_path / "x.png"
    assert (
        caption.main(["--ckpt", str(tiny_ckpt), "--before", str(png), "--after", str(png), "--args", args])
        == 2
    )
    assert "model.lm.num_layers: checkpoint 1, ARGS 2" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ config
def test_yaml_tags_never_construct_python_objects(tmp_path):
    marker = tmp_path / "YAML_RAN"
    exp = tmp_path / "evil.yaml"
    exp.write_text(f"experiment: evil\nseed: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(experiment=exp)
    with pytest.raises(ConfigError, match="cannot parse value"):
        load_config(overrides=[f"data.root=!!python/object/apply:os.system ['touch {marker}']"])
    assert not marker.exists()


def test_interpolations_only_reach_omegaconf_builtins(monkeypatch):
    """No custom resolver is registered: ``${...}`` can read an environment variable (``oc.env``) or parse a
    literal (``oc.decode``), and is resolved once when the config is composed; nothing else resolves."""
    from omegaconf.basecontainer import BaseContainer

    assert all(name.startswith("oc.") for name in BaseContainer._resolvers)
    monkeypatch.setenv("M3_TEST_DATA_DIR", "/data/clevr")
    assert load_config(overrides=["data.root=${oc.env:M3_TEST_DATA_DIR}"]).data.root == "/data/clevr"
    for value in ("${eval:1+1}", "${python:__import__('os').getcwd()}"):
        with pytest.raises(Exception, match="Unsupported interpolation type eval|token recognition error"):
            load_config(overrides=[f"data.root={value}"])


# ------------------------------------------------------------------------------------------------ Makefile
PAYLOADS = {
    "ARGS": ["$(shell touch {m})", '"; touch {m}; "', "`touch {m}`", "$$(touch {m})", "$(touch {m}) ' \" \\"],
    "BACKBONE": ["$$(touch {m})", "$(shell touch {m})"],
    "CKPT": ["x;touch {m}"],
}


def run_make(tmp_path: Path, target: str, variables: dict[str, str], *, via_env: bool) -> list[str]:
    """Run the real Makefile's ``target`` with ``$(PY)`` replaced by a stub recording its argv, and the setup
    stamp by a fresh file (so ``setup`` is up to date and installs nothing)."""
    stub = tmp_path / "python-stub"
    record = tmp_path / "argv.json"
    stub.write_text(
        f"#!{sys.executable}\nimport json, sys\nopen({str(record)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
    )
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    stamp = tmp_path / "stamp"
    stamp.touch()
    record.unlink(missing_ok=True)
    assigns = [f"{k}={v}" for k, v in variables.items()]
    env = {**os.environ, **(variables if via_env else {})}
    cmd = [
        "make",
        "--no-print-directory",
        "-C",
        str(REPO),
        "-f",
        "Makefile",
        target,
        f"PY={stub}",
        f"STAMP={stamp}",
    ]
    result = subprocess.run(
        cmd + ([] if via_env else assigns), env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    return json.loads(record.read_text())


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
@pytest.mark.parametrize("via_env", [False, True], ids=["command-line", "environment"])
def test_makefile_variables_never_run_as_shell(tmp_path, via_env):
    marker = tmp_path / "MAKE_RAN"
    flags = {"ARGS": "--args", "BACKBONE": "--backbone", "CKPT": "--ckpt"}
    for variable, payloads in PAYLOADS.items():
        for template in payloads:
            value = template.format(m=marker)
            for target in ("train", "eval", "caption") if variable != "BACKBONE" else ("train",):
                if variable == "CKPT" and target == "train":
                    continue
                argv = run_make(tmp_path, target, {variable: value}, via_env=via_env)
                # The entry point receives exactly what was typed, as one argument.
                assert argv[argv.index(flags[variable]) + 1] == value, (target, variable, value, argv)
                assert not marker.exists(), (target, variable, value)
