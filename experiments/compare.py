"""Compare backbones and/or experiments under one budget:
``make compare BACKBONES="siglip clip vit_small_patch16_224" [EXP="default ablations"] [DATA=..] [ARGS=..]``.

Every run (experiment x backbone) trains with the same data, seed and budget (``ARGS`` apply to all, e.g.
``ARGS="trainer.max_steps=2000"``) through ``experiments.train``, each in its own Python process: a run that
fails (or runs out of memory) becomes a row marked ``failed`` and the others go on. Runs land side by side
in TensorBoard (``logs/<experiment>/<backbone>/version_N``, hparams tab names the backbone and MDP switches).
After every run the table is rewritten, so an interrupted comparison keeps what it has:

    <logs_dir>/<name>/compare.md    overall scores, per-category CIDEr, reference baselines (x100)
    <logs_dir>/<name>/compare.json  the same rows with every final validation metric and the run folders
    <logs_dir>/<name>/runs/*.log    each run's console output

``<name>`` is the experiment's name when one experiment is swept, else ``compare`` (``--name`` sets it).
``EXP`` takes experiment names (``ablations/no_gate``) and folders under ``experiments/`` (``ablations`` =
every YAML in it); ``default`` is the base config. ``BACKBONES`` empty: the config's backbone (``siglip``
and ``clip`` when ``EXP`` is empty too). Exit status: 0 all runs succeeded, 1 some failed, 2 bad config.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.common.config import EXPERIMENTS_DIR, REPO_ROOT, ConfigError, load_config
from experiments.common.runner import run_name

DEFAULT_BACKBONES = ("siglip", "clip")
OVERALL = ("Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE")
BASELINES = {"ceiling": "one reference vs the others", "trivial": "most common training caption"}


@dataclass
class Run:
    """One row: an experiment x backbone, its config, and what came of it."""

    experiment_arg: str  # as given (may be empty: no experiment YAML)
    backbone_arg: str  # as given (may be empty: the config's backbone)
    experiment: str  # cfg.experiment
    backbone: str  # cfg.backbone.name
    run_name: str
    status: str = "pending"  # pending | ok | failed | interrupted
    error: str = ""
    seconds: float | None = None
    steps: int | None = None
    run_dir: str | None = None
    log: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    subsets: list[str] = field(default_factory=list)  # the data's subsets (OmniDiff real / render), if any


# ---------------------------------------------------------------------------------------------- planning
def expand_experiments(spec: str) -> list[str]:
    """``"default ablations paper/x"`` -> experiment names; a folder under ``experiments/`` = its YAMLs."""
    names: list[str] = []
    for token in spec.split():
        folder = EXPERIMENTS_DIR / token
        if folder.is_dir() and not (EXPERIMENTS_DIR / f"{token}.yaml").exists():
            found = sorted(str(p.relative_to(EXPERIMENTS_DIR).with_suffix("")) for p in folder.glob("*.yaml"))
            if not found:
                raise ConfigError(f"EXP: folder experiments/{token}/ holds no experiment YAML")
            names.extend(found)
        else:
            names.append(token)
    return list(dict.fromkeys(names))


def plan_runs(
    *, backbones: str, experiments: str, data: str = "", root: str = "", overrides: Sequence[str] = ()
) -> list[tuple[Run, DictConfig]]:
    """Compose every run's config up front, so a typo fails before hours of training."""
    exps = expand_experiments(experiments) or [""]
    bbs = backbones.split() or (list(DEFAULT_BACKBONES) if not experiments.split() else [""])
    extra = [f"data.root={root}"] if root else []
    runs = []
    for exp in exps:
        for bb in bbs:
            cfg = load_config(
                experiment=exp or None, groups={"backbone": bb, "data": data}, overrides=[*extra, *overrides]
            )
            run = Run(exp, bb, str(cfg.experiment), str(cfg.backbone.name), run_name(cfg))
            runs.append((run, cfg))
    names = [r.run_name for r, _ in runs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"two runs would share the run folder {dupes}: give each experiment its own name")
    return runs


def budget(cfg: DictConfig) -> dict[str, Any]:
    """What must be equal for a fair comparison."""
    t = cfg.trainer
    return {
        "data": cfg.data.name,
        "seed": cfg.seed,
        "max_steps": t.max_steps,
        "max_epochs": t.max_epochs,
        "max_time": t.max_time,
        "batch_size": cfg.data.batch_size,
        "accumulate_grad_batches": t.accumulate_grad_batches,
        "devices": t.devices,
    }


def has_budget(cfg: DictConfig) -> bool:
    t = cfg.trainer
    return (t.max_steps is not None and t.max_steps > 0) or t.max_epochs is not None or t.max_time is not None


# ---------------------------------------------------------------------------------------------- running
def versions(logs_dir: Path, run_name: str) -> set[str]:
    return {p.name for p in (logs_dir / run_name).glob("version_*")}


