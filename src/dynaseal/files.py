"""Replacing a file whole: the one way dynaseal rewrites a file it keeps (a keyset file, the
config file ``keys retire`` marks).

A reader, another process or a crash must see the old file or the new one, never a torn one:
the new content goes to a temporary file beside the target (same directory, so the same file
system), is given its mode (and owner) and synced, then renamed over the target, and the
directory is synced so the rename itself survives a crash. The content may be secret (a
keyset holds key material): on a failure no frame here keeps it in its locals, where an error
reporter recording them would find it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["fsync_dir", "replace_atomically", "write_beside"]


def write_beside(path: Path, data: bytes, mode: int,
                 owner: tuple[int, int] | None = None) -> str:
    """Write ``data`` to a new temporary file beside ``path`` with ``mode`` (and ``owner``,
    when the process may give it), synced; return its name."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except BaseException:
        data = b""  # the content must not stay in the locals of a raising frame
        raise
    try:
        os.fchmod(fd, mode)  # before the content is written: never readable by others
        if owner is not None:
            # giving a file away needs privileges; a process without them can only be
            # rewriting its own file, which is the owner already
            with contextlib.suppress(PermissionError):
                os.fchown(fd, *owner)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        data = b""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def replace_atomically(path: Path, data: bytes, mode: int,
                       owner: tuple[int, int] | None = None) -> None:
    """Replace ``path`` with a file holding ``data``, of ``mode`` (and ``owner``), in one
    rename."""
    try:
        tmp = write_beside(path, data, mode, owner)
    finally:
        data = b""  # no content in this frame's locals if anything below raises
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new entry in ``directory`` durable."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
