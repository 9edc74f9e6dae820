"""PAX extended header records and GNU sparse maps.

Terms used here:

record
    One ``LENGTH KEY=VALUE\\n`` item of a PAX extended header body. ``LENGTH``
    is the decimal size of the whole record, itself and the newline included;
    records are framed by it alone, so values may hold newlines and NUL bytes.
local records
    Those of an ``x`` header: they apply to the next entry only.
global records
    Those of a ``g`` header: they apply to every later entry until a later
    ``g`` header changes them. An empty value removes a global record.
field key
    A key that replaces a header field (``path``, ``size``, ``mtime`` ...).
    In a local record an empty value for a field key removes any global
    record of that key, so the header block's own field applies, as POSIX
    says. Other keys keep an empty value: an xattr may be empty.
sparse map
    The data regions of a sparse file as (offset, length) pairs. GNU tar
    writes it in four forms: old GNU headers (see :mod:`.header`), PAX 0.0
    (repeated ``GNU.sparse.offset``/``GNU.sparse.numbytes`` records), PAX 0.1
    (one ``GNU.sparse.map`` record) and PAX 1.0 (decimal lines at the start of
    the entry's data; parsed here, read by the reader).

Values stay bytes: no charset conversion is done, whatever ``hdrcharset``
says, because names and xattrs must come back exactly as stored.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from .entry import TarEntry
from .header import HEADER_ONLY_TYPEFLAGS, TarFormatError

__all__ = [
    "FIELD_KEYS",
    "SparseInfo",
    "apply_records",
    "check_regions",
    "has_sparse_records",
    "merge_records",
    "parse_decimal",
    "parse_records",
    "parse_sparse_records",
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
# Keys whose values are names: a NUL in them would cut the name short for
# every C reader, so Go's archive/tar rejects it and so does this reader.
_NAME_KEYS = frozenset((b"path", b"linkpath", b"uname", b"gname"))

_SCHILY_XATTR = b"SCHILY.xattr."
_LIBARCHIVE_XATTR = b"LIBARCHIVE.xattr."
_MAX_LENGTH_DIGITS = 20
# Values past 19 digits cannot fit the 64-bit fields of any filesystem, and
# bounding them keeps int() cheap on hostile input.
_MAX_NUMBER_DIGITS = 19
_TIME = re.compile(rb"(-?)([0-9]{1,19})(?:\.([0-9]*))?")
_NS_DIGITS = 9

_SPARSE_PREFIX = b"GNU.sparse."


@dataclass(slots=True)
class SparseInfo:
    """The sparse description found in one entry's local PAX records."""

    version: bytes
    """b"0.0", b"0.1" or b"1.0"."""
    real_size: int
    regions: list[tuple[int, int]] | None
    """The map for 0.0 and 0.1; None for 1.0, whose map opens the data."""
    name: bytes | None
    """``GNU.sparse.name``: the real path, which wins over every other name."""


def parse_records(body: bytes, end: int, max_records: int) -> list[tuple[bytes, bytes]]:
    """Split ``body[:end]``, a PAX extended header body, into (key, value)
    records, in order.

    Every byte up to ``end`` must belong to a record. Raises
    :class:`TarFormatError` for a bad length, a missing ``=`` or newline, an
    empty key, or more than ``max_records`` records.
    """
    records = []
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
    entry's typeflag carries no data. Sparse keys are left to
    :func:`parse_sparse_records`.
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

    Digits past the ninth of the fraction round toward negative infinity, as
    GNU tar does; no float is involved, so every nanosecond is exact.
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


def has_sparse_records(records: list[tuple[bytes, bytes]]) -> bool:
    """Tell whether any of the records describes a GNU sparse file."""
    return any(key.startswith(_SPARSE_PREFIX) for key, _ in records)


