"""PAX extended header records: framing, global and local records, fields.

Terms used here:

record
    One ``LENGTH KEY=VALUE\\n`` item of a PAX extended header body. ``LENGTH``
    is the decimal size of the whole record, itself and the newline included.
    Records are framed by that length alone, so values may contain newlines
    and NUL bytes.
local records
    Those of an ``x`` header. They apply to the next entry only.
global records
    Those of a ``g`` header. They apply to every later entry until a later
    ``g`` header changes them, and an empty value there removes the record.
field key
    A key that replaces a header field (``path``, ``size``, ``mtime`` ...).
    A local record with an empty value for a field key removes any global
    record of that key, so the header block's own field applies, as POSIX
    requires. Other keys keep an empty value, because an xattr may be empty.

Values stay bytes: no charset conversion is done, whatever ``hdrcharset``
records, because names and xattrs must come back exactly as stored.
"""

from __future__ import annotations

import binascii
import re
from urllib.parse import unquote_to_bytes

from .entry import TarEntry
from .header import HEADER_ONLY_TYPEFLAGS, TarFormatError

__all__ = [
    "FIELD_KEYS",
    "apply_records",
    "merge_records",
    "parse_decimal",
    "parse_records",
    "parse_time",
    "update_globals",
]

FIELD_KEYS = frozenset(
    (
        b"path",
        b"linkpath",
        b"size",
        b"uid",
        b"gid",
        b"uname",
        b"gname",
        b"mtime",
        b"atime",
        b"ctime",
        b"SCHILY.devmajor",
        b"SCHILY.devminor",
    )
)
# Keys whose values are names. A NUL in them would cut the name short for
# every C reader, so Go's archive/tar rejects it, and so does this reader.
_NAME_KEYS = frozenset((b"path", b"linkpath", b"uname", b"gname"))

_SCHILY_XATTR = b"SCHILY.xattr."
_LIBARCHIVE_XATTR = b"LIBARCHIVE.xattr."
_MAX_LENGTH_DIGITS = 20
# A number of more than 19 digits cannot fit a signed 64-bit field, and the
# bound keeps int() cheap on hostile input.
_MAX_NUMBER_DIGITS = 19
_TIME = re.compile(rb"(-?)([0-9]{1,19})(?:\.([0-9]*))?")
_NS_DIGITS = 9


def parse_records(body: bytes, end: int, max_records: int) -> list[tuple[bytes, bytes]]:
    """Split ``body[:end]``, a PAX extended header body, into (key, value)
    records, in order.

    Every byte up to ``end`` must belong to a record. Raises
    :class:`TarFormatError` for a bad length, a missing ``=`` or newline, an
    empty key, or more than ``max_records`` records.
    """
    records: list[tuple[bytes, bytes]] = []
    position = 0
    while position < end:
        if len(records) == max_records:
            raise TarFormatError(
                f"PAX extended header has more than {max_records} records"
            )
        key, value, position = _parse_record(body, position, end)
        records.append((key, value))
    return records


def _parse_record(body: bytes, start: int, end: int) -> tuple[bytes, bytes, int]:
    space = body.find(b" ", start, min(end, start + _MAX_LENGTH_DIGITS + 1))
    digits = body[start:space]
    if space < 0 or not digits.isdigit():
        raise TarFormatError(f"PAX record at byte {start} has no decimal length")
    stop = start + int(digits)
    if stop > end:
        raise TarFormatError(
            f"PAX record at byte {start} has length {int(digits)},"
            f" past the end of the {end}-byte header"
        )
    if stop <= space + 1 or body[stop - 1] != 0x0A:
        raise TarFormatError(
            f"PAX record at byte {start} does not end with a newline"
            f" at its length {int(digits)}"
        )
    equals = body.find(b"=", space + 1, stop - 1)
    if equals < 0:
        raise TarFormatError(f"PAX record at byte {start} has no '='")
    key = body[space + 1 : equals]
    if not key or b"\0" in key:
        raise TarFormatError(f"PAX record at byte {start} has an invalid key {key!r}")
    return key, body[equals + 1 : stop - 1], stop


def update_globals(
    global_records: dict[bytes, bytes], records: list[tuple[bytes, bytes]]
) -> None:
    """Apply the records of a ``g`` header to the global records in force."""
    for key, value in records:
        if value:
            global_records[key] = value
        else:
            global_records.pop(key, None)


def merge_records(
    global_records: dict[bytes, bytes], records: list[tuple[bytes, bytes]]
) -> dict[bytes, bytes]:
    """Return the records in force for one entry: globals, then its own."""
    merged = dict(global_records)
    for key, value in records:
        if value or key not in FIELD_KEYS:
            merged[key] = value
        else:
            merged.pop(key, None)
    return merged


