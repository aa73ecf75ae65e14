"""What a checkpoint needs to say about the pretrained base it was trained on, when it does not hold it.

With LoRA the 7B base is frozen: saving it every few hundred steps would write ~15 GB of bytes that never change.
An adapter-only checkpoint keeps the trained tensors and, per base folder, its path and a fingerprint; loading
rebuilds the base from the folder and refuses one whose fingerprint differs (another fine-tune with the same
layout, another tokenizer, a partial download, one value changed anywhere).

The fingerprint (``sha256-full:<hex>``) is a SHA-256 over the folder's model-defining files (everything but hidden
files and README.md): each file's relative name, size and the SHA-256 of all its bytes. Hashing a 15 GB folder
takes about a minute, so each file's hash is cached, keyed by its absolute path, size, modification time and
inode change time (``os.stat``: st_mtime_ns, st_ctime_ns; any write changes the latter, even one that restores
the modification time): in memory for the process, and on disk in ``file_hashes.json`` under
``$M3DIFF_CACHE_DIR``, else ``$XDG_CACHE_HOME/m3diff``, else ``~/.cache/m3diff`` (:func:`cache_file`; delete it
any time, it is only a cache). A repeated load only stats the files.

Checkpoints written before this scheme hold ``sha256:<hex>``: the header and the first and last 64 bytes of every
tensor (:func:`sampled_fingerprint`). They are checked in that scheme, which misses a change in the middle of a
tensor; a new checkpoint of the run records the full one.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any


class BaseModelMismatchError(ValueError):
    """An adapter-only checkpoint meets a base model folder other than the one it was trained on."""


FULL, SAMPLED = "sha256-full:", "sha256:"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_SMALL_FILE = 64 * 2**20  # the sampled scheme hashes non-weight files up to this size in full
_EDGE = 64
_MEMORY: dict[tuple[str, int, int, int], str] = {}


def _model_files(folder: Path) -> list[tuple[Path, str, int]]:
    """(path, name relative to the folder, size) of the files that define the model, sorted by name."""
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        # Hidden files (huggingface-cli's .cache/ download metadata) and the model card do not define the model.
        if any(part.startswith(".") for part in rel.split("/")) or path.name == "README.md":
            continue
        out.append((path, rel, path.stat().st_size))
    return out


def fingerprint(folder: str | Path) -> str:
    """``sha256-full:<hex>`` of every byte of the folder's model-defining files (see the module docstring)."""
    digest = hashlib.sha256()
    for path, rel, size in _model_files(Path(folder)):
        digest.update(f"{rel}\0{size}\0{file_sha256(path)}\0".encode())
    return FULL + digest.hexdigest()


def fingerprint_as(folder: str | Path, expected: str) -> str:
    """The folder's fingerprint in the scheme of ``expected`` (a checkpoint's): full, or the older sampled one."""
    return fingerprint(folder) if expected.startswith(FULL) else sampled_fingerprint(folder)


def cache_file() -> Path:
    """Where file hashes are cached across processes (see the module docstring)."""
    root = (
        os.environ.get("M3DIFF_CACHE_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "m3diff"
    )
    return Path(root) / "file_hashes.json"


def file_sha256(path: Path) -> str:
    """SHA-256 of the file's bytes, cached by (absolute path, size, mtime, ctime) in memory and on disk."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if key in _MEMORY:
        return _MEMORY[key]
    disk = _read_cache()
    entry = disk.get(key[0])
    if entry and [entry.get("size"), entry.get("mtime_ns"), entry.get("ctime_ns")] == list(key[1:]):
        _MEMORY[key] = entry["sha256"]
        return entry["sha256"]
    with path.open("rb") as f:
        value = hashlib.file_digest(f, "sha256").hexdigest()
    _MEMORY[key] = value
    disk[key[0]] = {"size": key[1], "mtime_ns": key[2], "ctime_ns": key[3], "sha256": value}
    _write_cache(disk)
    return value


def _read_cache() -> dict[str, Any]:
    try:
        return json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(entries: dict[str, Any]) -> None:
    """Best effort (a read-only home only costs a re-hash next time); atomic, so a reader never sees half a file."""
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        entries = {
            name: entry for name, entry in entries.items() if os.path.exists(name)
        }  # files gone: dropped
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(entries))
        os.replace(tmp, path)
    except OSError:
        pass


def sampled_fingerprint(folder: str | Path) -> str:
    """The scheme of older checkpoints (``sha256:<hex>``): small files in full; per weights file its name, size,
    safetensors header and the first and last 64 bytes of every tensor."""
    digest = hashlib.sha256()
    for path, rel, size in _model_files(Path(folder)):
        digest.update(f"{rel}\0{size}\0".encode())
        if path.suffix in _WEIGHT_SUFFIXES:
            _hash_weights(path, size, digest)
        elif size <= _SMALL_FILE:
            digest.update(path.read_bytes())
    return SAMPLED + digest.hexdigest()


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
        found = fingerprint_as(folder, entry["fingerprint"])
        if found != entry["fingerprint"]:
            return (
                f"its base model {source} has changed: fingerprint {found}, but the checkpoint was trained on "
                f"{entry['fingerprint']} (another fine-tune, tokenizer or an incomplete download?). Use the folder "
                "it was trained on"
            )
    return None
