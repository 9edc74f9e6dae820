"""Turn a sequence of changes into the tar stream of a layer, read lazily.

:class:`ChangeTar` is a readable stream (``read``, ``readinto``) that writes
each change's tar entry only when the reader reaches it, so a Diff pipes the
upper tree's files through the layer converter without holding them.

What each change becomes, following containerd's diff writer:

- an entry of the upper tree: its header (PAX where needed), then its data.
  The header records type, mode, uid, gid, mtime in nanoseconds, link
  target, device numbers and every xattr except overlayfs's own. containerd
  truncates times to seconds and keeps only ``security.capability``, so this
  records more. No user or group names, as containerd writes none. A second
  name of an inode already written becomes a hard link to the first.
- a deletion: an empty regular file ``.wh.NAME`` in the same directory;
- an opaque directory: an empty regular file ``.wh..wh..opq`` inside it.

Whiteouts and opaque markers get mode 0, owner 0:0 and the time
``source_date_epoch`` (the epoch when none is given, so that the same changes
give the same layer). With ``source_date_epoch``, later mtimes are lowered to
it, as containerd does.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Generator, Iterable, Iterator

from ..errors import FailedPreconditionError
from ..tar.entry import EntryKind, TarEntry
from ..tar.writer import END_OF_ARCHIVE, encode_entry, padding
from .changes import ROOT_PATH, Change, ChangeKind, list_xattrs

__all__ = ["OPAQUE_NAME", "WHITEOUT_PREFIX", "ChangeTar"]

WHITEOUT_PREFIX = b".wh."
OPAQUE_NAME = b".wh..wh..opq"
_READ_SIZE = 1 << 20
_KINDS = {
    stat.S_IFREG: EntryKind.FILE,
    stat.S_IFDIR: EntryKind.DIR,
    stat.S_IFLNK: EntryKind.SYMLINK,
    stat.S_IFCHR: EntryKind.CHAR,
    stat.S_IFBLK: EntryKind.BLOCK,
    stat.S_IFIFO: EntryKind.FIFO,
}


class ChangeTar:
    """A readable stream of the tar that records ``changes``.

    ``source_date_epoch_ns``, when given, bounds every recorded mtime and is
    the time of whiteouts. Files are read while the stream is read; a file
    whose size changes meanwhile raises FailedPreconditionError.
    """

    def __init__(
        self, changes: Iterable[Change], *, source_date_epoch_ns: int | None = None
    ) -> None:
        self._pieces = _tar_pieces(changes, source_date_epoch_ns)
        self._current = memoryview(b"")

    def read(self, size: int = -1) -> bytes:
        """Return up to ``size`` bytes (all that is left when negative)."""
        if size < 0:
            parts = [bytes(self._current), *self._pieces]
            self._current = memoryview(b"")
            return b"".join(parts)
        if not self._refill():
            return b""
        data = bytes(self._current[:size])
        self._current = self._current[len(data) :]
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        """Fill ``buffer`` with up to its length of bytes; 0 at the end."""
        if not self._refill():
            return 0
        count = min(len(buffer), len(self._current))
        memoryview(buffer)[:count] = self._current[:count]
        self._current = self._current[count:]
        return count

    def close(self) -> None:
        """Stop reading; the open file, if any, is closed."""
        self._pieces.close()

    def _refill(self) -> bool:
        while not self._current:
            piece = next(self._pieces, None)
            if piece is None:
                return False
            self._current = memoryview(piece)
        return True


def _tar_pieces(
    changes: Iterable[Change], epoch_ns: int | None
) -> Generator[bytes, None, None]:
    links: dict[tuple[int, int], bytes] = {}
    for change in changes:
        if change.kind is ChangeKind.DELETE:
            yield encode_entry(_marker(_whiteout_name(change.path), epoch_ns))
        elif change.kind is ChangeKind.OPAQUE:
            yield encode_entry(_marker(change.path + b"/" + OPAQUE_NAME, epoch_ns))
        else:
            yield from _entry_pieces(change, links, epoch_ns)
    yield END_OF_ARCHIVE


def _whiteout_name(path: bytes) -> bytes:
    parent, _, name = path.rpartition(b"/")
    return (parent + b"/" if parent else b"") + WHITEOUT_PREFIX + name


def _marker(name: bytes, epoch_ns: int | None) -> TarEntry:
    return _entry(name, EntryKind.FILE, mode=0, mtime_ns=epoch_ns or 0)


def _entry(name: bytes, kind: EntryKind, **fields: object) -> TarEntry:
    values: dict = {
        "typeflag": b"",
        "mode": 0,
        "uid": 0,
        "gid": 0,
        "uname": b"",
        "gname": b"",
        "mtime_ns": 0,
        "size": 0,
        "data_size": 0,
    }
    values.update(fields)
    return TarEntry(name=name, kind=kind, **values)


def _entry_pieces(
    change: Change, links: dict[tuple[int, int], bytes], epoch_ns: int | None
) -> Iterator[bytes]:
    st = os.lstat(change.source)
    entry = _describe(change, st, epoch_ns)
    inode = (st.st_dev, st.st_ino)
    if entry.kind is not EntryKind.DIR and st.st_nlink > 1:
        if inode in links:
            yield encode_entry(_hardlink(entry, links[inode]))
            return
        links[inode] = entry.name
    yield encode_entry(entry)
    if entry.kind is EntryKind.FILE and entry.size:
        yield from _file_data(change.source, entry.size)
        yield padding(entry.size)


def _describe(change: Change, st: os.stat_result, epoch_ns: int | None) -> TarEntry:
    kind = _KINDS.get(stat.S_IFMT(st.st_mode))
    if kind is None:
        raise FailedPreconditionError(
            f"failed to record {os.fsdecode(change.source)}: unsupported file type"
        )
    mtime_ns = st.st_mtime_ns if epoch_ns is None else min(st.st_mtime_ns, epoch_ns)
    entry = _entry(
        _tar_name(change.path, kind),
        kind,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        mtime_ns=mtime_ns,
        xattrs=list_xattrs(change.source),
    )
    if kind is EntryKind.FILE:
        entry.size = entry.data_size = st.st_size
    elif kind is EntryKind.SYMLINK:
        entry.linkname = os.readlink(change.source)
    elif kind in (EntryKind.CHAR, EntryKind.BLOCK):
        entry.devmajor, entry.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    return entry


def _tar_name(path: bytes, kind: EntryKind) -> bytes:
    if path == ROOT_PATH:
        return b"./"
    return path + b"/" if kind is EntryKind.DIR else path


def _hardlink(entry: TarEntry, target: bytes) -> TarEntry:
    return _entry(
        entry.name,
        EntryKind.HARDLINK,
        mode=entry.mode,
        uid=entry.uid,
        gid=entry.gid,
        mtime_ns=entry.mtime_ns,
        linkname=target,
        xattrs=entry.xattrs,
    )


def _file_data(source: bytes, size: int) -> Iterator[bytes]:
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with open(fd, "rb") as stream:
        remaining = size
        while remaining:
            data = stream.read(min(remaining, _READ_SIZE))
            if not data:
                break
            remaining -= len(data)
            yield data
        extra = stream.read(1)
    if remaining or extra:
        raise FailedPreconditionError(
            f"failed to record {os.fsdecode(source)}: its size changed from"
            f" {size} bytes while it was read"
        )
