"""``make compare``'s command line: plan every run, check the budgets, train the runs in turn, keep the table."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import experiments.compare as package
from experiments.common import cli
from experiments.common.config import ConfigError, load_config
from experiments.compare import external as external_rows
from experiments.compare.report import fmt, write_report
from experiments.compare.runs import (
    Run,
    budget,
    collect,
    has_budget,
    last_error,
    plan_runs,
    run_python,
    run_subprocess,
    scoring_checkpoint,
    versions,
)


def make_command(args: argparse.Namespace) -> str:
    """The ``make compare`` line that reproduces this comparison."""
    parts = ["make compare"]
    values = (
        ("BACKBONES", args.backbones),
        ("EXP", args.exp),
        ("MODELS", args.models),
        ("PREDS", args.preds),
    )
    values += (("DATA", args.data), ("ROOT", args.root), ("SPLIT", args.split))
    for var, value in (*values, ("ARGS", args.args)):
        value = " ".join(value.split())
        if value:
            parts.append(f'{var}="{value}"' if " " in value or var == "ARGS" else f"{var}={value}")
    return " ".join(parts)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _parser() -> argparse.ArgumentParser:
    parser = cli.parser(
        package.__doc__, prog="python -m experiments.compare"
    )  # the user's guide to make compare
    parser.add_argument("--backbones", default="", help='space-separated backbones (BACKBONES="siglip clip")')
    parser.add_argument(
        "--exp", default="", help='space-separated experiments or folders (EXP="default ablations")'
    )
    parser.add_argument(
        "--models", default="", help='zero-shot rows: model folders or cached hub ids (MODELS="a b")'
    )
    parser.add_argument(
        "--preds", default="", help='imported rows: released predictions (PREDS="name=<pred.json> ...")'
    )
    parser.add_argument("--split", default="", help="the split every row is scored on: val (default) or test")
    parser.add_argument("--data", default="", help="data group, the same for every run (DATA=)")
    parser.add_argument("--root", default="", help="dataset folder, sets data.root (ROOT=)")
    parser.add_argument(
        "--args", default="", help='key=value overrides for every run (ARGS="trainer.max_steps=500")'
    )
    parser.add_argument("--name", default="", help="output folder name under logs_dir (default: see above)")
    parser.add_argument(
        "--print-config", action="store_true", help="print every run's resolved config and exit"
    )
    parser.add_argument("overrides", nargs="*", help="more key=value overrides for every run")
    return parser


def check_budgets(planned: Sequence[tuple[Run, DictConfig]]) -> None:
    """A config error when a run has no training budget; a warning when the budgets differ."""
    if not all(has_budget(cfg) for _, cfg in planned):
        raise ConfigError(
            "no training budget (trainer.max_steps, max_epochs and max_time are unset): "
            'give one for every run, e.g. ARGS="trainer.max_steps=2000"'
        )
    if len({json.dumps(budget(cfg), sort_keys=True) for _, cfg in planned}) > 1:
        print("WARNING: the runs differ in data, seed or budget (an experiment sets them):", file=sys.stderr)
        for run, cfg in planned:
            print(f"  {run.experiment} / {run.backbone}: {budget(cfg)}", file=sys.stderr)


def run_all(
    planned: Sequence[tuple[Run, DictConfig]],
    external: Sequence[Run],
    args: argparse.Namespace,
    cfg: DictConfig,
    out_dir: Path,
    name: str,
) -> int:
    """Train every run, then score the zero-shot and imported rows, the table rewritten after each row; exit status 0,
    1 (a row failed) or 130 (interrupted)."""
    runs = [run for run, _ in planned] + list(external)
    report = partial(write_report, out_dir, name, runs, cfg, make_command(args), stage=args.split)
    print(f"comparing {len(runs)} rows on the {args.split} split -> {out_dir / 'compare.md'}", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)  # a killed comparison stops its run and keeps the table
    code, truth = 0, None
    for i, run in enumerate(runs, 1):
        print(f"[{i}/{len(runs)}] {run.experiment} / {run.backbone}: {STEPS[run.kind]}", flush=True)
        if run.kind != external_rows.IMPORTED:  # scored here, in this process: no log of its own
            run.log = str(out_dir / "runs" / f"{run.run_name.replace('/', '__')}.log")
        start = time.monotonic()
        try:
            if run.kind == "trained":
                train_run(run, planned[i - 1][1], args)
            elif run.kind == external_rows.ZERO_SHOT:
                zero_shot_row(run, args, out_dir)
            else:
                truth = truth or external_rows.SplitTruth(cfg, args.split)
                external_rows.score_imported(run, truth, out_dir, spice=bool(cfg.metrics.spice))
        except KeyboardInterrupt:
            run.status, run.error = "interrupted", "interrupted by the user"
            run.seconds = time.monotonic() - start
            report()
            print(f"interrupted; table so far: {out_dir / 'compare.md'}", file=sys.stderr)
            return 130
        except Exception as err:  # one row's bad file or broken model: the others go on
            run.status, run.error = "failed", f"{type(err).__name__}: {err}"
        run.seconds = time.monotonic() - start
        code = 1 if run.status == "failed" else code
        print(
            f"    {run.status}" + (f" ({run.error})" if run.error else "") + _cider(run, args.split),
            flush=True,
        )
        report()
    print("\n" + report())
    print(f"written: {out_dir / 'compare.md'} and compare.json")
    return code


STEPS = {
    "trained": "training",
    "zero-shot": "zero-shot evaluation",
    "imported": "scoring imported predictions",
}


def _cider(run: Run, stage: str) -> str:
    value = run.metrics.get(f"{stage}/CIDEr")
    return f": CIDEr {fmt(value)}" if value is not None else ""


def train_run(run: Run, cfg: DictConfig, args: argparse.Namespace) -> None:
    """Train one run in its own process and read its results; on SPLIT=test, score its best checkpoint on test."""
    run_logs, log = Path(str(cfg.logs_dir)), Path(str(run.log))
    before = versions(run_logs, run.run_name)
    rc = run_subprocess(run, data=args.data, root=args.root, args=args.args, log=log)
    collect(run, run_logs, before)
    if rc != 0 or not run.metrics:
        run.status = "failed"
        run.error = f"exit {rc}: {last_error(log)}" if rc else "finished without validation metrics"
        return
    run.status = "ok"
    if args.split == "val":
        return
    ckpt = scoring_checkpoint(Path(str(run.run_dir)))
    folder = Path(str(run.run_dir)) / "eval" / f"{cfg.data.name}-{args.split}"
    command = ["-m", "experiments.evaluate", "--ckpt", str(ckpt), "--split", args.split, "--out", str(folder)]
    rc = run_python(command, log=log, append=True) if ckpt else -1
    if rc != 0:
        run.status = "failed"
        run.error = f"{args.split} evaluation: " + (last_error(log) if ckpt else "no checkpoint to score")
        return
    external_rows.read_evaluation(run, folder, args.split)
    run.metrics.update(json.loads((Path(str(run.run_dir)) / "final_metrics.json").read_text()))


def zero_shot_row(run: Run, args: argparse.Namespace, out_dir: Path) -> None:
    """``make eval MODEL=<model> SPLIT=<split>`` in its own process, its metrics read back."""
    command = external_rows.zero_shot_command(
        run, data=args.data, root=args.root, args=args.args, split=args.split, out_dir=out_dir
    )
    rc = run_python(command, log=Path(str(run.log)))
    if rc != 0:
        run.status, run.error = "failed", f"exit {rc}: {last_error(Path(str(run.log)))}"
        return
    external_rows.read_evaluation(run, Path(str(run.run_dir)), args.split)
    run.status = "ok"


def main(argv: list[str] | None = None) -> int:
    return cli.run(_parser(), command, argv, logging=False)


def command(args: argparse.Namespace) -> int:
    # ARGS and trailing overrides as one string: what each run's `make train` gets, and the reproducing line.
    args.args, args.overrides = " ".join([args.args, shlex.join(args.overrides)]).strip(), []
    args.split = args.split or "val"
    if args.split not in ("val", "test"):
        raise cli.UsageError(f"SPLIT must be val or test for make compare, got {args.split!r}")
    # Rows not trained here are checked first (a refused model, an unreadable file), then every run is planned.
    external = [*external_rows.plan_models(args.models), *external_rows.plan_preds(args.preds)]
    train = bool(args.backbones.split() or args.exp.split()) or not external
    planned = (
        plan_runs(
            backbones=args.backbones, experiments=args.exp, data=args.data, overrides=cli.overrides(args)
        )
        if train
        else []
    )
    if args.print_config:
        for run, cfg in planned:
            print(f"# ===== {run.experiment} / {run.backbone} =====")
            print(OmegaConf.to_yaml(cfg), end="")
        return 0
    if planned:
        check_budgets(planned)
    cfg = planned[0][1] if planned else load_config(groups={"data": args.data}, overrides=cli.overrides(args))
    exps = {run.experiment for run, _ in planned}
    name = args.name or (exps.pop() if len(exps) == 1 and not external else "compare")
    return run_all(planned, external, args, cfg, Path(str(cfg.logs_dir)) / name, name)
