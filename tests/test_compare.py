"""`make compare`: runs planned up front, one table with a row per run (failed runs too), TensorBoard runs side by
side; `make tb` serves the logs folder on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from support.tiny import TINY_MODEL

from experiments.common.config import REPO_ROOT, load_config
from experiments.compare import cli, report
from experiments.compare.runs import Run, budget, plan_runs

TINY = " ".join(TINY_MODEL) + (
    " model.lm.tokenizer_captions=40 generation.max_new_tokens=4 data.train_size=32 data.val_size=6"
    " data.batch_size=4 data.eval_batch_size=6 data.num_workers=0 trainer.max_steps=2 metrics.num_panels=1"
)


@pytest.mark.slow
def test_compare_two_backbones_writes_one_row_each_and_marks_a_failure(tmp_path, capsys):
    code = cli.main(
        ["--backbones", "siglip clip no_such_vit", "--args", f"{TINY} logs_dir={tmp_path}", "--name", "bb"]
    )
    assert code == 1  # one run failed; the others are still in the table
    out = tmp_path / "bb"
    table = (out / "compare.md").read_text()
    overall = table.split("\n## ")[0]
    rows = {line.split(" | ")[1]: line for line in overall.splitlines() if line.startswith("| default |")}
    assert set(rows) == {"siglip-tiny", "clip-tiny", "timm:no_such_vit"}
    assert "| ok | 2 |" in rows["siglip-tiny"] and "| ok | 2 |" in rows["clip-tiny"]
    assert "| failed |" in rows["timm:no_such_vit"] and "no_such_vit" in table.split("## Failed runs")[1]
    assert (
        "## CIDEr by change category (x100)" in table and "*ceiling*" in table and "change-id exact" in table
    )
    assert 'Command: `make compare BACKBONES="siglip clip no_such_vit"' in table
    assert table in capsys.readouterr().out

    report = json.loads((out / "compare.json").read_text())
    runs = {r["backbone"]: r for r in report["runs"]}
    for name in ("siglip-tiny", "clip-tiny"):
        run = runs[name]
        assert run["status"] == "ok" and run["steps"] == 2 and "val/CIDEr" in run["metrics"]
        folder = Path(run["run_dir"])
        # TensorBoard side by side: logs/<experiment>/<backbone>/version_N, hparams naming the backbone.
        assert folder.parent == tmp_path / "default" / name and list(folder.glob("events.out.tfevents.*"))
        assert OmegaConf.load(folder / "hparams.yaml")["backbone.name"] == name
        assert (folder / "final_metrics.json").is_file()
    assert runs["timm:no_such_vit"]["status"] == "failed" and Path(runs["timm:no_such_vit"]["log"]).is_file()


def test_sweep_plans_experiment_by_backbone_with_one_budget():
    planned = plan_runs(
        backbones="siglip vit_tiny_patch16_224",
        experiments="default ablations",
        overrides=["trainer.max_steps=7"],
    )
    names = [run.run_name for run, _ in planned]
    assert len(names) == 12 and len(set(names)) == 12
    assert names[:2] == ["default/siglip-tiny", "default/timm-vit_tiny_patch16_224"]
    assert {run.experiment for run, _ in planned} == {
        "default",
        "mdp_off",
        "no_cross_attention",
        "no_gate",
        "single_scale",
        "subtract",
    }
    assert len({json.dumps(budget(cfg), sort_keys=True) for _, cfg in planned}) == 1
    assert all(cfg.trainer.max_steps == 7 for _, cfg in planned)


def test_defaults_and_refusals(tmp_path, capsys):
    planned = plan_runs(backbones="", experiments="")
    assert [run.backbone for run, _ in planned] == ["siglip-tiny", "clip-tiny"]
    planned = plan_runs(backbones="", experiments="ablations/no_gate")
    assert [(run.experiment, run.backbone) for run, _ in planned] == [("no_gate", "siglip-tiny")]
    # A typo fails before any training, naming the key to use.
    assert cli.main(["--backbones", "siglip", "--args", "optim.lr_lmm=1"]) == 2
    assert "did you mean 'optim.lr_lm'" in capsys.readouterr().err
    assert cli.main(["--exp", "ablations/no_gat"]) == 2
    assert "did you mean 'ablations/no_gate'" in capsys.readouterr().err
    # No budget at all would train for ever.
    args = f"logs_dir={tmp_path} trainer.max_steps=-1 trainer.max_epochs=null trainer.max_time=null"
    if load_config().trainer.max_epochs is None:
        assert cli.main(["--backbones", "siglip", "--args", args]) == 2
        assert "no training budget" in capsys.readouterr().err
        assert not list(tmp_path.iterdir())


def test_markdown_table_from_rows():
    cfg = load_config(overrides=["trainer.max_steps=10"])
    ok = Run("", "siglip", "default", "siglip-tiny", "default/siglip-tiny", status="ok", steps=10)
    ok.seconds, ok.run_dir = 90.0, "logs/default/siglip-tiny/version_0"
    ok.metrics = {
        "val/CIDEr": 0.4321,
        "val/Bleu_4": 0.1,
        "val/CIDEr/color": 0.5,
        "val/CIDEr/no_change": 1.25,
        "val/ceiling/CIDEr": 6.9,
        "val/trivial/CIDEr": 0.28,
        "val/change_id/exact": 0.25,
    }
    bad = Run(
        "", "x", "default", "timm:x", "default/timm-x", status="failed", error="exit 1: ValueError: no x"
    )
    text = report.render_markdown("demo", [ok, bad], cfg, 'make compare BACKBONES="siglip x"')
    lines = text.splitlines()
    assert "| default | siglip-tiny | ok | 10 | 1.5 | 10.00 | 43.21 | 25.00 |" in lines
    assert "| default | timm:x | failed | – | – | – | – | – |" in lines
    assert any(line.startswith("| *ceiling* |") and "690.00" in line for line in lines)
    # Categories in config order, then the groups; only those scored.
    assert "| experiment | backbone | color | no_change |" in lines
    assert "| default | siglip-tiny | 50.00 | 125.00 |" in lines
    assert "| default | timm:x | – | – |" in lines
    assert "- default / timm:x: exit 1: ValueError: no x" in text


@pytest.mark.slow
def test_make_tb_serves_the_logs_folder_on_localhost(tmp_path):
    dry = subprocess.run(
        ["make", "-n", "tb", "PORT=7007; echo pwned"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = next(ln for ln in dry.stdout.splitlines() if "tensorboard" in ln)
    assert '--logdir logs --host 127.0.0.1 --port "${M3_PORT:-6006}"' in line  # PORT reaches it as data
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tb = Path(sys.executable).parent / "tensorboard"
    proc = subprocess.Popen(
        [str(tb), "--logdir", str(tmp_path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/logdir", timeout=2) as resp:
                    assert str(tmp_path) in resp.read().decode()
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "TensorBoard did not start"
                time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_trained_zero_shot_and_imported_rows_in_one_table(tmp_path, vlm_twins):
    """``make compare BACKBONES=siglip MODELS=<twin> PREDS="again=<pred.json> partial=<pred.json>" SPLIT=test``:
    the trained run scored by its best checkpoint on test, the zero-shot model, and two prediction files, in one
    table with the reference rows. Importing the zero-shot evaluation's own predictions gives its numbers exactly,
    and every imported row is ``make score`` on the files in its folder; ids that do not match are listed."""
    from experiments import evaluate, score

    twin, zero_args = vlm_twins("qwen2_vl"), ["model.lm.dtype=float32", "num_threads=1"]
    args = f"{TINY} data.test_size=5 logs_dir={tmp_path / 'logs'}"
    # Another method's released predictions: here, the twin's own evaluation of the test split ...
    evaluate.evaluate(
        model=twin, split="test", out=str(tmp_path / "released"), overrides=[*args.split(), *zero_args]
    )
    released = json.loads((tmp_path / "released" / "pred.json").read_text())
    # ... and a file with one id the split does not have and two pairs missing.
    partial = [*released[:3], {"image_id": "test/999999", "caption": "a red cube appears."}]
    (tmp_path / "partial.json").write_text(json.dumps(partial))
    preds = f"again={tmp_path / 'released' / 'pred.json'} partial={tmp_path / 'partial.json'}"
    argv = ["--backbones", "siglip", "--models", str(twin), "--preds", preds, "--split", "test"]
    assert cli.main([*argv, "--args", f"{args} {' '.join(zero_args)}", "--name", "mixed"]) == 0

    out = tmp_path / "logs" / "mixed"
    table = (out / "compare.md").read_text()
    overall = table.split("\n## ")[0]
    rows = {line.split(" | ")[1]: line for line in overall.splitlines() if line.startswith("| ")}
    assert "| default | siglip-tiny | ok | 2 |" in rows["siglip-tiny"]
    assert rows[twin.name].startswith("| zero-shot |") and "| ok |" in rows[twin.name]
    assert (
        "| imported | again | ok |" in rows["again"] and "| imported | partial | partial |" in rows["partial"]
    )
    assert all(s in table for s in ("*ceiling*", "*trivial*", "(test split)", "## CIDEr by change category"))
    assert "partial: 1 ids not in the split: 'test/999999'; 2 of 5 pairs not predicted" in table

    report = {r["backbone"]: r for r in json.loads((out / "compare.json").read_text())["runs"]}
    assert (
        report["siglip-tiny"]["metrics"]["test/num_pairs"] == 5
        and "val/CIDEr" in report["siglip-tiny"]["metrics"]
    )
    zero, again = report[twin.name]["metrics"], report["again"]["metrics"]
    scored = {k: v for k, v in zero.items() if k != "test/cut_captions"}
    assert (
        again == scored and again["test/CIDEr"] == zero["test/CIDEr"]
    )  # the same predictions, the same numbers
    assert report["partial"]["unmatched"] == {
        "not_in_split": ["test/999999"],
        "not_predicted": ["test/000003", "test/000004"],
    }
    for name in ("again", "partial"):  # make score on the row's own files gives its numbers
        folder = out / "imported" / name
        common = ["--gt", str(folder / "gt.json"), "--pred", str(folder / "pred.json"), "--quiet"]
        assert (
            score.main(
                [*common, "--categories", str(folder / "subsets.json"), "--out", str(tmp_path / "m.json")]
            )
            == 0
        )
        made = json.loads((tmp_path / "m.json").read_text())
        mine = json.loads((folder / "metrics.json").read_text())
        assert {k: mine[k] for k in made} == made
    assert json.loads((out / "imported" / "partial" / "pred.json").read_text()) == released[:3]


def test_rows_not_trained_here_are_checked_before_any_training(tmp_path, capsys):
    """A PREDS item without a name, a prediction file that cannot be read, a model that is not there and SPLIT=train
    are one line each (exit 2) before anything runs."""
    bad = tmp_path / "bad.json"
    bad.write_text('{"image_id": 1}')
    args = ["--backbones", "siglip", "--args", f"trainer.max_steps=1 logs_dir={tmp_path}"]
    assert cli.main([*args, "--preds", str(bad)]) == 2
    assert cli.main([*args, "--preds", f"x={bad}"]) == 2
    assert cli.main([*args, "--models", str(tmp_path / "nothing")]) == 2
    assert cli.main([*args, "--split", "train"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert (
        len(err) == 4 and "is not name=<pred.json>" in err[0] and "predictions must be a JSON list" in err[1]
    )
    assert "no config.json there" in err[2] and "SPLIT must be val or test" in err[3]
    assert [p.name for p in tmp_path.iterdir()] == ["bad.json"]  # no run folder, no table


def test_markdown_table_with_rows_not_trained_here():
    cfg = load_config(overrides=["trainer.max_steps=10"])
    trained = Run("", "siglip", "default", "siglip-tiny", "default/siglip-tiny", status="ok", steps=10)
    trained.metrics = {
        "test/CIDEr": 0.5,
        "test/CIDEr/color": 0.25,
        "val/CIDEr": 0.9,
        "test/ceiling/CIDEr": 4.0,
    }
    zero = Run(
        "", "m", "zero-shot", "Qwen2.5-VL-7B", "zero_shot/q", status="ok", kind="zero-shot", source="m"
    )
    zero.metrics, zero.seconds = {"test/CIDEr": 0.125, "test/CIDEr/color": 0.0625}, 30.0
    imported = Run("", "p.json", "imported", "card", "imported/card", status="partial", kind="imported")
    imported.source, imported.run_dir = "p.json", "logs/compare/imported/card"
    imported.metrics, imported.error = {"test/CIDEr": 0.75}, "1 ids not in the split: 'x'"
    text = report.render_markdown("demo", [trained, zero, imported], cfg, "make compare", "test")
    lines = text.splitlines()
    assert "| default | siglip-tiny | ok | 10 | – | 50.00 |" in lines
    assert "| zero-shot | Qwen2.5-VL-7B | ok | – | 0.5 | 12.50 |" in lines
    assert "| imported | card | partial | – | – | 75.00 |" in lines
    assert any(line.startswith("| *ceiling* |") and "400.00" in line for line in lines)
    assert "| zero-shot | Qwen2.5-VL-7B | 6.25 |" in lines  # CIDEr by category, test keys only
    assert (
        "- card: 1 ids not in the split: 'x' (every id: `logs/compare/imported/card/unmatched.json`)" in lines
    )
    assert "- imported / card: `logs/compare/imported/card` (from `p.json`)" in lines
    assert "(test split)" in text and "best checkpoint" in text
