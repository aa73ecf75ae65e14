"""The one front door of every entry point: its arguments, the config overrides, and user errors as one line.

An entry point is a function of its parsed arguments, run by :func:`run`::

    def main(argv=None) -> int:
        parser = cli.parser(__doc__)
        cli.add_config_arguments(parser)        # BACKBONE= DATA= ROOT= EXP= ARGS= (entry points that compose)
        return cli.run(parser, train, argv)     # train(args) -> exit status

:func:`run` parses, configures logging, calls the function, and turns every error a user fixes with a setting,
a path or a file (:data:`USER_ERRORS`) into one line on stderr with exit status 2: no traceback. Anything else
is a bug and keeps its traceback. Values reach the command line from ``make`` as strings (empty = not given),
so every option defaults to ``""``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable, Sequence

from omegaconf import DictConfig

import mdp
from datamodules.errors import ConfigError, DataError
from datamodules.images import ImageLoadError
from evaluation.coco_files import ScoreInputError
from experiments.common import console
from experiments.common.checkpoints import CheckpointError
from experiments.common.outputs import OutputError
from lightning_modules.model.prompt import ChatTemplateError
from lightning_modules.model.transformers_vlm import UnsupportedModelError


class UsageError(ValueError):
    """A command-line value that cannot work (a missing ``CKPT=``, ``SPLIT=train`` for ``make eval``, ...)."""


# Errors a user fixes with a setting, a path or a file, not bugs: one line, exit 2. Their messages name the file,
# key or record; the prefix says which kind of input it is.
USER_ERRORS: tuple[type[Exception], ...] = (
    UsageError,
    ConfigError,
    CheckpointError,
    mdp.BackboneWeightsError,
    mdp.LayersError,  # backbone.layers that the backbone does not have
    mdp.ImageProcessorError,  # a folder's image processor settings the kit does not reproduce
    DataError,
    ImageLoadError,
    ScoreInputError,
    ChatTemplateError,  # model.chat_template / model.prompt the kit cannot lay two images out with
    UnsupportedModelError,  # MODEL= whose processor cannot take a pair's two images in one prompt
    OutputError,
    FileNotFoundError,  # a path given on the command line (BEFORE=, a base model folder) that is not there
)
_PREFIXES = {
    ConfigError: "config error",
    mdp.LayersError: "config error: backbone.layers",
    CheckpointError: "checkpoint error",
    DataError: "data error",
}


def parser(doc: str | None, **kwargs) -> argparse.ArgumentParser:
    """An entry point's parser, its description the module docstring (``python -m experiments.x --help``)."""
    return argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs
    )


def add_config_arguments(parser: argparse.ArgumentParser, *, groups: bool = True) -> None:
    """The config options of the entry points that compose a run config (``groups=False``: only ROOT= and
    ARGS=, for commands that start from a checkpoint's config)."""
    if groups:
        parser.add_argument("--backbone", default="", help="backbone group or timm model name (BACKBONE=)")
        parser.add_argument("--data", default="", help="data group: synthetic, clevr_change, ... (DATA=)")
        parser.add_argument("--exp", default="", help="experiment YAML under experiments/ (EXP=)")
        parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--root", default="", help="dataset folder, sets data.root (ROOT=)")
    parser.add_argument("--args", default="", help='space-separated key=value overrides (ARGS="a.b=1 c=2")')
    parser.add_argument("overrides", nargs="*", help="key=value overrides")


def add_force_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """``--force`` (``FORCE=1``): replace {what}; ``--force ""`` (FORCE unset in make) is off."""
    parser.add_argument(
        "--force",
        nargs="?",
        const="1",
        default="",
        help=f"FORCE=1: replace {what} (it is deleted; any other non-empty OUT is refused)",
    )


def overrides(args: argparse.Namespace) -> list[str]:
    """The ``key=value`` overrides of the command line, in order: ``--root`` (the one way ROOT= becomes
    ``data.root``), then ``--args`` (split as a shell would: quotes group), then positional ones."""
    # JSON-quoted: the path stays a string whatever it looks like to YAML (``007``, ``yes``, ``a: b``).
    root = [f"data.root={json.dumps(args.root)}"] if getattr(args, "root", "") else []
    return [*root, *split_args(getattr(args, "args", "")), *getattr(args, "overrides", [])]


def split_args(text: str) -> list[str]:
    """``ARGS="a=1 b='x y'"`` -> ``["a=1", "b=x y"]``; an unbalanced quote is a config error, not a traceback."""
    try:
        return shlex.split(text or "")
    except ValueError as err:  # "No closing quotation"
        raise ConfigError(f"ARGS: cannot split {text!r} into key=value items: {err}") from None


def compose(args: argparse.Namespace) -> DictConfig:
    """The run config of BACKBONE= / DATA= / EXP= / ROOT= / ARGS= (:func:`~experiments.common.config.load_config`)."""
    from experiments.common.config import load_config  # Lightning comes with it: not for make score's start

    return load_config(
        experiment=args.exp or None,
        groups={"backbone": args.backbone, "data": args.data},
        overrides=overrides(args),
    )


def error_line(err: Exception) -> str:
    """``config error: ...`` / ``checkpoint error: ...`` / ``data error: ...`` / ``error: ...``."""
    kind = next((k for cls, k in _PREFIXES.items() if isinstance(err, cls)), "error")
    return f"{kind}: {err}"


def run(
    parser: argparse.ArgumentParser,
    command: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None = None,
    *,
    logging: bool = True,
) -> int:
    """Parse ``argv``, configure logging (unless ``logging=False``: commands that print only results), run
    ``command(args)`` and return its exit status (``None`` = 0); a user error is one line and status 2."""
    args = parser.parse_args(argv)
    if logging:
        console.configure_logging()
    try:
        return command(args) or 0
    except USER_ERRORS as err:
        print(error_line(err), file=sys.stderr)
        return 2


def require(args: argparse.Namespace, names: Sequence[str], usage: str) -> None:
    """Every option of ``names`` given (non-empty), else a :class:`UsageError` naming the make variables."""
    missing = [name.upper() for name in names if not getattr(args, name)]
    if missing:
        raise UsageError(f"{', '.join(missing)} required: {usage}")
