"""What a checkpoint needs to say about the pretrained base it was trained on, when it does not hold it.

With LoRA the 7B base is frozen: saving it every few hundred steps would write ~15 GB of bytes that never change.
An adapter-only checkpoint keeps the trained tensors and, per base folder, its path and a fingerprint; loading
rebuilds the base from the folder and refuses one whose fingerprint differs (another fine-tune with the same
layout, another tokenizer, a partial download).

The fingerprint is a SHA-256 over the folder's small files (config, tokenizer, chat template, preprocessor: in full)
and, for each weights file, its name, size, safetensors header (every tensor's name, dtype, shape and offsets) and
the first and last 64 bytes of every tensor's data: about two small reads per tensor, well under a second for a
15 GB folder, yet any retrained tensor changes it.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any


class BaseModelMismatchError(ValueError):
    """An adapter-only checkpoint meets a base model folder other than the one it was trained on."""


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_SMALL_FILE = 64 * 2**20  # non-weight files up to this size are hashed in full (Qwen2's tokenizer.json: 7 MB)
_EDGE = 64


def fingerprint(folder: str | Path) -> str:
    """``sha256:<hex>`` of the folder's model-defining content (see the module docstring)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        # Hidden files (huggingface-cli's .cache/ download metadata) and the model card do not define the model.
        if any(part.startswith(".") for part in rel.split("/")) or path.name == "README.md":
            continue
        size = path.stat().st_size
        digest.update(f"{rel}\0{size}\0".encode())
        if path.suffix in _WEIGHT_SUFFIXES:
            _hash_weights(path, size, digest)
        elif size <= _SMALL_FILE:
            digest.update(path.read_bytes())
    return "sha256:" + digest.hexdigest()


def _hash_weights(path: Path, size: int, digest: Any) -> None:
    with path.open("rb") as f:
        if path.suffix == ".safetensors":
            (header_len,) = struct.unpack("<Q", f.read(8))
            header = f.read(header_len)
            digest.update(header)
            start = 8 + header_len
            spans = sorted(
                tuple(entry["data_offsets"])
                for name, entry in json.loads(header).items()
                if name != "__metadata__"
            )
            for begin, end in spans:
                for offset in {begin, max(begin, end - _EDGE)}:
                    f.seek(start + offset)
                    digest.update(f.read(min(_EDGE, end - offset)))
        else:  # pickled checkpoints have no index: sample their ends
            for offset in sorted({0, max(0, size - 2**20)}):
                f.seek(offset)
                digest.update(f.read(2**20))


def base_sources(config: dict) -> dict[str, str]:
    """Module prefix -> base folder, for the parts of the captioner built from pretrained folders, read from a
    resolved config: a pretrained ``model.lm.name`` (a folder, or a hub id resolved in the HF cache) for the LM;
    a transformers tower ``backbone.name: hf:<folder>`` with that folder's own weights (``backbone.pretrained:
    <folder>``; ``model.init_from`` resolves to both) for the backbone. Backbones loaded from open_clip / timm tags are not covered: if frozen, their
    tensors stay in the checkpoint.
    """
    from lightning_modules.model.language_model import is_tiny_lm

    sources = {}
    backbone, lm_name = config["backbone"], config["model"]["lm"]["name"]
    if backbone.get("pretrained") and backbone["name"] == f"hf:{backbone['pretrained']}":
        sources["model.backbone."] = str(backbone["pretrained"])
    if not is_tiny_lm(lm_name):
        sources["model.lm."] = str(lm_name)
    return sources


def resolve_source(source: str) -> Path | None:
    """A base folder, or a hub id found in the HF cache (never downloaded); None when neither exists."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if source.count("/") != 1 or source.startswith((".", "/", "~")):
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=source, local_files_only=True))
    except Exception:  # not in the cache
        return None


def describe(sources: dict[str, str]) -> dict[str, dict[str, str]]:
    """Base folder -> {"source", "fingerprint"} for a checkpoint (each folder once)."""
    out = {}
    for source in dict.fromkeys(sources.values()):
        folder = resolve_source(source)
        if folder is None:
            raise FileNotFoundError(f"base model {source}: no such folder (nor a hub id in the HF cache)")
        out[source] = {"source": source, "fingerprint": fingerprint(folder)}
    return out


def mismatch(saved: dict[str, dict[str, str]]) -> str | None:
    """Why the base folders a checkpoint was trained on cannot be used now, or None when they match."""
    for source, entry in saved.items():
        folder = resolve_source(source)
        if folder is None:
            return (
                f"its base model {source} is not there (the checkpoint holds only the trained tensors, the frozen "
                f"base is read from that folder; fingerprint {entry['fingerprint']}). Put the folder back at that "
                "path (a symlink will do)"
            )
        found = fingerprint(folder)
        if found != entry["fingerprint"]:
            return (
                f"its base model {source} has changed: fingerprint {found}, but the checkpoint was trained on "
                f"{entry['fingerprint']} (another fine-tune, tokenizer or an incomplete download?). Use the folder "
                "it was trained on"
            )
    return None
