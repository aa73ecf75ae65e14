"""Config composition with OmegaConf (no Hydra).

    schema (experiments/common/schema.py)  <  conf/base.yaml  <  conf/<group>/<choice>.yaml
        <  experiment YAML  <  ``key=value`` overrides

The schema is a structured config: every key, its type and default. ``conf/base.yaml`` picks one file per group
in its ``defaults``; an experiment YAML may pick others in its own ``defaults`` and the command line
(``BACKBONE=``, ``DATA=``) has the last word. The ``data`` section's schema is the one of its DataModule
(``data.name``). Files and overrides may only set keys that exist, with values of the declared type
(``trainer.*`` also accepts any argument of ``lightning.Trainer``). YAML is read by OmegaConf (safe loading:
nothing is ever evaluated; ``${oc.env:VAR}`` is the only kind of interpolation that does something).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import mdp
from datamodules.config import ConfigError, data_config, data_object, merge_checked
from experiments.common.schema import MDP_DERIVED, MDP_KIT_DEFAULTS, RunConfig, check_values

REPO_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = REPO_ROOT / "conf"
EXPERIMENTS_DIR = REPO_ROOT / "experiments"
GROUPS = ("backbone", "data", "model", "trainer")

__all__ = ["ConfigError", "load_config", "apply_overrides", "compose", "to_container", "trainer_kwargs"]


def load_config(
    *,
    experiment: str | Path | None = None,
    groups: Mapping[str, str] | None = None,
    overrides: Sequence[str] = (),
    conf_dir: Path = CONF_DIR,
) -> DictConfig:
    """Compose the run config.

    Args:
        experiment: an experiment name (``experiments/<name>.yaml``, sub-folders allowed, e.g.
            ``ablations/mdp_off``) or a path to a YAML file; ``None`` for none.
        groups: group choices that override ``defaults`` (e.g. ``{"backbone": "clip"}``). A backbone that
            has no file in ``conf/backbone/`` is taken as a timm model name (``conf/backbone/timm.yaml``).
        overrides: ``key=value`` strings (values parsed as YAML by ``OmegaConf.from_dotlist``).
    """
    base = read_yaml(conf_dir / "base.yaml")
    exp_path = resolve_experiment(experiment) if experiment else None
    exp = read_yaml(exp_path) if exp_path else {}
    choices = {**base.pop("defaults", {}), **exp.pop("defaults", {})}
    choices.update({group: choice for group, choice in (groups or {}).items() if choice})
    extra: list[str] = []
    if "backbone" in choices and not (conf_dir / "backbone" / f"{choices['backbone']}.yaml").exists():
        # BACKBONE=<timm model name>: the generic timm group with that name.
        extra.append(f"backbone.name=timm:{choices['backbone'].removeprefix('timm:')}")
        choices["backbone"] = "timm"
    if exp_path and "experiment" not in exp:
        exp["experiment"] = Path(str(experiment)).stem
    files = [_group_file(conf_dir, group, choices[group]) for group in GROUPS if group in choices]
    cfg = compose(
        [
            (str(conf_dir / "base.yaml"), base),
            *((str(path), read_yaml(path)) for path in files),
            *([(str(exp_path), exp)] if exp_path else []),
            ("command line", parse_overrides([*extra, *overrides])),
        ]
    )
    cfg.defaults = choices
    return cfg


def compose(layers: Sequence[tuple[str, Mapping[str, Any]]]) -> DictConfig:
    """``(source, nested values)`` layers, lowest first, merged onto the schema; interpolations resolved."""
    cfg = OmegaConf.structured(RunConfig)
    OmegaConf.set_struct(cfg, True)
    data = {}
    for _, values in layers:
        data.update(values.get("data") or {})  # the last data.name picks the data section's schema
    cfg.data = data_config({"name": data.get("name", "synthetic")}, source="data")
    for source, values in layers:
        merge_checked(cfg, values, source=source, extra_keys={"trainer": _trainer_args()})
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as err:
        raise ConfigError(f"cannot resolve an interpolation: {str(err).splitlines()[0]}") from None
    _check_mdp(cfg)
    check_values(to_container(cfg))
    data_object(cfg.data)  # the data keys' value checks (a mixture's members too): now, not at build
    return cfg


def apply_overrides(
    cfg: DictConfig | Mapping, overrides: Sequence[str], *, source: str = "command line"
) -> DictConfig:
    """``key=value`` overrides on a composed config (e.g. one read back from a checkpoint), checked alike."""
    saved = to_container(cfg) if isinstance(cfg, DictConfig) else dict(cfg)
    return compose([("checkpoint config", saved), (source, parse_overrides(overrides))])


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[1, 2]"]`` -> ``{"a": {"b": 1}, "c": [1, 2]}`` (values parsed as YAML by OmegaConf).

    A value that is not valid YAML is taken as the text it is: ``data.annotations={split}.jsonl`` (a shell
    removes the quotes of ``"{split}.jsonl"``) is the string ``{split}.jsonl``, not a YAML error; the key's
    declared type still checks it.
    """
    out = OmegaConf.create()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, value = item.split("=", 1)
        try:
            parsed = OmegaConf.from_dotlist([item])
        except (yaml.parser.ParserError, yaml.scanner.ScannerError):  # not YAML syntax: the text as written
            parsed = _literal(key, value)
        except (yaml.YAMLError, OmegaConfBaseException) as err:  # e.g. a !!python tag: never constructed
            raise ConfigError(
                f"override {key}: cannot parse value {value!r}: {str(err).splitlines()[0]}"
            ) from None
        out = OmegaConf.merge(out, parsed)
    return OmegaConf.to_container(out, resolve=False)