def parse_sparse_records(
    records: list[tuple[bytes, bytes]], max_regions: int
) -> SparseInfo | None:
    """Decode the GNU sparse records among one entry's local records.

    Returns None when there are none. Raises :class:`TarFormatError` for an
    unknown version, a missing real size, a malformed map, or a map of more
    than ``max_regions`` regions.
    """
    sparse = {key: value for key, value in records if key.startswith(_SPARSE_PREFIX)}
    if not sparse:
        return None
    name = sparse.get(b"GNU.sparse.name")
    if name is not None and b"\0" in name:
        raise TarFormatError("PAX GNU.sparse.name contains a NUL byte")
    if b"GNU.sparse.major" in sparse or b"GNU.sparse.minor" in sparse:
        return _sparse_1_0(sparse, name)
    if b"GNU.sparse.map" in sparse:
        regions = _sparse_map_0_1(sparse[b"GNU.sparse.map"], max_regions)
        version = b"0.1"
    else:
        regions = _sparse_map_0_0(records, max_regions)
        version = b"0.0"
    _check_numblocks(sparse, len(regions))
    real_size = _required(sparse, b"GNU.sparse.size")
    return SparseInfo(version, real_size, regions, name)


def _sparse_1_0(sparse: dict[bytes, bytes], name: bytes | None) -> SparseInfo:
    version = (
        sparse.get(b"GNU.sparse.major", b"")
        + b"."
        + sparse.get(b"GNU.sparse.minor", b"")
    )
    if version != b"1.0":
        raise TarFormatError(f"unsupported GNU sparse format version {version!r}")
    real_size = _required(sparse, b"GNU.sparse.realsize")
    return SparseInfo(version, real_size, None, name)


def _required(sparse: dict[bytes, bytes], key: bytes) -> int:
    value = sparse.get(key)
    if value is None:
        raise TarFormatError(f"GNU sparse entry lacks {key.decode()}")
    return parse_decimal(value, key.decode())


def _check_numblocks(sparse: dict[bytes, bytes], count: int) -> None:
    value = sparse.get(b"GNU.sparse.numblocks")
    if value is not None and parse_decimal(value, "GNU.sparse.numblocks") != count:
        raise TarFormatError(
            f"GNU.sparse.numblocks is {value.decode()} but the map has {count} regions"
        )


def _sparse_map_0_1(value: bytes, max_regions: int) -> list[tuple[int, int]]:
    numbers = value.split(b",") if value else []
    if len(numbers) % 2:
        raise TarFormatError("GNU.sparse.map has an odd count of numbers")
    if len(numbers) // 2 > max_regions:
        raise TarFormatError(f"GNU sparse map has more than {max_regions} regions")
    numbers_decoded = [parse_decimal(number, "GNU.sparse.map") for number in numbers]
    return list(zip(numbers_decoded[::2], numbers_decoded[1::2]))


def _sparse_map_0_0(
    records: list[tuple[bytes, bytes]], max_regions: int
) -> list[tuple[int, int]]:
    regions: list[tuple[int, int]] = []
    offset = None
    for key, value in records:
        if key == b"GNU.sparse.offset":
            if offset is not None:
                raise TarFormatError("GNU.sparse.offset without its numbytes")
            offset = parse_decimal(value, "GNU.sparse.offset")
        elif key == b"GNU.sparse.numbytes":
            if offset is None:
                raise TarFormatError("GNU.sparse.numbytes without its offset")
            if len(regions) == max_regions:
                raise TarFormatError(
                    f"GNU sparse map has more than {max_regions} regions"
                )
            regions.append((offset, parse_decimal(value, "GNU.sparse.numbytes")))
            offset = None
    if offset is not None:
        raise TarFormatError("GNU.sparse.offset without its numbytes")
    return regions


def check_regions(
    regions: list[tuple[int, int]], real_size: int, data_size: int
) -> list[tuple[int, int]]:
    """Validate a sparse map and return it without its zero-length regions.

    Regions must be in increasing order, must not overlap, must end within
    ``real_size``, and their lengths must add up to ``data_size``, the bytes
    the archive stores. GNU tar ends a map with a zero-length region at the
    real size when the file ends in a hole; that marker is dropped.
    """
    end = 0
    stored = 0
    for offset, length in regions:
        if offset < end:
            raise TarFormatError(
                f"sparse region at {offset} overlaps or precedes the one ending at {end}"
            )
        end = offset + length
        stored += length
    if end > real_size:
        raise TarFormatError(
            f"sparse map ends at {end}, past the real size {real_size}"
        )
    if stored != data_size:
        raise TarFormatError(
            f"sparse map covers {stored} bytes but the archive stores {data_size}"
        )
    return [region for region in regions if region[1]]
