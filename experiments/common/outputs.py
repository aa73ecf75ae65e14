"""Output folders written whole: ``make export``, ``make caption`` and ``make synth`` write OUT through this.

:class:`OutputFolder` is checked before anything slow happens (a model loaded, pairs rendered): an OUT that is a
file, that cannot be created or written, or that already holds files is one line (exit status 2). A non-empty
OUT is replaced only when the user asks (``FORCE=1``, ``--force``), and only when it holds an earlier output of
the same command (its marker file, e.g. ``m3diff.json``): never a home folder or a folder of other files. The
files are written into a temporary sibling folder (``.<name>.tmp-<pid>``, same filesystem) that is renamed to OUT
at the end, so OUT is never half one output and half another, and a failed or killed command leaves OUT as it
was (a killed one's temporary folder is removed by the next command writing beside it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import TracebackType

FORCE_HINT = "add FORCE=1 (make) or --force to replace it"


PARTIAL_MARK = ".tmp-"  # .<name>.tmp-<pid>: a checkpoint being written by process <pid>


class OutputError(ValueError):
    """OUT cannot be written (a file, read-only, not empty without FORCE): one line, exit status 2."""


def truthy(text: str | bool | None) -> bool:
    """A make variable's value as a switch: ``1``, ``true``, ``yes``, ``on`` (any case)."""
    if isinstance(text, bool):
        return text
    return str(text or "").strip().lower() in ("1", "true", "yes", "on")


def check_writable_folder(folder: str | Path, what: str = "OUT") -> None:
    """Raise :class:`OutputError` unless ``folder`` is, or can be created as, a folder this process can write
    (nothing is created: the nearest existing folder on its path is checked)."""
    folder = Path(os.path.abspath(os.path.expanduser(folder)))
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{what}={folder} is an existing file, not a folder: choose a folder")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{what}={folder}: {existing} is a file, so the folder cannot be created")
    if not os.access(existing, os.W_OK | os.X_OK):
        why = "read-only file system" if _read_only(existing) else "no write permission"
        raise OutputError(f"{what}={folder}: cannot write in {existing} ({why})")


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


class OutputFolder:
    """``with OutputFolder(out, force=.., marker="m3diff.json") as folder:`` write into ``folder.path``; on a
    clean exit it becomes ``out`` (an earlier output there is replaced), on an exception it is removed.

    The checks run on entering the block, before the caller loads a model.
    """

    def __init__(self, out: str | Path, *, force: bool, marker: str, what: str = "OUT") -> None:
        self.out = Path(os.path.abspath(os.path.expanduser(out)))
        self.force = force
        self.marker = marker
        self.what = what
        self.path: Path = self.out  # the staging folder once entered

    # ------------------------------------------------------------------------------------------------ checks
    def check(self) -> bool:
        """Raise :class:`OutputError` unless OUT can be written; returns whether OUT will replace an output."""
        out = self.out
        if out.is_symlink() and out.resolve().is_dir():
            out = self.out = out.resolve()  # write where the link points; the link stays
        check_writable_folder(out.parent if out.is_dir() else out, self.what)
        if out.exists() and not out.is_dir():
            raise OutputError(f"{self.what}={out} is an existing file, not a folder: choose a folder")
        if not out.is_dir() or not any(out.iterdir()):
            return out.is_dir()
        if not self.force:
            raise OutputError(
                f"{self.what}={out} is not empty: choose a new or empty folder, or {FORCE_HINT}"
            )
        if not (out / self.marker).is_file():
            raise OutputError(
                f"{self.what}={out} holds files that are not an earlier output of this command (no {self.marker}): "
                "FORCE=1 replaces only such a folder; choose a new or empty folder"
            )
        if Path.cwd().resolve().is_relative_to(out.resolve()):
            raise OutputError(f"{self.what}={out} holds the current folder: it cannot be replaced")
        return True

    def __enter__(self) -> OutputFolder:
        self.check()
        parent = self.out.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            _remove_stale(parent, self.out.name)
            self.path = parent / f".{self.out.name}{PARTIAL_MARK}{os.getpid()}"
            shutil.rmtree(self.path, ignore_errors=True)
            self.path.mkdir()
        except OSError as err:
            raise OutputError(
                f"{self.what}={self.out}: cannot write there ({err.strerror or err}: {err.filename or parent})"
            ) from None
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        try:
            self.commit()
        except OSError as error:  # e.g. OUT is a mount point (cannot be renamed): OUT is left as it was
            shutil.rmtree(self.path, ignore_errors=True)
            raise OutputError(
                f"{self.what}={self.out}: cannot replace it ({error.strerror or error}); nothing was changed"
            ) from None

    def commit(self) -> Path:
        """The staged folder becomes OUT; an earlier OUT (empty, or replaced with FORCE) is moved aside first
        and removed after: at every moment OUT is the old output, absent, or the new one, never a mix."""
        old = None
        if self.out.exists():
            old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            os.rename(self.out, old)
        try:
            os.rename(self.path, self.out)
        except OSError:
            if old is not None:
                os.rename(old, self.out)  # put the earlier output back
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self.path = self.out
        return self.out


def _remove_stale(parent: Path, name: str) -> None:
    """Temporary folders of earlier commands writing ``name`` that were killed (their process is gone)."""
    for entry in parent.glob(f".{name}.*-*"):
        pid = entry.name.rsplit("-", 1)[-1]
        if entry.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
