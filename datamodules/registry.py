"""One name registry for DataModules: ``register_datamodule`` / ``list_datamodules`` / ``datamodule_class``.

Shaped like :func:`mdp.register_backbone`: the decorator on the class registers it under its ``data.name``, and
every lookup goes through :func:`datamodule_class` (an unknown name is a :class:`~datamodules.errors.ConfigError`
with the nearest registered one); :func:`datamodules.build_datamodule` builds one from a ``data`` section.

The kit's own benchmark modules (:data:`KIT_MODULES`) are imported, and so register, at the first lookup rather
than with the package: ``import datamodules`` and the embedded benchmark's generator and grammar
(``datamodules.synthetic.*``) stay free of Lightning. Importing all of them costs ~0.1 s beside the Lightning
import that building any DataModule needs. A DataModule of your own registers when its module is imported.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Callable
from typing import TypeVar

from datamodules.errors import ConfigError

Module = TypeVar("Module", bound=type)

_DATAMODULES: dict[str, type] = {}
# One file per benchmark (the embedded one is a subpackage); a new kit benchmark adds its module here.
KIT_MODULES = (
    "datamodules.synthetic.datamodule",
    "datamodules.clevr_change",
    "datamodules.clevr_dc",
    "datamodules.spot_the_diff",
    "datamodules.iedit",
    "datamodules.omnidiff",
    "datamodules.birds_to_words",
    "datamodules.llava",
    "datamodules.pairs",
    "datamodules.mixture",
)


def _registered() -> dict[str, type]:
    """The registry, with the kit's benchmark modules imported (a no-op after the first time)."""
    for module in KIT_MODULES:
        importlib.import_module(module)
    return _DATAMODULES


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
    return sorted(_registered())


def datamodule_class(name: str) -> type:
    """The DataModule class registered as ``name``; an unknown name is a :class:`ConfigError` that suggests the
    nearest registered one."""
    registered = _registered()
    if name not in registered:
        near = difflib.get_close_matches(str(name), list(registered), n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        raise ConfigError(f"unknown data.name '{name}'{hint}; known: {list_datamodules()}")
    return registered[name]
