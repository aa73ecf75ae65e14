"""Reading checkpoints safely (weights-only unpickling, clear errors, config compatibility) and writing them whole.

Every checkpoint the kit opens (``make train RESUME=``, ``make eval``, ``make caption``) goes through
:func:`read_checkpoint`: ``torch.load(weights_only=True)`` only rebuilds tensors and plain containers, so a file
that carries pickled code (``__reduce__`` payloads) is refused before anything in it runs. The model is then
rebuilt from the checkpoint's own config (``hyper_parameters.config``); :func:`check_model_config` compares it
with the config of the command, section by section, so that a mismatch names config keys instead of
producing a wall of ``size mismatch for ...`` lines.
"""

from __future__ import annotations

import pickle
import pickletools
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

# The config sections that decide the model's architecture (and so the state_dict's keys and shapes).
MODEL_SECTIONS = ("backbone", "mdp", "model")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot or must not be loaded; the message names the file and the reason."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint file at the given path."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, unpickled weights-only (no code in the file runs) on the CPU.

    Zip-format checkpoints (what ``torch.save`` writes) are memory-mapped: reading the config of a large
    checkpoint does not load its tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as err:
        # A file that names a Python object to build (pickled code: "unsupported GLOBAL posix.system") is refused;
        # bytes that are no pickle stream at all (random data: "Unsupported operand 164") are a damaged file.
        detail = next((ln.strip() for ln in str(err).splitlines() if "GLOBAL" in ln), "") or _pickled_global(
            path
        )
        if not detail:
            raise CheckpointError(_damaged(path, err)) from None
        raise CheckpointError(
            f"{path}: refused to load: the file holds pickled Python objects other than tensors and plain "
            f"containers ({detail}). Checkpoints are read weights-only, so nothing in the file was executed. A "
            "checkpoint written by this kit never contains such objects: this file was made elsewhere or tampered with."
        ) from None
    except Exception as err:  # torch raises RuntimeError / OSError / EOFError / BadZipFile for damaged files
        raise CheckpointError(_damaged(path, err)) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    return checkpoint


_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


def _pickled_global(path: Path) -> str:
    """``GLOBAL posix.system`` when the file's first pickle stream names a Python object to build (read with
    pickletools, which only lists opcodes: nothing runs); ``""`` when it names none or is no pickle stream."""
    strings: list[str] = []
    try:
        with open(path, "rb") as file:
            for opcode, arg, _ in pickletools.genops(file):
                if opcode.name in ("GLOBAL", "INST"):
                    name = str(arg).replace(" ", ".")
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    name = f"{strings[-2]}.{strings[-1]}"
                else:
                    name = ""
                if name:  # a dotted Python name, not bytes that happen to parse (random data)
                    return f"GLOBAL {name}" if _DOTTED.fullmatch(name) else ""
                if isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # not a pickle stream (random bytes, text): damaged, not refused
        return ""
    return ""


def _damaged(path: Path, err: BaseException) -> str:
    reason = next((ln.strip() for ln in str(err).splitlines() if "Unsupported operand" in ln), str(err))
    return (
        f"{path}: not a readable PyTorch checkpoint: the file is damaged (truncated, corrupt or not a checkpoint; "
        f"{type(err).__name__}: {reason[:200]})"
    )


def load_module(ckpt: str | Path) -> Any:
    """The captioner of a checkpoint, rebuilt from the checkpoint alone (its saved, resolved config; weights-only
    loading: no pickled code runs). Read first for clear errors: refused pickled code, a damaged file, not a
    captioner, a base model folder missing or other than the one an adapter-only checkpoint was trained on."""
    from lightning_modules.captioner import CaptionerModule
    from lightning_modules.model.llava_onevision import InitFromError

    path = Path(ckpt)
    if not path.is_file():
        raise CheckpointNotFoundError(f"CKPT={ckpt}: no such checkpoint file")
    checkpoint = read_checkpoint(path)
    checkpoint_config(checkpoint, path)
    check_base_model(checkpoint, path=path)
    try:
        return CaptionerModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except InitFromError as err:  # trained from a LLaVA-OneVision folder that is not there any more
        raise CheckpointError(f"{path}: cannot rebuild its model: {err}") from None


