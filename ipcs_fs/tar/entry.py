"""The decoded form of one tar entry, shared by the reader, the converter and the
applier.

A tar stream is cut into entries so that this always holds::

    tar bytes == b"".join(e.raw_header + DATA(e) for e in entries) + trailer

where ``raw_header`` is every byte between the previous entry's data and this
entry's data (the previous entry's padding, GNU long-name and PAX extension
records with their own headers, the entry's header blocks, and for PAX 1.0
sparse files the sparse map at the start of the data area), ``DATA(e)`` is the
``data_size`` bytes the archive stores for the entry, and ``trailer`` is what
follows the last entry's data (its padding, the end-of-archive blocks and any
bytes after them). That split is what lets a layer be rebuilt byte for byte.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["EntryKind", "TarEntry"]


class EntryKind(enum.Enum):
    """The type of filesystem object an entry describes."""

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"


@dataclass(slots=True)
class TarEntry:
    """One tar entry, with every attribute that its headers carry.

    Names, link targets, user and group names and xattrs are bytes, exactly as
    stored: tar does not promise any encoding.
    """

    name: bytes
    """Path as recorded (after GNU long names and PAX ``path``), not normalised."""
    kind: EntryKind
    typeflag: bytes
    """The raw typeflag byte of the entry's main header."""
    mode: int
    """Permission bits, setuid, setgid and sticky: the low 12 bits of the mode."""
    uid: int
    gid: int
    uname: bytes
    gname: bytes
    mtime_ns: int
    """Modification time in nanoseconds since the epoch; may be negative."""
    size: int
    """Size of the file's content; for sparse files, the full size with holes."""
    data_size: int
    """Bytes of data the archive stores after the headers (0 for most non-files)."""
    linkname: bytes = b""
    """Symlink target, or hardlink target path."""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[bytes, bytes] = field(default_factory=dict)
    """Extended attributes in archive order, names without any PAX prefix."""
    sparse: list[tuple[int, int]] | None = None
    """Data regions of a sparse file as (offset, length); the archive data is
    their concatenation. ``None`` for a file that is not sparse."""
    atime_ns: int | None = None
    ctime_ns: int | None = None
    pax: dict[bytes, bytes] = field(default_factory=dict)
    """Every PAX record in force for this entry (global ones included)."""
    raw_header: bytes = b""
    offset: int = 0
    """Offset in the tar stream of the first byte of ``raw_header``."""