def collect(run: Run, logs_dir: Path, before: set[str]) -> None:
    """Find the run folder the run created and read its final metrics and step."""
    new = sorted(
        (logs_dir / run.run_name / v for v in versions(logs_dir, run.run_name) - before),
        key=lambda p: p.stat().st_mtime,
    )
    done = [p for p in new if (p / "final_metrics.json").is_file()]
    folder = (done or new or [None])[-1]
    if folder is None:
        return
    run.run_dir = str(folder)
    if (folder / "final_metrics.json").is_file():
        run.metrics = json.loads((folder / "final_metrics.json").read_text())
    steps = [json.loads(p.read_text()).get("step") for p in (folder / "eval").glob("val-step*/metrics.json")]
    steps = [s for s in steps if isinstance(s, int)]
    run.steps = max(steps) if steps else None
    if run.steps is not None and (folder / "eval" / f"val-step{run.steps}" / "subsets.json").is_file():
        kinds = json.loads((folder / "eval" / f"val-step{run.steps}" / "subsets.json").read_text())
        run.subsets = list(kinds.get("subsets", {}))


def last_error(log: Path) -> str:
    """The line that says what went wrong: the exception line of a traceback, else the last line."""
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.endswith(("Error", "Exception", "Interrupt")) or line.startswith("config error:"):
            return line[:300]
    return lines[-1][:300] if lines else "no output"


def run_subprocess(run: Run, *, data: str, root: str, args: str, log: Path) -> int:
    """``python -m experiments.train`` for one run, output to ``log``; returns the exit status."""
    cmd = [
        sys.executable,
        "-m",
        "experiments.train",
        *("--exp", run.experiment_arg),
        *("--backbone", run.backbone_arg),
        *("--data", data),
        *("--root", root),
        *("--args", args),  # output to a file: the run prints plain progress lines, not a bar
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        out.write("$ " + shlex.join(cmd) + "\n")
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)  # Lightning shuts down gracefully on SIGINT
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise


# ---------------------------------------------------------------------------------------------- report
def fmt(value: float | None, scale: float = 100.0) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{scale * value:.2f}"


def category_columns(runs: Sequence[Run], cfg: DictConfig) -> list[str]:
    """Per-category CIDEr columns: the config's categories and groups first, then any others logged (not the
    subsets: they have their own table)."""
    names = [str(c) for c in cfg.data.categories] + [str(g) for g in cfg.data.groups]
    subsets = subset_columns(runs)
    for run in runs:
        for key in run.metrics:
            parts = key.split("/")
            if len(parts) == 3 and parts[1] == "CIDEr" and parts[2] not in names:
                names.append(parts[2])
    return [n for n in names if n not in subsets and any(f"val/CIDEr/{n}" in r.metrics for r in runs)]


def subset_columns(runs: Sequence[Run]) -> list[str]:
    """Per-subset CIDEr (``val/CIDEr/<subset>``; the subsets each run's evaluation files name)."""
    return list(dict.fromkeys(name for run in runs for name in run.subsets))


def benchmark_columns(runs: Sequence[Run]) -> list[str]:
    """Per-benchmark CIDEr (a mixture): ``val/<benchmark>/CIDEr`` other than the baselines."""
    names: list[str] = []
    for run in runs:
        for key in run.metrics:
            parts = key.split("/")
            if len(parts) == 3 and parts[2] == "CIDEr" and parts[1] not in (*BASELINES, "CIDEr"):
                names.append(parts[1])
    return list(dict.fromkeys(names))