def checkpoint_config(checkpoint: Mapping[str, Any], path: str | Path) -> dict[str, Any]:
    """The run config saved with a captioner checkpoint (``hyper_parameters.config``)."""
    config = (checkpoint.get("hyper_parameters") or {}).get("config")
    if not isinstance(config, Mapping):
        raise CheckpointError(f"{path}: not an M3Diff captioner checkpoint (no hyper_parameters.config)")
    return dict(config)


def _flatten(tree: Any, prefix: str) -> dict[str, Any]:
    if isinstance(tree, Mapping) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}.{key}"))
        return out
    return {prefix: tree}


def config_differences(
    saved: Mapping[str, Any], current: Mapping[str, Any], sections: Sequence[str] = MODEL_SECTIONS
) -> list[tuple[str, Any, Any]]:
    """``(dotted key, saved value, current value)`` for every key of ``sections`` that differs."""
    missing = object()
    diffs = []
    for section in sections:
        a, b = _flatten(saved.get(section, {}), section), _flatten(current.get(section, {}), section)
        for key in sorted(set(a) | set(b)):
            old, new = a.get(key, missing), b.get(key, missing)
            if old != new:
                diffs.append((key, None if old is missing else old, None if new is missing else new))
    return diffs


def check_model_config(
    saved: Mapping[str, Any], current: Mapping[str, Any], *, path: str | Path, current_name: str, hint: str
) -> None:
    """Raise :class:`CheckpointError` naming each model-defining key whose value differs from the checkpoint's."""
    diffs = config_differences(saved, current)
    if not diffs:
        return
    keys = "; ".join(f"{key}: checkpoint {old!r}, {current_name} {new!r}" for key, old, new in diffs)
    raise CheckpointError(
        f"{path}: the checkpoint's model does not match {current_name} "
        f"({len(diffs)} key(s) of {'/'.join(MODEL_SECTIONS)} differ: {keys}). {hint}"
    )


def check_base_model(checkpoint: Mapping[str, Any], *, path: str | Path) -> None:
    """An adapter-only checkpoint (frozen base left out) can only be used with the base folder it was trained on:
    refuse a missing or different one before anything is built (the fingerprints are cheap; building is not)."""
    from lightning_modules.model.base_model import mismatch

    saved = checkpoint.get("base_model")
    problem = mismatch(saved) if saved else None
    if problem:
        raise CheckpointError(f"{path}: cannot load this adapter-only checkpoint: {problem}.")


def check_overrides(saved: Mapping[str, Any], current: Mapping[str, Any], *, path: str | Path) -> None:
    """``make eval`` / ``make caption``: the model is rebuilt from the checkpoint's config, so ARGS that change
    a model-defining key would be silently ignored (or, applied, break the weights): refuse them by name."""
    check_model_config(
        saved,
        current,
        path=path,
        current_name="ARGS",
        hint="The model is rebuilt from the checkpoint's own config; drop these keys from ARGS.",
    )
    check_generation_room(saved, current, path=path)


def check_generation_room(saved: Mapping[str, Any], current: Mapping[str, Any], *, path: str | Path) -> None:
    """A tiny LM's position table was sized at training for ``model.max_caption_tokens`` +
    ``generation.max_new_tokens`` positions after the prompt: ``generation.max_new_tokens`` in ARGS may not ask
    for more (it would fail deep in the LM with an index error)."""
    from lightning_modules.model.language_model import is_tiny_lm

    model, asked = saved.get("model") or {}, (current.get("generation") or {}).get("max_new_tokens")
    trained = (saved.get("generation") or {}).get("max_new_tokens")
    if not is_tiny_lm(str((model.get("lm") or {}).get("name"))) or None in (asked, trained):
        return
    room = int(model.get("max_caption_tokens") or 0) + int(trained)
    if int(asked) > room:
        raise CheckpointError(
            f"{path}: generation.max_new_tokens={asked} is more than this checkpoint's tiny LM has positions for "
            f"({room}: model.max_caption_tokens + generation.max_new_tokens as trained); ask for at most {room}"
        )
