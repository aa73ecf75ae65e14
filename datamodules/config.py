"""The ``data`` section's schema, and the one checked merge every config value goes through.

Each DataModule declares its keys once, as a dataclass beside it (``PairDataConfig`` in ``base.py``,
``ClevrChangeConfig`` in ``clevr_change.py``, ...): every key's type, default and the checks of its value
(``__post_init__``); the class names it in its ``config_class`` and the DataModule's constructor takes that
object. ``data.name`` picks the schema (:func:`data_schema`, through the registry). :func:`data_config`
composes a ``data`` section on that schema: the run's ``data`` section, and each member of a mixture
(``datamodules/mixture.py``), go through it; :func:`data_object` turns one into its dataclass, which runs the
value checks (the composed run config does so at once, so a bad value fails before any model is loaded).

:func:`merge_checked` sets values on an OmegaConf structured config (``OmegaConf.set_struct``) and turns
OmegaConf's errors into one line that names the source, the key, the nearest valid key and the expected type.
OmegaConf's own deprecated implicit conversions (``3`` -> ``True``, ``1`` -> ``"1"``) are refused as errors;
an int where a float is expected is accepted.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from datamodules.base import PairDataConfig
from datamodules.errors import ConfigError
from datamodules.registry import datamodule_class, list_datamodules


def merge_checked(
    cfg: DictConfig,
    values: Mapping[str, Any] | DictConfig,
    *,
    source: str,
    extra_keys: Mapping[str, Iterable[str]] | None = None,
    prefix: str = "",
) -> None:
    """Set ``values`` (a nested mapping) on the structured config ``cfg`` in place, key by key.

    Sections (dataclass nodes) are merged key by key; leaves, lists and free-form mappings (``Dict`` fields such
    as ``data.groups``) are replaced whole. ``extra_keys`` maps a section's dotted path to keys it accepts
    beyond its schema (``trainer``: any ``lightning.Trainer`` argument).
    """
    if isinstance(values, DictConfig | ListConfig):
        values = OmegaConf.to_container(values, resolve=False)  # interpolations resolve once, at the end
    extra = {k: set(v) for k, v in (extra_keys or {}).items()}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key not in cfg:
            section = prefix.rstrip(".")
            if key in extra.get(section, ()):
                with _open(cfg):
                    cfg[key] = value
                continue
            valid = sorted({*all_keys(cfg, prefix), *(f"{prefix}{k}" for k in extra.get(section, ()))})
            near = difflib.get_close_matches(path, valid, n=1, cutoff=0.5)
            hint = _other_benchmarks(cfg, key) or (f"; did you mean '{near[0]}'?" if near else "")
            raise ConfigError(f"{source}: unknown config key '{path}'{hint}")
        if _is_section(cfg, key) and isinstance(value, Mapping):
            merge_checked(cfg[key], value, source=source, extra_keys=extra_keys, prefix=f"{path}.")
        else:
            _set(cfg, key, value, path=path, source=source)


def all_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Every dotted key of ``cfg`` (sections and leaves; not inside free-form mappings)."""
    keys = []
    for key in cfg:
        keys.append(f"{prefix}{key}")
        if _is_section(cfg, key):
            keys.extend(all_keys(cfg[key], f"{prefix}{key}."))
    return keys


def _other_benchmarks(cfg: DictConfig, key: str) -> str:
    """A data key of other DataModules (``swap_prob`` under ``data.name: synthetic``) says whose it is."""
    if not issubclass(OmegaConf.get_type(cfg), PairDataConfig):
        return ""
    owners = [
        name for name in list_datamodules() if key in {f.name for f in dataclasses.fields(data_schema(name))}
    ]
    return f"; it is a key of data.name {' / '.join(owners)}, not of {cfg.name}" if owners else ""


def _is_section(cfg: DictConfig, key: str) -> bool:
    return dataclasses.is_dataclass(OmegaConf.get_type(cfg, key))


class _open:
    """``open_dict`` for one node, keeping struct mode on the rest."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg

    def __enter__(self) -> None:
        OmegaConf.set_struct(self.cfg, False)

    def __exit__(self, *exc: object) -> None:
        OmegaConf.set_struct(self.cfg, True)


def _set(cfg: DictConfig, key: str, value: Any, *, path: str, source: str) -> None:
    node = cfg._get_node(key)
    expected = node._metadata.type_hint if node is not None else Any
    if _accepts_float(expected) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)  # 1 where a float is expected: what anyone means
    try:
        with warnings.catch_warnings():
            # OmegaConf still converts 3 -> True and 1 -> "1" with a FutureWarning; here that is an error.
            warnings.filterwarnings("error", message="Implicit conversion", category=FutureWarning)
            cfg[key] = value
    except (OmegaConfBaseException, FutureWarning, ValueError) as err:
        old = OmegaConf.to_container(cfg, resolve=False)[key]
        like = f" (like {old!r})" if old is not None else ""
        raise ConfigError(
            f"{source}: '{path}' expects {type_name(expected)}{like}, got {type(value).__name__} {value!r}"
        ) from err


def _accepts_float(hint: Any) -> bool:
    """``float`` or ``Optional[float]`` (not ``Union[int, float]``, which keeps an int as it is)."""
    args = typing.get_args(hint) if typing.get_origin(hint) is typing.Union else (hint,)
    return float in args and int not in args


def type_name(hint: Any) -> str:
    """``Optional[int]`` -> ``int or null``; ``List[int]`` -> ``list``; ``Union[int, float]`` -> ``int or float``."""
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        names = [type_name(a) for a in typing.get_args(hint) if a is not type(None)]
        nullable = type(None) in typing.get_args(hint)
        return " or ".join(names + (["null"] if nullable else []))
    if origin in (list, dict):
        return f"{origin.__name__} of {' to '.join(type_name(a) for a in typing.get_args(hint))}"
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    return getattr(hint, "__name__", str(hint))


# ------------------------------------------------------------------------------------------------ data section
def data_schema(name: str) -> type:
    """The dataclass of the DataModule registered as ``data.name: <name>``."""
    return datamodule_class(name).config_class


def data_config(
    values: Mapping[str, Any] | DictConfig,
    *,
    source: str,
    inherited: Mapping[str, Any] | None = None,
    prefix: str = "data.",
) -> DictConfig:
    """A ``data`` section on the schema of ``values["name"]``: schema defaults < ``inherited`` < ``values``.
    ``prefix``: the section's dotted path in messages."""
    if isinstance(values, DictConfig):
        values = OmegaConf.to_container(values, resolve=False)
    name = values.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(
            f"{source}: the data section needs a 'name' (a DataModule name), got {dict(values)!r}"
        )
    cfg = OmegaConf.structured(data_schema(name))
    OmegaConf.set_struct(cfg, True)
    if inherited:
        merge_checked(cfg, {k: v for k, v in inherited.items() if k in cfg}, source=source, prefix=prefix)
    merge_checked(cfg, values, source=source, prefix=prefix)
    return cfg


def data_object(
    values: Mapping[str, Any] | DictConfig,
    *,
    source: str = "data",
    inherited: Mapping[str, Any] | None = None,
    prefix: str = "data.",
) -> PairDataConfig:
    """The ``data`` section as its DataModule's config object (what the DataModule's constructor takes): the
    section composed by :func:`data_config`, then built as the dataclass, whose ``__post_init__`` checks the
    values (a :class:`ConfigError` naming the key)."""
    return OmegaConf.to_object(data_config(values, source=source, inherited=inherited, prefix=prefix))
