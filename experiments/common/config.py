"""Config composition with OmegaConf (no Hydra).

    conf/base.yaml  <  conf/<group>/<choice>.yaml  <  experiment YAML  <  ``key=value`` overrides

``conf/base.yaml`` holds the schema: every key the kit reads. Its ``defaults`` section picks one file per
group; an experiment YAML may pick others in its own ``defaults`` and the command line (``BACKBONE=``,
``DATA=``) has the last word. Group files may add keys to the sections they configure (a benchmark's
own settings, say); the experiment and the overrides may only *set* keys that exist, with values of the
same type. ``trainer.*`` additionally accepts any argument of ``lightning.Trainer``. Config values are
data: YAML is parsed with a safe loader and nothing is ever evaluated.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

REPO_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = REPO_ROOT / "conf"
EXPERIMENTS_DIR = REPO_ROOT / "experiments"
GROUPS = ("backbone", "data", "model", "trainer")


class _Loader(yaml.SafeLoader):
    """Safe YAML loader that also reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


class ConfigError(ValueError):
    """A config cannot be composed: unknown key, wrong type, missing file."""


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
        overrides: ``key=value`` strings (values parsed as YAML).
    """
    base = _read_yaml(conf_dir / "base.yaml")
    exp = _read_yaml(resolve_experiment(experiment)) if experiment else {}
    choices = {**base.pop("defaults", {}), **exp.pop("defaults", {})}
    extra: list[str] = []
    for group, choice in (groups or {}).items():
        if choice:
            choices[group] = choice
    if "backbone" in choices and not (conf_dir / "backbone" / f"{choices['backbone']}.yaml").exists():
        # BACKBONE=<timm model name>: the generic timm group with that name.
        extra.append(f"backbone.name=timm:{choices['backbone'].removeprefix('timm:')}")
        choices["backbone"] = "timm"

    cfg = OmegaConf.create(base)
    for group in GROUPS:
        if group in choices:
            path = conf_dir / group / f"{choices[group]}.yaml"
            if not path.exists():
                options = sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))
                raise ConfigError(f"no {group} config '{choices[group]}' ({path}); choose one of {options}")
            cfg = OmegaConf.merge(cfg, _read_yaml(path))
    cfg.defaults = choices
    if exp:
        _check_and_merge(cfg, _flatten(exp), source=str(resolve_experiment(experiment)))
        if "experiment" not in exp:
            cfg.experiment = Path(str(experiment)).stem
    _check_and_merge(cfg, _parse_overrides([*extra, *overrides]), source="command line")
    OmegaConf.resolve(cfg)
    return cfg


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


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.load(Path(path).read_text(), Loader=_Loader) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


# Keys whose value is a user-defined mapping, set as a whole (not config sections to recurse into).
FREE_FORM_KEYS = ("defaults", "groups", "fields", "category_map", "subsets")


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; the mappings of ``FREE_FORM_KEYS`` stay whole."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and key not in FREE_FORM_KEYS:
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        try:
            parsed[key.strip()] = yaml.load(raw, Loader=_Loader) if raw != "" else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"override '{item}': cannot parse value: {err}") from None
    return parsed


def _all_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    keys = []
    for key, value in cfg.items():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if isinstance(value, DictConfig):
            keys.extend(_all_keys(value, dotted + "."))
    return keys


def _trainer_args() -> set[str]:
    from lightning import Trainer

    return {p for p in inspect.signature(Trainer.__init__).parameters if p != "self"}


def _check_and_merge(cfg: DictConfig, flat: Mapping[str, Any], *, source: str) -> None:
    for key, value in flat.items():
        if key == "experiment" or key == "defaults":
            if key == "experiment":
                cfg.experiment = value
            continue
        exists = OmegaConf.select(cfg, key, default=_MISSING) is not _MISSING
        if not exists:
            section, _, leaf = key.partition(".")
            if section == "trainer" and leaf in _trainer_args():
                cfg.trainer[leaf] = value
                continue
            valid = _all_keys(cfg) + (
                sorted(f"trainer.{a}" for a in _trainer_args()) if section == "trainer" else []
            )
            near = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise ConfigError(f"{source}: unknown config key '{key}'{hint}")
        old = OmegaConf.select(cfg, key)
        _check_type(key, old, value, source=source)
        OmegaConf.update(cfg, key, value, merge=False)


_MISSING = object()


def _check_type(key: str, old: Any, new: Any, *, source: str) -> None:
    if old is None or new is None:
        return
    if isinstance(old, (DictConfig, ListConfig)):
        old = OmegaConf.to_container(old)
    ok = (
        (isinstance(old, bool) and isinstance(new, bool))
        or (
            isinstance(old, (int, float))
            and not isinstance(old, bool)
            and isinstance(new, (int, float))
            and not isinstance(new, bool)
        )
        or (isinstance(old, str) and isinstance(new, str))
        or (isinstance(old, list) and isinstance(new, list))
        or (isinstance(old, dict) and isinstance(new, dict))
    )
    if isinstance(old, int) and not isinstance(old, bool) and isinstance(new, float) and not new.is_integer():
        ok = False
    if not ok:
        raise ConfigError(
            f"{source}: '{key}' expects {type(old).__name__} (like {old!r}), got {type(new).__name__} {new!r}"
        )


def apply_overrides(cfg: DictConfig, overrides: Sequence[str], *, source: str = "command line") -> DictConfig:
    """Apply ``key=value`` overrides to an existing config (e.g. one read back from a checkpoint)."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    _check_and_merge(cfg, _parse_overrides(overrides), source=source)
    return cfg
