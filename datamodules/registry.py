"""One name registry for DataModules: ``register_datamodule`` / ``list_datamodules`` / ``datamodule_class``.

Shaped like :func:`mdp.register_backbone`: the decorator on the class registers it under its ``data.name``, and
every lookup goes through :func:`datamodule_class` (an unknown name is a :class:`~datamodules.errors.ConfigError`
with the nearest registered one). The kit's own DataModules register when ``datamodules`` is imported
(``datamodules/__init__.py`` imports each benchmark module); :func:`datamodules.build_datamodule` builds one
from a ``data`` section.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from typing import TypeVar

from datamodules.errors import ConfigError

Module = TypeVar("Module", bound=type)

_DATAMODULES: dict[str, type] = {}


def register_datamodule(name: str, *, overwrite: bool = False) -> Callable[[Module], Module]:
    """Class decorator registering a DataModule under ``name`` (the ``data.name`` that selects it).

    The class is a :class:`~datamodules.base.PairDataModule` whose ``config_class`` (its ``data`` keys, a
    dataclass) has ``name`` as the default of its ``name`` field.

    Example::

        @register_datamodule("my_pairs")
        class MyPairsDataModule(RecordDataModule):
            benchmark = "my_pairs"
            config_class = MyPairsConfig  # @dataclass class MyPairsConfig(RecordDataConfig): name: str = "my_pairs"
    """
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError(
            f"DataModule names must be non-empty strings without surrounding spaces, got {name!r}"
        )

    def decorator(cls: Module) -> Module:
        if name in _DATAMODULES and not overwrite:
            raise ValueError(f"DataModule {name!r} is already registered; pass overwrite=True to replace it")
        fields = {f.name: f for f in dataclasses.fields(cls.config_class)}
        if fields["name"].default != name:
            raise ValueError(
                f"{cls.__name__}.config_class.name defaults to {fields['name'].default!r}, not {name!r}: "
                "a config built from the class alone must name its DataModule"
            )
        _DATAMODULES[name] = cls
        return cls

    return decorator


def list_datamodules() -> list[str]:
    """Sorted registered names (the values ``data.name`` accepts)."""
    return sorted(_DATAMODULES)


def datamodule_class(name: str) -> type:
    """The DataModule class registered as ``name``; an unknown name is a :class:`ConfigError` that suggests the
    nearest registered one."""
    if name not in _DATAMODULES:
        near = difflib.get_close_matches(str(name), list(_DATAMODULES), n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        raise ConfigError(f"unknown data.name '{name}'{hint}; known: {list_datamodules()}")
    return _DATAMODULES[name]
