"""The DataModules' errors, and the ``data.on_error`` policy for bad records of annotation files.

Two kinds of user error, each a one-line message the entry points print without a traceback:
:class:`ConfigError` (a config value cannot be used: unknown key, wrong type, out of range; raised when the
config is composed, before anything is built) and :class:`DataError` (data cannot be read). Every
:class:`DataError` names where it happened: its message is ``"<file>: <record>: <reason>"``.

Policy (``data.on_error``):

* *File-level* problems (annotation file missing or empty, not UTF-8, malformed JSON, wrong top-level type)
  always raise :class:`DataError`: nothing sensible can be loaded from such a file.
* *Record-level* problems (missing field, wrong field type, empty caption list, duplicate id, id without
  captions, a path escaping the dataset root, a missing or empty image file) go through :class:`Problems`:
  they raise under ``raise``; under ``skip`` the record is dropped and counted, and one warning per split gives
  the count and the first problems.
* *Image decode* problems (truncated/corrupt file, decompression bomb) show when a sample is loaded
  (:class:`~datamodules.record_dataset.RecordDataset` says what ``skip`` does with them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("m3diff.data")


class ConfigError(ValueError):
    """A config cannot be composed: unknown key, wrong type, value out of range, missing file. The message names
    the key (and the source: file, command line)."""


class DataError(ValueError):
    """Data cannot be read. ``str()`` is ``"<file>: <record>: <reason>"``; the parts are attributes too."""

    def __init__(self, reason: str, *, file: str | Path | None = None, record: str | None = None) -> None:
        self.file = None if file is None else str(file)
        self.record = record
        self.reason = reason
        where = ": ".join(part for part in (self.file, record) if part)
        super().__init__(f"{where}: {reason}" if where else reason)


class MissingFile(DataError):
    """A file that is not there (rather than unreadable): for a split's own annotation file, the split is absent."""


@dataclass(frozen=True)
class Problem:
    file: str
    record: str | None
    reason: str

    def __str__(self) -> str:
        return ": ".join(part for part in (self.file, self.record, self.reason) if part)


class Problems:
    """Record-level problems under a policy: ``raise`` (at the first), ``skip`` (drop and count) or
    ``collect`` (``data-info``: keep going, also past missing caption files, and list everything)."""

    def __init__(self, on_error: str) -> None:
        if on_error not in ("raise", "skip", "collect"):
            raise ValueError(f"on_error must be raise, skip or collect, got {on_error!r}")
        self.on_error = on_error
        self.items: list[Problem] = []
        self.notes: list[Problem] = []  # see note()

    def add(self, reason: str, *, file: str | Path, record: str | None = None) -> None:
        """Report a bad record: raises under ``raise``; the caller drops the record otherwise."""
        if self.on_error == "raise":
            raise DataError(reason, file=file, record=record)
        self.items.append(Problem(str(file), record, reason))

    def note(self, reason: str, *, file: str | Path, record: str | None = None) -> None:
        """A record the loader reads in a corrected form, never stopping a run (a row repeated verbatim, read
        once): listed by ``data-info`` (``collect``); otherwise kept in :attr:`notes`."""
        problem = Problem(str(file), record, reason)
        (self.items if self.on_error == "collect" else self.notes).append(problem)

    def missing_file(self, reason: str, *, file: str | Path) -> None:
        """A file every record needs is absent: fatal, except when only inspecting (counts still matter)."""
        if self.on_error != "collect":
            raise DataError(reason, file=file)
        self.items.append(Problem(str(file), None, reason))

    def __len__(self) -> int:
        return len(self.items)

    def warn(self, what: str, *, kept: int) -> None:
        """Under ``skip``: one warning with the count and the first problems (skipping is never silent)."""
        if self.items and self.on_error == "skip":
            first = "\n  ".join(str(p) for p in self.items[:5])
            more = f"\n  ... and {len(self.items) - 5} more" if len(self.items) > 5 else ""
            log.warning(
                "%s: data.on_error=skip dropped %d record(s), kept %d:\n  %s%s",
                what,
                len(self.items),
                kept,
                first,
                more,
            )
