"""libarchive's reading of a tar, as the independent oracle for TarReader.

libarchive-c exposes names only as text and has no xattr or sparse-map API,
so this module calls the libarchive functions it loaded through ctypes.
"""

from __future__ import annotations

import ctypes
import hashlib
from dataclasses import dataclass

import libarchive  # type: ignore[import-untyped]
from libarchive import ffi  # type: ignore[import-untyped]

from ipcs_fs.tar import EntryKind, TarEntry

__all__ = ["OracleEntry", "expected_from_reader", "read_with_libarchive"]

_lib = ffi.libarchive
for _name in ("pathname", "symlink", "hardlink", "uname", "gname"):
    _function = getattr(_lib, "archive_entry_" + _name)
    _function.argtypes = [ctypes.c_void_p]
    _function.restype = ctypes.c_char_p
_lib.archive_entry_xattr_reset.argtypes = [ctypes.c_void_p]
_lib.archive_entry_xattr_reset.restype = ctypes.c_int
_lib.archive_entry_xattr_next.argtypes = [
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_char_p),
    ctypes.POINTER(ctypes.c_void_p),
    ctypes.POINTER(ctypes.c_size_t),
]
_lib.archive_entry_sparse_reset.argtypes = [ctypes.c_void_p]
_lib.archive_entry_sparse_reset.restype = ctypes.c_int
_lib.archive_entry_sparse_next.argtypes = [
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_int64),
    ctypes.POINTER(ctypes.c_int64),
]

_KINDS = {
    0o100000: EntryKind.FILE,
    0o040000: EntryKind.DIR,
    0o120000: EntryKind.SYMLINK,
    0o020000: EntryKind.CHAR,
    0o060000: EntryKind.BLOCK,
    0o010000: EntryKind.FIFO,
}


@dataclass
class OracleEntry:
    """The fields of one entry that both readers decode, in one shape."""

    name: bytes
    kind: EntryKind
    linkname: bytes
    size: int
    mode: int
    uid: int
    gid: int
    uname: bytes
    gname: bytes
    mtime_ns: int
    devmajor: int
    devminor: int
    xattrs: dict[bytes, bytes]
    sparse: list[tuple[int, int]]
    content_sha256: str | None
    """sha256 of the file's content with holes filled, for small files."""


def read_with_libarchive(path: str, *, hash_limit: int = 64 << 20) -> list[OracleEntry]:
    """Read every entry of the tar at ``path`` with libarchive."""
    entries = []
    with libarchive.file_reader(path) as archive:
        for entry in archive:
            oracle = _decode(entry._entry_p)
            if oracle.kind is EntryKind.FILE and oracle.size <= hash_limit:
                digest = hashlib.sha256()
                for block in entry.get_blocks():
                    digest.update(block)
                oracle.content_sha256 = digest.hexdigest()
            entries.append(oracle)
    return entries


def _decode(pointer: int) -> OracleEntry:
    hardlink = _lib.archive_entry_hardlink(pointer)
    symlink = _lib.archive_entry_symlink(pointer)
    filetype = ffi.entry_filetype(pointer)
    kind = EntryKind.HARDLINK if hardlink is not None else _KINDS[filetype]
    device = kind in (EntryKind.CHAR, EntryKind.BLOCK)
    return OracleEntry(
        name=_lib.archive_entry_pathname(pointer),
        kind=kind,
        linkname=hardlink or symlink or b"",
        size=ffi.entry_size(pointer),
        mode=ffi.entry_mode(pointer) & 0o7777,
        uid=ffi.entry_uid(pointer),
        gid=ffi.entry_gid(pointer),
        uname=_lib.archive_entry_uname(pointer) or b"",
        gname=_lib.archive_entry_gname(pointer) or b"",
        mtime_ns=_mtime_ns(pointer),
        devmajor=ffi.entry_rdevmajor(pointer) if device else 0,
        devminor=ffi.entry_rdevminor(pointer) if device else 0,
        xattrs=_xattrs(pointer),
        sparse=_sparse(pointer),
        content_sha256=None,
    )


def _mtime_ns(pointer: int) -> int:
    seconds = ffi.entry_mtime(pointer)
    nanoseconds = ffi.entry_mtime_nsec(pointer)
    # libarchive 3.6 reads a negative PAX time such as -1.25 as seconds -1 and
    # nanoseconds +250000000: the fraction keeps the sign of the seconds. It
    # cannot tell -0.25 from 0.25, so tests keep such times out of its view.
    if seconds < 0:
        return seconds * 1_000_000_000 - nanoseconds
    return seconds * 1_000_000_000 + nanoseconds


def _xattrs(pointer: int) -> dict[bytes, bytes]:
    xattrs = {}
    _lib.archive_entry_xattr_reset(pointer)
    name = ctypes.c_char_p()
    value = ctypes.c_void_p()
    size = ctypes.c_size_t()
    while (
        _lib.archive_entry_xattr_next(
            pointer, ctypes.byref(name), ctypes.byref(value), ctypes.byref(size)
        )
        == 0
    ):
        assert name.value is not None
        xattrs[name.value] = ctypes.string_at(value, size.value) if size.value else b""
    return xattrs


def _sparse(pointer: int) -> list[tuple[int, int]]:
    regions = []
    _lib.archive_entry_sparse_reset(pointer)
    offset = ctypes.c_int64()
    length = ctypes.c_int64()
    while (
        _lib.archive_entry_sparse_next(
            pointer, ctypes.byref(offset), ctypes.byref(length)
        )
        == 0
    ):
        if length.value:
            regions.append((offset.value, length.value))
    return regions


def expected_from_reader(entry: TarEntry, content: bytes | None) -> OracleEntry:
    """Put a TarEntry (and its data, if read) in the oracle's shape."""
    digest = None
    if content is not None:
        digest = hashlib.sha256(_expand(entry, content)).hexdigest()
    return OracleEntry(
        name=entry.name,
        kind=entry.kind,
        linkname=entry.linkname,
        size=entry.size,
        mode=entry.mode,
        uid=entry.uid,
        gid=entry.gid,
        uname=entry.uname,
        gname=entry.gname,
        mtime_ns=entry.mtime_ns,
        devmajor=entry.devmajor,
        devminor=entry.devminor,
        xattrs=entry.xattrs,
        sparse=entry.sparse or [],
        content_sha256=digest,
    )


def _expand(entry: TarEntry, content: bytes) -> bytes:
    if entry.sparse is None:
        return content
    expanded = bytearray(entry.size)
    position = 0
    for offset, length in entry.sparse:
        expanded[offset : offset + length] = content[position : position + length]
        position += length
    return bytes(expanded)
