"""Run folders: where a run writes (``<logs_dir>/<experiment>/<backbone>/version_N``) and which run a resume continues.

A run folder belongs to one run. What makes a run that run is its **identity**: the experiment, the backbone, the
data (name and root; a mixture's members) and the model (``backbone`` / ``mdp`` / ``model``), with the caption
tokenizer its weights were trained with. ``RESUME=last`` continues the newest run of this experiment and backbone
*on the same data* (:func:`find_resume`); the checkpoint it picks, or the one ``RESUME=<path>`` names, is then
compared with the command's resolved config key by key (:func:`check_same_run`), and a difference is refused with
one line naming the keys and the run folder: a resumed run never writes into another run's folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from datamodules.config import ConfigError
from experiments.common.checkpoints import (
    MODEL_SECTIONS,
    CheckpointError,
    CheckpointNotFoundError,
    checkpoint_config,
    config_differences,
    read_checkpoint,
)

# A run-name component: letters, digits, "_", "-", "." (not "." or ".." alone: those leave the folder).
_COMPONENT = re.compile(r"[A-Za-z0-9_.-]+")


def run_name(cfg: DictConfig) -> str:
    """``<experiment>/<backbone>``: the backbone name with characters awkward in paths replaced, the experiment
    checked (sub-folders allowed). Raises ConfigError for a name that would put the run outside ``logs_dir``."""
    backbone = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(cfg.backbone.name)).strip(".") or "backbone"
    experiment = str(cfg.experiment)
    parts = experiment.split("/")
    if not experiment or any(not _COMPONENT.fullmatch(p) or set(p) == {"."} for p in parts):
        raise ConfigError(
            f"experiment={experiment!r}: a run folder name is one or more '/'-separated parts of letters, digits, "
            "'_', '-' and '.' (not '.' or '..', no leading '/'), so that the run stays inside logs_dir"
        )
    return f"{experiment}/{backbone}"


def run_base(cfg: DictConfig) -> Path:
    """``<logs_dir>/<run name>``, checked to be inside ``logs_dir`` (symbolic links included)."""
    logs = Path(str(cfg.logs_dir)).expanduser()
    base = logs / run_name(cfg)
    if not base.resolve().is_relative_to(logs.resolve()):
        raise ConfigError(f"run folder {base} resolves to {base.resolve()}, outside logs_dir={logs}")
    return base


# ------------------------------------------------------------------------------------------------ identity
def _data_identity(data: Mapping[str, Any]) -> dict[str, Any]:
    out = {"data.name": data.get("name"), "data.root": _path(data.get("root"))}
    for i, member in enumerate(data.get("members") or ()):
        out[f"data.members[{i}].name"] = member.get("name")
        out[f"data.members[{i}].root"] = _path(member.get("root"))
    return out


def _path(value: Any) -> str | None:
    """A root as the same folder whatever way it is written (relative, ``~``, trailing ``/``)."""
    return os.path.realpath(os.path.expanduser(str(value))) if value else None


def run_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """What picks a run folder for ``RESUME=last``: experiment, backbone name, data name and root."""
    backbone = config.get("backbone") or {}
    return {
        "experiment": config.get("experiment"),
        "backbone.name": backbone.get("name"),
        **_data_identity(config.get("data") or {}),
    }


def identity_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, saved, current)`` for each key that makes a run that run: :func:`run_identity` and the model."""
    a, b = run_identity(saved), run_identity(current)
    head = [(k, a.get(k), b.get(k)) for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]
    return head + [d for d in config_differences(saved, current, MODEL_SECTIONS) if d[0] not in a]


def describe(diffs: list[tuple[str, Any, Any]], saved_name: str, current_name: str) -> str:
    return "; ".join(f"{key}: {saved_name} {old!r}, {current_name} {new!r}" for key, old, new in diffs)


# ------------------------------------------------------------------------------------------------ resume
THIS_RUN = "this run's config"


