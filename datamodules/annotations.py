"""Reading annotation files into :class:`PairRecord` s: the record type, finding a file among a release's
layouts, strict JSON / JSON Lines reading, typed field access and the path-escape check.

Each benchmark's ``index`` uses these; every failure names the file and record (:mod:`datamodules.errors`).
No image is opened here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from datamodules.errors import DataError, MissingFile, Problems


class PairRecord(NamedTuple):
    """One indexed pair: what the annotation files say, before any image is opened.

    (A NamedTuple with ``str`` paths: indexing CLEVR-Change builds 80k of these, and dataclasses/``Path`` objects
    made that take seconds.)
    """

    pair_id: str
    before: str  # image file paths
    after: str
    captions: tuple[str, ...]  # () only when inspecting without the caption file
    categories: tuple[str, ...] = ()
    source: str = ""  # where it came from, for error messages ("splits.json test id 123")
    swapped: tuple[str, str] | None = None  # train-time swap alternative (before, after): CLEVR-Change
    swap_key: str = ""  # pairs with the same key swap together in an epoch (CLEVR-Change: the scene)
    instructions: tuple[str, ...] = ()  # one per caption, same order (LLaVA-style files); () = none
    subset: str = ""  # the part of the benchmark it belongs to, scored separately (OmniDiff: real / render)

    @property
    def files(self) -> tuple[str, ...]:
        return (self.before, self.after, *(self.swapped or ()))


def decode_utf8(raw: bytes, *, file: str | Path, record: str | None = None) -> str:
    """Strict UTF-8 (a BOM is allowed); the error gives the line and column of the first bad byte."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        at = f"column {column}" if record else f"line {line}, column {column}"
        raise DataError(
            f"not UTF-8 text: byte 0x{raw[err.start]:02x} at {at} (re-save the file as UTF-8)",
            file=file,
            record=record,
        ) from None


def first_existing(
    root: Path,
    names: Sequence[str],
    *,
    what: str = "",
    hint: str = "",
    default: str | None = None,
    folder: bool = False,
) -> Path:
    """``root / name`` for the first of ``names`` that exists (a folder, with ``folder``), the layouts a release
    comes in. None found: ``root / default`` when given (its absence is the caller's to report), else a
    :class:`DataError` on ``root``: ``"<what> not found (looked for a, b; <hint>)"``."""
    for name in names:
        path = root / name
        if path.is_dir() if folder else path.exists():
            return path
    if default is not None:
        return root / default
    raise DataError(
        f"{what} not found (looked for {', '.join(names)}{'; ' + hint if hint else ''})", file=root
    )


def read_bytes(path: Path, *, what: str = "annotation file") -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MissingFile(f"{what} not found", file=path) from None
    except OSError as err:
        raise DataError(f"cannot read {what}: {err.strerror or err}", file=path) from None
    if not raw.strip():
        raise DataError(f"{what} is empty", file=path)
    return raw