def _literal(key: str, value: str) -> DictConfig:
    try:
        parsed = OmegaConf.create()
        OmegaConf.update(parsed, key, value, merge=False)
        return parsed
    except OmegaConfBaseException as err:
        raise ConfigError(f"override {key}: cannot use {value!r}: {str(err).splitlines()[0]}") from None


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML file as nested plain values (``OmegaConf.load``: ``1e-3`` is a float, no Python tags)."""
    try:
        loaded = OmegaConf.load(path)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (yaml.YAMLError, OmegaConfBaseException) as err:
        raise ConfigError(f"{path}: invalid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{path}: expected a mapping at the top level, got a list")
    return OmegaConf.to_container(loaded, resolve=False)


def resolve_experiment(experiment: str | Path) -> Path:
    path = Path(experiment)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    candidate = EXPERIMENTS_DIR / f"{experiment}.yaml"
    if candidate.exists():
        return candidate
    known = sorted(
        str(p.relative_to(EXPERIMENTS_DIR).with_suffix("")) for p in EXPERIMENTS_DIR.rglob("*.yaml")
    )
    near = difflib.get_close_matches(str(experiment), known, n=1)
    hint = f" — did you mean '{near[0]}'?" if near else ""
    raise ConfigError(f"no experiment '{experiment}' (looked for {candidate}){hint}; known: {known}")


def experiment_overrides(experiment: str) -> list[str]:
    """An experiment YAML's keys as ``key=value`` overrides (its ``experiment`` name left out), for adding its
    settings to another experiment: ``experiment_overrides("tiny")`` -> ``["backbone.image_size=32", ...]``."""
    data = read_yaml(resolve_experiment(experiment))
    data.pop("experiment", None)
    data.pop("defaults", None)

    def leaves(node: Any, prefix: str) -> list[str]:
        if isinstance(node, dict):
            return [item for key, value in node.items() for item in leaves(value, f"{prefix}{key}.")]
        return [
            f"{prefix[:-1]}={yaml.safe_dump(node, default_flow_style=True).strip().removesuffix('...').strip()}"
        ]

    return leaves(data, "")


def save_config(cfg: DictConfig, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(OmegaConf.to_yaml(cfg))


def to_container(cfg: DictConfig | ListConfig) -> Any:
    """Plain dicts/lists (safe for checkpoints loaded with ``weights_only=True``)."""
    return OmegaConf.to_container(cfg, resolve=True)


def trainer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """The ``trainer`` section as keyword arguments for ``lightning.Trainer``."""
    return dict(to_container(cfg.trainer))


# --------------------------------------------------------------------------------------------- internals
def _group_file(conf_dir: Path, group: str, choice: str) -> Path:
    path = conf_dir / group / f"{choice}.yaml"
    if not path.exists():
        options = sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))
        raise ConfigError(f"no {group} config '{choice}' ({path}); choose one of {options}")
    return path


@cache
def _trainer_args() -> frozenset[str]:
    from lightning import Trainer

    return frozenset(p for p in inspect.signature(Trainer.__init__).parameters if p != "self")


def _check_mdp(cfg: DictConfig) -> None:
    """The ``mdp`` choices, checked by ``mdp.MDPConfig`` now rather than when the model is built."""
    # Kit-level "null = decided later" values (identity_init: on with model.init_from) are checked when resolved.
    values = {
        k: v
        for k, v in to_container(cfg.mdp).items()
        if k != "enabled" and not (k in MDP_KIT_DEFAULTS and v is None)
    }
    try:
        # dim / num_layers come from the backbone; placeholders that pass their own checks.
        mdp.MDPConfig(**values, **dict(zip(MDP_DERIVED, (max(1, values["num_heads"]), 1))))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"mdp: {err}") from None
