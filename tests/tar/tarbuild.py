"""Builders of tar blocks by hand, for inputs no archiver writes.

Every function returns raw bytes; a test concatenates them into a stream.
Header fields are given as values and encoded the way GNU tar does (zero-filled
octal ended by NUL), unless a test passes raw field bytes in ``raw``.
"""

from __future__ import annotations

__all__ = [
    "BLOCK",
    "end",
    "header",
    "long_name",
    "member",
    "octal",
    "pad",
    "pax",
    "pax_record",
]

BLOCK = 512

_OFFSETS = {
    "name": (0, 100),
    "mode": (100, 8),
    "uid": (108, 8),
    "gid": (116, 8),
    "size": (124, 12),
    "mtime": (136, 12),
    "checksum": (148, 8),
    "typeflag": (156, 1),
    "linkname": (157, 100),
    "magic": (257, 8),
    "uname": (265, 32),
    "gname": (297, 32),
    "devmajor": (329, 8),
    "devminor": (337, 8),
    "prefix": (345, 155),
}
USTAR = b"ustar\x0000"
GNU = b"ustar  \x00"


def octal(value: int, width: int) -> bytes:
    """Encode ``value`` as GNU tar does: zero-filled octal and a NUL."""
    return b"%0*o\x00" % (width - 1, value)


def pad(data: bytes) -> bytes:
    """Pad ``data`` with NULs to a whole number of blocks."""
    return data + bytes(-len(data) % BLOCK)


def header(
    name: bytes = b"file",
    *,
    typeflag: bytes = b"0",
    size: int = 0,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    mtime: int = 0,
    linkname: bytes = b"",
    magic: bytes = USTAR,
    uname: bytes = b"",
    gname: bytes = b"",
    devmajor: int = 0,
    devminor: int = 0,
    prefix: bytes = b"",
    raw: dict[str, bytes] | None = None,
    raw_at: dict[int, bytes] | None = None,
    checksum: int | None = None,
    signed_checksum: bool = False,
) -> bytes:
    """Return one header block; ``raw`` replaces named fields byte for byte,
    ``raw_at`` writes bytes at absolute offsets, ``checksum`` forces a value."""
    fields = {
        "name": name,
        "mode": octal(mode, 8),
        "uid": octal(uid, 8),
        "gid": octal(gid, 8),
        "size": octal(size, 12),
        "mtime": octal(mtime, 12),
        "typeflag": typeflag,
        "linkname": linkname,
        "magic": magic,
        "uname": uname,
        "gname": gname,
        "devmajor": octal(devmajor, 8),
        "devminor": octal(devminor, 8),
        "prefix": prefix,
    }
    fields.update(raw or {})
    block = bytearray(BLOCK)
    for field, value in fields.items():
        start, width = _OFFSETS[field]
        assert len(value) <= width, field
        block[start : start + len(value)] = value
    for start, value in (raw_at or {}).items():
        block[start : start + len(value)] = value
    if "checksum" in (raw or {}):
        return bytes(block)
    block[148:156] = b" " * 8
    if checksum is None:
        if signed_checksum:
            checksum = sum(b - 256 if b > 127 else b for b in block)
        else:
            checksum = sum(block)
    block[148:156] = b"%06o\x00 " % checksum
    return bytes(block)


def member(name: bytes, data: bytes = b"", **fields: object) -> bytes:
    """Return a header for ``data`` followed by the padded data."""
    return header(name, size=len(data), **fields) + pad(data)  # type: ignore[arg-type]


def pax_record(key: bytes, value: bytes) -> bytes:
    """Encode one PAX record with its correct decimal length prefix."""
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(b"%d" % length) + len(body) != length:
        length += 1
    return b"%d" % length + body


def pax(
    records: list[tuple[bytes, bytes]] | bytes,
    *,
    typeflag: bytes = b"x",
    name: bytes = b"./PaxHeaders/file",
) -> bytes:
    """Return a PAX extended header (block and padded body).

    ``records`` is a list of (key, value) pairs, or the raw body bytes.
    """
    if isinstance(records, bytes):
        body = records
    else:
        body = b"".join(pax_record(key, value) for key, value in records)
    return header(name, typeflag=typeflag, size=len(body)) + pad(body)


def long_name(value: bytes, typeflag: bytes = b"L") -> bytes:
    """Return a GNU long name (``L``) or long link (``K``) record."""
    body = value + b"\x00"
    return header(b"././@LongLink", typeflag=typeflag, size=len(body), magic=GNU) + pad(
        body
    )


def end(blocks: int = 2) -> bytes:
    """Return ``blocks`` zero blocks, the end-of-archive marker."""
    return bytes(BLOCK * blocks)