def render_markdown(name: str, runs: Sequence[Run], cfg: DictConfig, command: str) -> str:
    overall = [m for m in OVERALL if any(f"val/{m}" in r.metrics for r in runs)] or ["CIDEr"]
    change_id = any("val/change_id/exact" in r.metrics for r in runs)
    b = budget(cfg)
    lines = [
        f"# Comparison: {name}\n",
        f"Command: `{command}`\n",
        f"Data `{b['data']}` (validation split), seed {b['seed']}, budget: max_steps={b['max_steps']}, "
        f"max_epochs={b['max_epochs']}, max_time={b['max_time']}, batch {b['batch_size']} "
        f"x accumulate {b['accumulate_grad_batches']}. Scores x100 (COCO caption toolkit).\n",
    ]
    head = ["experiment", "backbone", "status", "steps", "minutes", *overall]
    if change_id:
        head.append("change-id exact")
    lines += ["| " + " | ".join(head) + " |", "|---|---|---|" + "---:|" * (len(head) - 3)]
    for r in runs:
        cells = [
            r.experiment,
            r.backbone,
            r.status,
            "–" if r.steps is None else str(r.steps),
            "–" if r.seconds is None else f"{r.seconds / 60:.1f}",
            *(fmt(r.metrics.get(f"val/{m}")) for m in overall),
        ]
        if change_id:
            cells.append(fmt(r.metrics.get("val/change_id/exact")))
        lines.append("| " + " | ".join(cells) + " |")
    reference = next((r for r in runs if any(f"val/{b}/CIDEr" in r.metrics for b in BASELINES)), None)
    if reference is not None:
        for base, what in BASELINES.items():
            if f"val/{base}/CIDEr" not in reference.metrics:
                continue
            cells = [f"*{base}*", f"*{what}*", "reference", "", ""]
            cells += [fmt(reference.metrics.get(f"val/{base}/{m}")) for m in overall]
            lines.append("| " + " | ".join(cells + ([""] if change_id else [])) + " |")

    cats = category_columns(runs, cfg)
    if cats:
        lines += ["", "## CIDEr by change category (x100)", ""]
        lines += ["| experiment | backbone | " + " | ".join(cats) + " |", "|---|---|" + "---:|" * len(cats)]
        for r in runs:
            cells = [fmt(r.metrics.get(f"val/CIDEr/{c}")) for c in cats]
            lines.append(f"| {r.experiment} | {r.backbone} | " + " | ".join(cells) + " |")
    subsets = subset_columns(runs)
    if subsets:
        lines += ["", "## CIDEr by subset (x100)", ""]
        lines += [
            "| experiment | backbone | " + " | ".join(subsets) + " |",
            "|---|---|" + "---:|" * len(subsets),
        ]
        for r in runs:
            cells = [fmt(r.metrics.get(f"val/CIDEr/{s}")) for s in subsets]
            lines.append(f"| {r.experiment} | {r.backbone} | " + " | ".join(cells) + " |")
    benches = benchmark_columns(runs)
    if benches:
        lines += ["", "## CIDEr by benchmark (x100)", ""]
        lines += [
            "| experiment | backbone | " + " | ".join(benches) + " |",
            "|---|---|" + "---:|" * len(benches),
        ]
        for r in runs:
            cells = [fmt(r.metrics.get(f"val/{b}/CIDEr")) for b in benches]
            lines.append(f"| {r.experiment} | {r.backbone} | " + " | ".join(cells) + " |")

    problems = [r for r in runs if r.status in ("failed", "interrupted")]
    if problems:
        lines += ["", "## Failed runs", ""]
        lines += [f"- {r.experiment} / {r.backbone}: {r.error} (log: `{r.log}`)" for r in problems]
    lines += ["", "## Runs", ""]
    lines += [f"- {r.experiment} / {r.backbone}: `{r.run_dir or '(no run folder)'}`" for r in runs]
    lines += ["", f"TensorBoard, side by side: `make tb` (or `tensorboard --logdir {cfg.logs_dir}`)."]
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, name: str, runs: Sequence[Run], cfg: DictConfig, command: str) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    text = render_markdown(name, runs, cfg, command)
    payload = {"name": name, "command": command, "budget": budget(cfg), "runs": [asdict(r) for r in runs]}
    for path, content in (
        (out_dir / "compare.md", text),
        (out_dir / "compare.json", json.dumps(payload, indent=1)),
    ):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(content)
        os.replace(tmp, path)
    return text


def make_command(args: argparse.Namespace) -> str:
    """The ``make compare`` line that reproduces this comparison."""
    parts = ["make compare"]
    values = (("BACKBONES", args.backbones), ("EXP", args.exp), ("DATA", args.data), ("ROOT", args.root))
    for var, value in (*values, ("ARGS", args.args)):
        value = " ".join(value.split())
        if value:
            parts.append(f'{var}="{value}"' if " " in value or var == "ARGS" else f"{var}={value}")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------- main
def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
    args = parser.parse_args(argv)
    args.args = " ".join([args.args, shlex.join(args.overrides)]).strip()

    try:
        overrides = shlex.split(args.args)
        planned = plan_runs(
            backbones=args.backbones,
            experiments=args.exp,
            data=args.data,
            root=args.root,
            overrides=overrides,
        )
    except (ConfigError, ValueError) as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    if args.print_config:
        for run, cfg in planned:
            print(f"# ===== {run.experiment} / {run.backbone} =====")
            print(OmegaConf.to_yaml(cfg), end="")
        return 0
    first = planned[0][1]
    if not all(has_budget(cfg) for _, cfg in planned):
        print(
            "config error: no training budget (trainer.max_steps, max_epochs and max_time are unset): "
            'give one for every run, e.g. ARGS="trainer.max_steps=2000"',
            file=sys.stderr,
        )
        return 2
    budgets = {json.dumps(budget(cfg), sort_keys=True) for _, cfg in planned}
    if len(budgets) > 1:
        print("WARNING: the runs differ in data, seed or budget (an experiment sets them):", file=sys.stderr)
        for run, cfg in planned:
            print(f"  {run.experiment} / {run.backbone}: {budget(cfg)}", file=sys.stderr)

    exps = {run.experiment for run, _ in planned}
    name = args.name or (exps.pop() if len(exps) == 1 else "compare")
    logs_dir = Path(str(first.logs_dir))
    out_dir = logs_dir / name
    runs = [run for run, _ in planned]
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

    text = write_report(out_dir, name, runs, first, command)
    print("\n" + text)
    print(f"written: {out_dir / 'compare.md'} and compare.json")
    return code


if __name__ == "__main__":
    sys.exit(main())