def read_json(path: Path, *, what: str = "annotation file") -> Any:
    """Parse a JSON file; every failure is a :class:`DataError` naming the file (and line/column)."""
    text = decode_utf8(read_bytes(path, what=what), file=path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(
            f"malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}", file=path
        ) from None


def read_json_dict(path: Path, *, what: str = "annotation file") -> dict:
    data = read_json(path, what=what)
    if not isinstance(data, dict):
        raise DataError(f"expected a JSON object at the top level, got a {type(data).__name__}", file=path)
    return data


def read_records(path: Path, problems: Problems) -> list[tuple[str, Any]]:
    """A JSON list of records or a JSON Lines file (``.jsonl``) -> ``[(locator, record), ...]``.

    Locators are ``record [i]`` (0-based position in the JSON list) or ``line N`` (1-based JSONL line). A bad
    JSONL line (malformed, not UTF-8) is a record-level problem; a malformed JSON list is fatal.
    """
    if path.suffix.lower() == ".jsonl":
        out = []
        for number, line in enumerate(read_bytes(path).split(b"\n"), 1):
            if not line.strip():
                continue
            where = f"line {number}"
            try:
                out.append((where, json.loads(decode_utf8(line, file=path, record=where))))
            except DataError as err:
                problems.add(err.reason, file=path, record=where)
            except json.JSONDecodeError as err:
                problems.add(f"malformed JSON at column {err.colno}: {err.msg}", file=path, record=where)
        return out
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(f"expected a JSON list of records, got a {type(data).__name__}", file=path)
    return [(f"record [{i}]", item) for i, item in enumerate(data)]


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _type(value: Any) -> str:
    """JSON's name for the type of ``value`` (what the user sees in the file)."""
    names = {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string"}
    return names.get(type(value), {dict: "object", list: "list"}.get(type(value), type(value).__name__))


_MISSING = object()


def split_ids(path: Path, split: str, problems: Problems, *, noun: str = "id") -> list[tuple[int, str]]:
    """The integer ids a split file (``{"train": [int, ...], "val": ..., "test": ...}``) lists for ``split``,
    in order, each with where it stands (``"'test' item 3"``): CLEVR-Change's scene ids, CLEVR-DC's pair ids.

    A missing or non-list entry is fatal (:class:`DataError`); a bad or repeated id is a record-level problem.
    """
    splits = read_json_dict(path)
    if split not in splits:
        raise DataError(f"no '{split}' list of {noun}s (keys found: {sorted(splits)})", file=path)
    if not isinstance(splits[split], list):
        raise DataError(f"'{split}' must be a list of {noun}s, got {_type(splits[split])}", file=path)
    ids: list[tuple[int, str]] = []
    first_seen: dict[int, int] = {}
    for position, value in enumerate(splits[split]):
        where = f"'{split}' item {position}"
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problems.add(f"{noun} must be a non-negative integer, got {value!r}", file=path, record=where)
        elif value in first_seen:
            problems.add(
                f"duplicate {noun} {value} (first at item {first_seen[value]})", file=path, record=where
            )
        else:
            first_seen[value] = position
            ids.append((value, where))
    return ids


class Fields:
    """Typed access to one annotation record. The first problem is reported (file, record, field) and marks
    the record ``bad``; later getters return ``None`` quietly, so a record is counted once."""

    def __init__(self, record: Any, *, file: str | Path, where: str, problems: Problems) -> None:
        self.record = record
        self.file = file
        self.where = where
        self.problems = problems
        self.bad = False
        if not isinstance(record, dict):
            self.fail(f"expected a JSON object, got {_type(record)} {_short(record)}")

    def fail(self, reason: str) -> None:
        if not self.bad:
            self.bad = True
            self.problems.add(reason, file=self.file, record=self.where)

    def has(self, key: str) -> bool:
        return not self.bad and key in self.record

    def keys(self) -> list[str]:
        return sorted(self.record) if isinstance(self.record, dict) else []

    def _get(self, key: str, *, optional: bool) -> Any:
        if self.bad:
            return _MISSING
        if key not in self.record or (optional and self.record[key] is None):
            if not optional:
                self.fail(f"missing field '{key}' (fields found: {self.keys()})")
            return _MISSING
        return self.record[key]

    def str(self, key: str, *, optional: bool = False) -> str | None:
        """A non-blank string."""
        value = self._get(key, optional=optional)
        if value is _MISSING:
            return None
        if not isinstance(value, str):
            self.fail(f"field '{key}' must be a string, got {_type(value)} {_short(value)}")
            return None
        if not value.strip():
            self.fail(f"field '{key}' is empty")
            return None
        return value

    def str_list(self, key: str, *, optional: bool = False, captions: bool = False) -> list[str] | None:
        """A list of strings; with ``captions=True`` an empty list is a problem (blank strings are kept:
        released data has them, and they are part of the official ground truth)."""
        value = self._get(key, optional=optional)
        if value is _MISSING:
            return None
        if not isinstance(value, list):
            self.fail(f"field '{key}' must be a list of strings, got {_type(value)} {_short(value)}")
            return None
        if not value and captions:
            self.fail(f"field '{key}' is an empty caption list (each pair needs at least one reference)")
            return None
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.fail(f"field '{key}' item {i} must be a string, got {_type(item)} {_short(item)}")
                return None
        return list(value)


class PathGuard:
    """Joins annotation paths onto ``base`` and rejects any that leave it (absolute, ``../``, or a symlinked
    file or folder pointing elsewhere). ``base`` itself (the dataset root or its image folder, chosen by the
    user) may be a symlink: only what the annotation adds is checked. Folders are resolved once each."""

    def __init__(self, base: str | Path) -> None:
        self.base = os.path.realpath(base)
        self._folders: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        if not name or "\x00" in name:
            raise ValueError(f"invalid path {name!r}")
        if os.path.isabs(name):
            raise ValueError(f"path {name!r} is absolute; annotation paths must be relative to {self.base}")
        head, tail = os.path.split(os.path.join(self.base, name))
        if tail in ("", ".", ".."):
            raise ValueError(f"path {name!r} does not name a file")
        if head not in self._folders:
            self._folders[head] = os.path.realpath(head)
        path = os.path.join(self._folders[head], tail)
        if os.path.islink(path):
            path = os.path.realpath(path)
        if not path.startswith(self.base + os.sep):
            raise ValueError(f"path {name!r} escapes the dataset folder {self.base} (resolves to {path})")
        return path
