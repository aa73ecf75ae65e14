"""``MODEL=<folder>``: a released vision-language model scored or run as it is (zero-shot), with no checkpoint.

:func:`zero_shot_parts` returns what ``make eval MODEL=`` and ``make caption MODEL=`` run: the run config, the
DataModule and the LightningModule, built by the run assembly (:func:`~experiments.common.assembly.assemble`) from a
config that starts from the folder, so everything the kit resolves from it (tower, image pipeline, chat template,
prompt, token limits) is what a fine-tune from the same folder starts with. The kind of model is read from the
folder's ``config.json`` (``model_type``) and :data:`CONFIGS` says how a config starts from it: LLaVA-OneVision
today; another family is one more entry there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import DictConfig

from experiments.common import assembly
from experiments.common.cli import UsageError
from experiments.common.config import load_config

EXPERIMENT = "zero_shot"  # run folders: logs/zero_shot/<backbone>/..., e.g. make eval's default OUT


def llava_onevision_config(folder: Path, *, data: str, overrides: Sequence[str]) -> DictConfig:
    """A LLaVA-OneVision folder as released: ``model.init_from`` with the paper recipe's model settings
    (``conf/model/llava_onevision_lora.yaml``: instruction, caption limits, tapped layers, LM dtype) and nothing
    to train: MDP at the identity (``mdp.identity_init``, on with ``init_from``) and no LoRA adapters, so the
    captioner is the base model at step 0 (checked against transformers in tests/test_zero_shot.py)."""
    return load_config(
        groups={"model": "llava_onevision_lora", "data": data},
        overrides=[
            f"experiment={EXPERIMENT}",
            f"model.init_from={json.dumps(str(folder))}",
            "model.lora.enabled=false",
            *overrides,
        ],
    )


# config.json's model_type -> the run config that starts from such a folder (keyword arguments: data, overrides).
CONFIGS: dict[str, Callable[..., DictConfig]] = {"llava_onevision": llava_onevision_config}


def model_type(folder: str | Path) -> str:
    """The ``model_type`` of a transformers folder's ``config.json`` (a usage error where there is none)."""
    path = Path(folder).expanduser() / "config.json"
    if not path.is_file():
        raise UsageError(
            f"MODEL={folder}: no config.json there; MODEL= is a model folder in Hugging Face format"
        )
    try:
        return str(json.loads(path.read_text(encoding="utf-8")).get("model_type", ""))
    except (json.JSONDecodeError, AttributeError) as err:
        raise UsageError(f"MODEL={folder}: {path.name} is not a JSON object ({err})") from None


def zero_shot_config(folder: str | Path, *, data: str = "", overrides: Sequence[str] = ()) -> DictConfig:
    """The run config of ``MODEL=<folder>`` (DATA= and ARGS= applied), before resolution."""
    kind = model_type(folder)
    if kind not in CONFIGS:
        raise UsageError(
            f"MODEL={folder}: model_type {kind!r}; zero-shot evaluation reads {', '.join(sorted(CONFIGS))} folders"
        )
    return CONFIGS[kind](Path(folder).expanduser(), data=data, overrides=list(overrides))


def zero_shot_parts(folder: str | Path, *, data: str = "", overrides: Sequence[str] = ()) -> assembly.Parts:
    """The resolved config, DataModule and captioner (in eval mode) of ``MODEL=<folder>``."""
    cfg = zero_shot_config(folder, data=data, overrides=overrides)
    assembly.apply_num_threads(cfg)
    parts = assembly.assemble(cfg, read_references=False)
    parts.module.eval()
    return parts


def checkpoint_or_model(ckpt: str, model: str, usage: str) -> None:
    """Exactly one of CKPT= and MODEL= (a usage error otherwise)."""
    if ckpt and model:
        raise UsageError(
            f"CKPT= and MODEL= together: give one (a trained checkpoint or a released model): {usage}"
        )
    if not ckpt and not model:
        raise UsageError(f"CKPT= or MODEL= required: {usage}")
