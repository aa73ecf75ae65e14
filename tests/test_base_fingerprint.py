"""The base fingerprint of adapter-only checkpoints covers every byte of the base folder, and stays fast for
repeated loads through its file-hash cache (keyed by path, size, mtime and ctime)."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import pytest

from lightning_modules.model import base_model


@pytest.fixture
def folder(tmp_path, llava_twin, monkeypatch) -> Path:
    monkeypatch.setenv("M3DIFF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(base_model, "_MEMORY", {})
    return Path(shutil.copytree(llava_twin, tmp_path / "base"))


def change_middle_of_a_tensor(path: Path) -> None:
    """One byte in the middle of the largest tensor, in place: same size, same header."""
    data = bytearray(path.read_bytes())
    (header_len,) = struct.unpack("<Q", data[:8])
    spans = [
        e["data_offsets"] for k, e in json.loads(data[8 : 8 + header_len]).items() if k != "__metadata__"
    ]
    begin, end = max(spans, key=lambda s: s[1] - s[0])
    data[8 + header_len + (begin + end) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_one_changed_value_in_the_middle_of_a_tensor_changes_the_fingerprint(folder):
    before, sampled = base_model.fingerprint(folder), base_model.sampled_fingerprint(folder)
    assert before.startswith("sha256-full:") and sampled.startswith("sha256:")
    weights = folder / "model.safetensors"
    stat = weights.stat()
    change_middle_of_a_tensor(weights)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with its modification time put back
    assert weights.stat().st_size == stat.st_size and weights.stat().st_mtime_ns == stat.st_mtime_ns
    assert base_model.fingerprint(folder) != before
    assert base_model.sampled_fingerprint(folder) == sampled  # the older scheme's blind spot
    assert (
        base_model.fingerprint_as(folder, sampled) == sampled
    )  # older checkpoints are still checked in theirs


def test_repeated_fingerprints_come_from_the_cache(folder, monkeypatch):
    first = base_model.fingerprint(folder)
    assert base_model.cache_file().is_file() and str(base_model.cache_file()).startswith(
        os.environ["M3DIFF_CACHE_DIR"]
    )
    monkeypatch.setattr(base_model, "_MEMORY", {})  # a new process: only the file cache is left

    def no_hashing(*args, **kwargs):
        raise AssertionError("hashed again although nothing changed")

    monkeypatch.setattr(base_model.hashlib, "file_digest", no_hashing)
    assert base_model.fingerprint(folder) == first