def apply_records(entry: TarEntry, records: dict[bytes, bytes]) -> None:
    """Set the fields of ``entry`` that the records in force replace.

    Also fills ``entry.xattrs`` from ``SCHILY.xattr.*`` (raw values) and
    ``LIBARCHIVE.xattr.*`` (percent-encoded names, base64 values) and sets
    ``entry.pax``. ``size`` sets both ``size`` and ``data_size`` unless the
    entry's typeflag carries no data. ``GNU.sparse.*`` keys are left to
    :mod:`.sparse`.
    """
    entry.pax = records
    for key, value in records.items():
        setter = _FIELD_SETTERS.get(key)
        if setter is not None:
            if key in _NAME_KEYS and b"\0" in value:
                raise TarFormatError(f"PAX {key.decode()} contains a NUL byte")
            setter(entry, value)
        elif key.startswith(_SCHILY_XATTR):
            entry.xattrs[_xattr_name(key[len(_SCHILY_XATTR) :])] = value
        elif key.startswith(_LIBARCHIVE_XATTR):
            name = unquote_to_bytes(key[len(_LIBARCHIVE_XATTR) :])
            entry.xattrs[_xattr_name(name)] = _decode_base64(value, key)


def _xattr_name(name: bytes) -> bytes:
    if not name:
        raise TarFormatError("PAX xattr record has an empty name")
    return name


def _decode_base64(value: bytes, key: bytes) -> bytes:
    # libarchive writes these values without the trailing '=' padding.
    padded = value + b"=" * (-len(value) % 4)
    try:
        return binascii.a2b_base64(padded, strict_mode=True)
    except binascii.Error:
        raise TarFormatError(f"PAX record {key!r} is not valid base64") from None


def parse_decimal(value: bytes, key: str) -> int:
    """Decode an unsigned decimal PAX value of at most 19 digits."""
    if not value.isdigit() or len(value) > _MAX_NUMBER_DIGITS:
        raise TarFormatError(f"invalid PAX {key} {value!r}")
    return int(value)


def parse_time(value: bytes, key: str) -> int:
    """Decode a PAX time (``[-]SECONDS[.FRACTION]``) to integer nanoseconds.

    No float is involved, so every nanosecond is exact. Digits past the ninth
    of the fraction round toward negative infinity. Go's archive/tar truncates
    them instead, which differs only for negative times.
    """
    match = _TIME.fullmatch(value)
    if match is None:
        raise TarFormatError(f"invalid PAX {key} {value!r}")
    negative, seconds, fraction = match.groups(b"")
    nanoseconds = int(seconds) * 1_000_000_000 + int(
        fraction[:_NS_DIGITS].ljust(_NS_DIGITS, b"0")
    )
    if not negative:
        return nanoseconds
    below_ns = fraction[_NS_DIGITS:].strip(b"0") != b""
    return -nanoseconds - below_ns


def _set_path(entry: TarEntry, value: bytes) -> None:
    entry.name = value


def _set_linkpath(entry: TarEntry, value: bytes) -> None:
    entry.linkname = value


def _set_size(entry: TarEntry, value: bytes) -> None:
    entry.size = parse_decimal(value, "size")
    if entry.typeflag[0] not in HEADER_ONLY_TYPEFLAGS:
        entry.data_size = entry.size


def _set_uid(entry: TarEntry, value: bytes) -> None:
    entry.uid = parse_decimal(value, "uid")


def _set_gid(entry: TarEntry, value: bytes) -> None:
    entry.gid = parse_decimal(value, "gid")


def _set_uname(entry: TarEntry, value: bytes) -> None:
    entry.uname = value


def _set_gname(entry: TarEntry, value: bytes) -> None:
    entry.gname = value


def _set_mtime(entry: TarEntry, value: bytes) -> None:
    entry.mtime_ns = parse_time(value, "mtime")


def _set_atime(entry: TarEntry, value: bytes) -> None:
    entry.atime_ns = parse_time(value, "atime")


def _set_ctime(entry: TarEntry, value: bytes) -> None:
    entry.ctime_ns = parse_time(value, "ctime")


def _set_devmajor(entry: TarEntry, value: bytes) -> None:
    entry.devmajor = parse_decimal(value, "SCHILY.devmajor")


def _set_devminor(entry: TarEntry, value: bytes) -> None:
    entry.devminor = parse_decimal(value, "SCHILY.devminor")


_FIELD_SETTERS = {
    b"path": _set_path,
    b"linkpath": _set_linkpath,
    b"size": _set_size,
    b"uid": _set_uid,
    b"gid": _set_gid,
    b"uname": _set_uname,
    b"gname": _set_gname,
    b"mtime": _set_mtime,
    b"atime": _set_atime,
    b"ctime": _set_ctime,
    b"SCHILY.devmajor": _set_devmajor,
    b"SCHILY.devminor": _set_devminor,
}