@dataclass(frozen=True)
class Resume:
    """The checkpoint to resume and the run folder's version (None: a new version_N)."""

    path: Path
    version: int | None
    run_dir: Path | None


def find_resume(cfg: DictConfig, resume: str) -> Resume:
    """``RESUME=<path>``: that file (the run continues in a new version_N folder). ``RESUME=last``: the newest
    ``last.ckpt`` of this experiment and backbone whose run has this command's data (name and root); refused,
    naming the newest run and what differs, when none has."""
    if resume != "last":
        path = Path(resume)
        if not path.is_file():
            raise CheckpointNotFoundError(f"RESUME={resume}: no such checkpoint file")
        return Resume(path, None, None)
    base = run_base(cfg)
    candidates = sorted(
        base.glob("version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    if not candidates:
        raise CheckpointNotFoundError(
            f"RESUME=last: no {base}/version_*/checkpoints/last.ckpt to resume from"
        )
    wanted = run_identity(OmegaConf.to_container(cfg, resolve=True))
    newest: tuple[Path, list] | None = None
    for path in candidates:
        run_dir = path.parent.parent
        have = run_identity(saved_run_config(run_dir, path))
        diffs = [(k, have.get(k), v) for k, v in wanted.items() if have.get(k) != v]
        if not diffs:
            return Resume(path, int(run_dir.name.removeprefix("version_")), run_dir)
        newest = newest or (run_dir, diffs)
    run_dir, diffs = newest  # type: ignore[misc]
    raise CheckpointError(
        f"RESUME=last: no run of {base} has this command's data; the newest, {run_dir}, is another run "
        f"({describe(diffs, 'that run', 'this command')}). Start a new run (without RESUME), or resume it "
        "with the settings in its config.yaml"
    )


def saved_run_config(run_dir: Path, ckpt: Path) -> dict[str, Any]:
    """The run's ``config.yaml`` (cheap), else its checkpoint's saved config."""
    path = run_dir / "config.yaml"
    if path.is_file():
        try:
            loaded = OmegaConf.load(path)
            if isinstance(loaded, DictConfig):
                return OmegaConf.to_container(loaded, resolve=False)  # type: ignore[return-value]
        except Exception:  # unreadable: the checkpoint's own copy decides
            pass
    return checkpoint_config(read_checkpoint(ckpt), ckpt)


def check_same_run(
    checkpoint: Mapping[str, Any], resolved: Mapping[str, Any], *, path: Path, run_dir: Path | None
) -> None:
    """The checkpoint and this command are the same run (identity and model, :func:`identity_differences`); when
    the run continues in the checkpoint's folder, that folder's ``config.yaml`` and ``tokenizer.json`` are the
    checkpoint's too. One-line :class:`CheckpointError` naming the keys and the run folder otherwise."""
    saved = checkpoint_config(checkpoint, path)
    where = run_dir or "a new version_N folder"
    diffs = identity_differences(saved, resolved)
    if diffs:
        raise CheckpointError(
            f"{path}: not the run this command describes (run folder: {where}); {len(diffs)} key(s) differ: "
            f"{describe(diffs, 'checkpoint', THIS_RUN)}. Resume with the settings the run was started "
            "with (its config.yaml), or start a new run without RESUME"
        )
    if run_dir is None:
        return
    folder = saved_run_config(run_dir, path)
    diffs = identity_differences(folder, saved)
    tokenizer = run_dir / "tokenizer.json"
    saved_tokenizer = (checkpoint.get("hyper_parameters") or {}).get("tokenizer_json")
    if tokenizer.is_file() and saved_tokenizer is not None and tokenizer.read_text() != saved_tokenizer:
        diffs.append(("tokenizer", "tokenizer.json", "the checkpoint's tokenizer"))
    if diffs:
        raise CheckpointError(
            f"{path}: the checkpoint is not the run of its folder {run_dir} ({describe(diffs, 'folder', 'checkpoint')}); "
            "refused so that the folder's files are not overwritten: RESUME=<another checkpoint> or a new run"
        )
