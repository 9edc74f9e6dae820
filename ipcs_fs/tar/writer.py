"""Write tar entries in the PAX format that containerd's diff writer produces.

Each entry is one ustar header block, preceded by a PAX extended header
(typeflag ``x``) when a value does not fit the ustar fields: a name or link
target longer than the fields or not ASCII, a number too large for its octal
field, a time with a fraction of a second or before 1970, and every xattr
(``SCHILY.xattr.NAME``). Go's ``archive/tar`` with ``FormatPAX``, which
containerd uses, follows the same rules, so tools that read containerd's
layers read these.

Terms: a *record* is one ``LENGTH KEY=VALUE\\n`` line of a PAX header, where
LENGTH counts the whole line in decimal, its own digits included. *Padding*
fills an entry's data to a multiple of 512 bytes. The *end of archive* is two
zero blocks.
"""

from __future__ import annotations

from collections.abc import Iterable

from .entry import EntryKind, TarEntry
from .header import BLOCK_SIZE

__all__ = ["END_OF_ARCHIVE", "encode_entry", "encode_pax_records", "padding"]

END_OF_ARCHIVE = bytes(2 * BLOCK_SIZE)

_TYPEFLAGS = {
    EntryKind.FILE: b"0",
    EntryKind.HARDLINK: b"1",
    EntryKind.SYMLINK: b"2",
    EntryKind.CHAR: b"3",
    EntryKind.BLOCK: b"4",
    EntryKind.DIR: b"5",
    EntryKind.FIFO: b"6",
}
_PAX_TYPEFLAG = b"x"
_MAGIC_VERSION = b"ustar\x0000"
_NS_PER_SECOND = 1_000_000_000
_NAME_SIZE = 100
_PREFIX_SIZE = 155
_OWNER_NAME_SIZE = 32
# Octal digits that fit each numeric field, leaving room for the NUL.
_MODE_DIGITS = 7
_ID_DIGITS = 7
_SIZE_DIGITS = 11
_TIME_DIGITS = 11
_DEVICE_DIGITS = 7


def padding(size: int) -> bytes:
    """Return the zero bytes that follow ``size`` bytes of entry data."""
    return bytes(-size % BLOCK_SIZE)


def encode_entry(entry: TarEntry) -> bytes:
    """Return the header blocks of ``entry``: a PAX header if needed, then ustar.

    Uses the name, kind, mode, uid, gid, uname, gname, mtime_ns, size (files
    only), linkname, device numbers and xattrs of ``entry``; the data, when
    any, follows with :func:`padding`. Raises ValueError for an empty name.
    """
    if not entry.name:
        raise ValueError("failed to encode tar entry: the name is empty")
    records: dict[bytes, bytes] = {}
    header = _ustar_header(entry, records)
    if not records:
        return header
    return _pax_header(entry.name, records) + header


