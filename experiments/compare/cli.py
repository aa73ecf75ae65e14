"""``make compare``'s command line: plan every run, check the budgets, train the runs in turn, keep the table."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import experiments.compare as package
from experiments.common import cli
from experiments.common.config import ConfigError
from experiments.compare.report import fmt, write_report
from experiments.compare.runs import (
    Run,
    budget,
    collect,
    has_budget,
    last_error,
    plan_runs,
    run_subprocess,
    versions,
)


def make_command(args: argparse.Namespace) -> str:
    """The ``make compare`` line that reproduces this comparison."""
    parts = ["make compare"]
    values = (("BACKBONES", args.backbones), ("EXP", args.exp), ("DATA", args.data), ("ROOT", args.root))
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
    planned: Sequence[tuple[Run, DictConfig]], args: argparse.Namespace, out_dir: Path, name: str
) -> int:
    """Train every run in turn, the table rewritten after each; exit status 0, 1 (a run failed) or 130."""
    runs = [run for run, _ in planned]
    first = planned[0][1]
    command = make_command(args)
    print(f"comparing {len(runs)} runs -> {out_dir / 'compare.md'}", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)  # a killed comparison stops its run and keeps the table
    code = 0
    for i, (run, cfg) in enumerate(planned, 1):
        run_logs = Path(str(cfg.logs_dir))
        log = out_dir / "runs" / f"{run.run_name.replace('/', '__')}.log"
        run.log = str(log)
        print(f"[{i}/{len(runs)}] {run.experiment} / {run.backbone}: training (log: {log})", flush=True)
        before = versions(run_logs, run.run_name)
        start = time.monotonic()
        try:
            rc = run_subprocess(run, data=args.data, root=args.root, args=args.args, log=log)
        except KeyboardInterrupt:
            run.status, run.error = "interrupted", "interrupted by the user"
            run.seconds = time.monotonic() - start
            collect(run, run_logs, before)
            write_report(out_dir, name, runs, first, command)
            print(f"interrupted; table so far: {out_dir / 'compare.md'}", file=sys.stderr)
            return 130
        run.seconds = time.monotonic() - start
        collect(run, run_logs, before)
        if rc == 0 and run.metrics:
            run.status = "ok"
            print(
                f"    ok in {run.seconds / 60:.1f} min: CIDEr {fmt(run.metrics.get('val/CIDEr'))}", flush=True
            )
        else:
            run.status = "failed"
            run.error = f"exit {rc}: {last_error(log)}" if rc else "finished without validation metrics"
            code = 1
            print(f"    FAILED ({run.error})", flush=True)
        write_report(out_dir, name, runs, first, command)
    print("\n" + write_report(out_dir, name, runs, first, command))
    print(f"written: {out_dir / 'compare.md'} and compare.json")
    return code


def main(argv: list[str] | None = None) -> int:
    return cli.run(_parser(), command, argv, logging=False)


def command(args: argparse.Namespace) -> int:
    # ARGS and trailing overrides as one string: what each run's `make train` gets, and the reproducing line.
    args.args, args.overrides = " ".join([args.args, shlex.join(args.overrides)]).strip(), []
    planned = plan_runs(
        backbones=args.backbones, experiments=args.exp, data=args.data, overrides=cli.overrides(args)
    )
    if args.print_config:
        for run, cfg in planned:
            print(f"# ===== {run.experiment} / {run.backbone} =====")
            print(OmegaConf.to_yaml(cfg), end="")
        return 0
    check_budgets(planned)
    exps = {run.experiment for run, _ in planned}
    name = args.name or (exps.pop() if len(exps) == 1 else "compare")
    return run_all(planned, args, Path(str(planned[0][1].logs_dir)) / name, name)
