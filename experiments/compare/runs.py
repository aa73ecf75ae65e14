"""The runs of a comparison: planned up front (every config composed before any training), each trained in its
own ``python -m experiments.train`` process, its results read back from its run folder."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from experiments.common.assembly import resolve_static
from experiments.common.config import EXPERIMENTS_DIR, REPO_ROOT, ConfigError, load_config
from experiments.common.runs import run_name

DEFAULT_BACKBONES = ("siglip", "clip")


@dataclass
class Run:
    """One row: an experiment x backbone, its config, and what came of it."""

    experiment_arg: str  # as given (may be empty: no experiment YAML)
    backbone_arg: str  # as given (may be empty: the config's backbone)
    experiment: str  # cfg.experiment
    backbone: str  # cfg.backbone.name
    run_name: str
    status: str = "pending"  # pending | ok | partial (PREDS= with unmatched ids) | failed | interrupted
    error: str = ""
    seconds: float | None = None
    steps: int | None = None
    run_dir: str | None = None
    log: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    subsets: list[str] = field(default_factory=list)  # the data's subsets (OmniDiff real / render), if any
    confusion: dict[str, Any] | None = None  # the final validation's confusion.json (change category), if any
    kind: str = (
        "trained"  # trained | zero-shot (MODELS=) | imported (PREDS=): experiments/compare/external.py
    )
    source: str = ""  # MODELS=: the model folder or hub id; PREDS=: the prediction file
    unmatched: dict[str, list[str]] = field(
        default_factory=dict
    )  # PREDS=: ids not in the split, pairs not predicted


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
    *, backbones: str, experiments: str, data: str = "", overrides: Sequence[str] = ()
) -> list[tuple[Run, DictConfig]]:
    """Compose every run's config up front, so a typo fails before hours of training. ``overrides``: the
    command line's (``data.root`` from ROOT= included), the same for every run."""
    exps = expand_experiments(experiments) or [""]
    bbs = backbones.split() or (list(DEFAULT_BACKBONES) if not experiments.split() else [""])
    runs = []
    for exp in exps:
        for bb in bbs:
            cfg = load_config(
                experiment=exp or None, groups={"backbone": bb, "data": data}, overrides=overrides
            )
            cfg = resolve_static(cfg)  # the backbone's name as the run will have it (model.init_from)
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
    final = folder / "eval" / f"val-step{run.steps}"
    if run.steps is not None and (final / "subsets.json").is_file():
        run.subsets = list(json.loads((final / "subsets.json").read_text()).get("subsets", {}))
    if run.steps is not None and (final / "confusion.json").is_file():
        run.confusion = json.loads((final / "confusion.json").read_text())


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
    train = ["-m", "experiments.train", *("--exp", run.experiment_arg), *("--backbone", run.backbone_arg)]
    # output to a file: the run prints plain progress lines, not a bar
    return run_python([*train, *("--data", data), *("--root", root), *("--args", args)], log=log)


def scoring_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint a trained run is scored by on another split: its best (by validation score), else its last."""
    best = sorted((run_dir / "checkpoints").glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
    last = run_dir / "checkpoints" / "last.ckpt"
    return best[-1] if best else last if last.is_file() else None


def run_python(arguments: Sequence[str], *, log: Path, append: bool = False) -> int:
    """``python <arguments>`` from the repository root, output to ``log`` (appended: a later step of the same row);
    returns the exit status. Ctrl+C stops it gracefully (SIGINT, then a kill after 30 s) and is re-raised."""
    cmd = [sys.executable, *arguments]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a" if append else "w") as out:
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