def encode_pax_records(records: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Return the body of a PAX extended header holding ``records`` in order."""
    return b"".join(_record(key, value) for key, value in records)


def _record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    # Adding the length's own digits may add a digit to the length.
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode() + body


def _pax_header(name: bytes, records: dict[bytes, bytes]) -> bytes:
    body = encode_pax_records(records.items())
    base = name.rstrip(b"/").rsplit(b"/", 1)[-1] or b"root"
    pax_name = (b"PaxHeaders.0/" + base)[:_NAME_SIZE]
    fields = _Fields(pax_name, _PAX_TYPEFLAG)
    fields.mode, fields.size = 0o644, len(body)
    return fields.encode() + body + padding(len(body))


def _ustar_header(entry: TarEntry, records: dict[bytes, bytes]) -> bytes:
    typeflag = _TYPEFLAGS[entry.kind]
    name, prefix = _split_name(entry.name, records)
    fields = _Fields(name, typeflag)
    fields.prefix = prefix
    fields.mode = entry.mode & 0o7777
    fields.uid = _number(entry.uid, _ID_DIGITS, b"uid", records)
    fields.gid = _number(entry.gid, _ID_DIGITS, b"gid", records)
    size = entry.size if entry.kind is EntryKind.FILE else 0
    fields.size = _number(size, _SIZE_DIGITS, b"size", records)
    fields.mtime = _mtime(entry.mtime_ns, records)
    fields.linkname = _text(entry.linkname, _NAME_SIZE, b"linkpath", records)
    fields.uname = _text(entry.uname, _OWNER_NAME_SIZE, b"uname", records)
    fields.gname = _text(entry.gname, _OWNER_NAME_SIZE, b"gname", records)
    if entry.kind in (EntryKind.CHAR, EntryKind.BLOCK):
        fields.devmajor = _number(entry.devmajor, _DEVICE_DIGITS, b"", records)
        fields.devminor = _number(entry.devminor, _DEVICE_DIGITS, b"", records)
    for key, value in entry.xattrs.items():
        records[b"SCHILY.xattr." + key] = value
    return fields.encode()


def _split_name(name: bytes, records: dict[bytes, bytes]) -> tuple[bytes, bytes]:
    """Fit ``name`` into the name and prefix fields, or record it as ``path``."""
    if not name.isascii():
        records[b"path"] = name
        return name[:_NAME_SIZE], b""
    if len(name) <= _NAME_SIZE:
        return name, b""
    cut = name.find(b"/", len(name) - _NAME_SIZE - 1)
    if 0 < cut <= _PREFIX_SIZE and len(name) - cut - 1 <= _NAME_SIZE:
        return name[cut + 1 :], name[:cut]
    records[b"path"] = name
    return name[:_NAME_SIZE], b""


def _text(value: bytes, size: int, key: bytes, records: dict[bytes, bytes]) -> bytes:
    if len(value) <= size and value.isascii():
        return value
    records[key] = value
    return value[:size]


def _number(value: int, digits: int, key: bytes, records: dict[bytes, bytes]) -> int:
    if 0 <= value < 8**digits:
        return value
    if not key:
        raise ValueError(f"failed to encode tar entry: device number {value} too big")
    records[key] = str(value).encode()
    return 0


def _mtime(mtime_ns: int, records: dict[bytes, bytes]) -> int:
    seconds, nanos = divmod(mtime_ns, _NS_PER_SECOND)
    if nanos or not 0 <= seconds < 8**_TIME_DIGITS:
        records[b"mtime"] = _pax_time(mtime_ns)
        return max(0, min(seconds, 8**_TIME_DIGITS - 1))
    return seconds


def _pax_time(mtime_ns: int) -> bytes:
    sign = "-" if mtime_ns < 0 else ""
    seconds, nanos = divmod(abs(mtime_ns), _NS_PER_SECOND)
    if not nanos:
        return f"{sign}{seconds}".encode()
    return f"{sign}{seconds}.{nanos:09d}".rstrip("0").encode()


class _Fields:
    """The fields of one ustar header block, with their defaults."""

    def __init__(self, name: bytes, typeflag: bytes) -> None:
        self.name = name
        self.typeflag = typeflag
        self.prefix = b""
        self.mode = self.uid = self.gid = self.size = self.mtime = 0
        self.linkname = self.uname = self.gname = b""
        self.devmajor = self.devminor = 0

    def encode(self) -> bytes:
        block = bytearray(BLOCK_SIZE)
        _put(block, 0, self.name, _NAME_SIZE)
        _put(block, 100, _octal(self.mode, _MODE_DIGITS), 8)
        _put(block, 108, _octal(self.uid, _ID_DIGITS), 8)
        _put(block, 116, _octal(self.gid, _ID_DIGITS), 8)
        _put(block, 124, _octal(self.size, _SIZE_DIGITS), 12)
        _put(block, 136, _octal(self.mtime, _TIME_DIGITS), 12)
        block[148:156] = b" " * 8
        block[156:157] = self.typeflag
        _put(block, 157, self.linkname, _NAME_SIZE)
        block[257:265] = _MAGIC_VERSION
        _put(block, 265, self.uname, _OWNER_NAME_SIZE)
        _put(block, 297, self.gname, _OWNER_NAME_SIZE)
        _put(block, 329, _octal(self.devmajor, _DEVICE_DIGITS), 8)
        _put(block, 337, _octal(self.devminor, _DEVICE_DIGITS), 8)
        _put(block, 345, self.prefix, _PREFIX_SIZE)
        block[148:156] = b"%06o\0 " % sum(block)
        return bytes(block)


def _octal(value: int, digits: int) -> bytes:
    return b"%0*o" % (digits, value)


def _put(block: bytearray, offset: int, value: bytes, size: int) -> None:
    block[offset : offset + min(len(value), size)] = value[:size]
