"""Crash-safe file writing for image layouts and archives.

A file is written under a temporary name in its final directory, synced, and
renamed into place, so its final path never has partial content. The
directory is synced after renames that later writes depend on.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "FILE_MODE",
    "TEMP_PREFIX",
    "locked_directory",
    "publish",
    "sync_directory",
    "sync_file",
    "temporary_file",
    "write_file_atomically",
]

TEMP_PREFIX = ".ipcs-fs-tmp-"
"""Name prefix of temporary files; readers of a layout skip such names."""

FILE_MODE = 0o644
"""Mode of published files: mkstemp creates them readable by their owner only."""


@contextlib.contextmanager
def temporary_file(directory: Path) -> Iterator[tuple[BinaryIO, Path]]:
    """Yield a new file in ``directory`` and its path.

    The file is removed on exit unless the caller renamed it away.
    """
    fd, name = tempfile.mkstemp(dir=directory, prefix=TEMP_PREFIX)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as file:
            yield file, path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def publish(temp_path: Path, target: Path) -> None:
    """Give ``temp_path`` the published mode and rename it to ``target``."""
    os.chmod(temp_path, FILE_MODE)
    os.rename(temp_path, target)


def write_file_atomically(target: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace ``target`` with ``data`` so that readers see old or new, never part.

    With ``durable`` the file and its directory are synced before returning.
    """
    with temporary_file(target.parent) as (file, temp_path):
        file.write(data)
        if durable:
            sync_file(file)
        publish(temp_path, target)
    if durable:
        sync_directory(target.parent)


def sync_file(file: BinaryIO) -> None:
    """Flush ``file`` and sync its content to disk."""
    file.flush()
    os.fsync(file.fileno())


def sync_directory(path: Path) -> None:
    """Sync the entries of directory ``path`` to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked_directory(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on directory ``path`` for the block."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
