"""GNU sparse files: their maps in all four forms GNU tar writes.

Terms used here:

region
    A (offset, length) pair: ``length`` bytes of the file at ``offset`` that
    the archive stores. Everything between regions is a hole of zeros.
sparse map
    The regions of one file, in increasing order. The archive data of a sparse
    entry is the concatenation of its regions.
real size
    The file's size with its holes, which the header's size field does not
    give (that is the stored size).

The four forms:

old GNU (typeflag ``S``)
    Four regions in the header block at byte 386, the real size at byte 483,
    and while the byte at 482 (then 504 of each extension block) is set,
    extension blocks of 21 regions each. All fields are numeric fields.
PAX 0.0
    Records ``GNU.sparse.size`` (real size), ``GNU.sparse.numblocks``, then
    ``GNU.sparse.offset`` and ``GNU.sparse.numbytes`` repeated per region.
PAX 0.1
    ``GNU.sparse.size``, ``GNU.sparse.numblocks`` and one ``GNU.sparse.map``
    record: ``OFFSET,LENGTH,OFFSET,LENGTH...``.
PAX 1.0
    ``GNU.sparse.major=1``, ``GNU.sparse.minor=0``, ``GNU.sparse.realsize``;
    the map opens the entry's data area as decimal lines (the region count,
    then offset and length of each region), padded with NULs to a whole block.
    That map is part of the raw header, so ``data_size`` is what follows it.

Any PAX form may carry ``GNU.sparse.name``, the file's real path: the header's
own name is then a placeholder such as ``./GNUSparseFile.123/name``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .header import BLOCK_SIZE, TarFormatError, parse_number
from .pax import parse_decimal

__all__ = [
    "BlockSource",
    "SparseInfo",
    "check_regions",
    "has_sparse_records",
    "parse_sparse_records",
    "read_old_sparse",
    "read_sparse_map",
]

_PREFIX = b"GNU.sparse."
_ENTRY_SIZE = 24
_HEADER_MAP = (386, 4)
_HEADER_EXTENDED = 482
_HEADER_REAL_SIZE = slice(483, 495)
_EXTENSION_MAP = (0, 21)
_EXTENSION_EXTENDED = 504
_MAX_MAP_DIGITS = 20


class BlockSource(Protocol):
    """The source of sparse header blocks: the raw header being collected."""

    @property
    def offset(self) -> int: ...

    def read(self, size: int, part: str) -> bytes:
        """Return the next ``size`` bytes, or raise TarFormatError naming
        ``part`` if the stream ends first or the header grows past its limit."""
        ...


@dataclass(slots=True)
class SparseInfo:
    """The sparse description found in one entry's own PAX records."""

    version: bytes
    """b"0.0", b"0.1" or b"1.0"."""
    real_size: int
    regions: list[tuple[int, int]] | None
    """The map of a 0.0 or 0.1 entry. None for 1.0, whose map opens the data."""
    name: bytes | None
    """``GNU.sparse.name``: the real path, which wins over every other name."""


def read_old_sparse(
    block: bytes, source: BlockSource, max_regions: int
) -> tuple[list[tuple[int, int]], int]:
    """Decode the old GNU sparse map of header ``block``.

    Reads the extension blocks that follow from ``source``. Returns the
    regions (unchecked) and the real size.
    """
    regions: list[tuple[int, int]] = []
    _parse_pairs(block, *_HEADER_MAP, regions)
    extended = block[_HEADER_EXTENDED]
    # Extension blocks follow while the flag is set, even after a block whose
    # pairs ended early, as Go's archive/tar and libarchive 3.6 read them.
    while extended:
        offset = source.offset
        extension = source.read(BLOCK_SIZE, "old GNU sparse header")
        try:
            _parse_pairs(extension, *_EXTENSION_MAP, regions)
        except TarFormatError as error:
            raise TarFormatError(str(error), offset) from None
        extended = extension[_EXTENSION_EXTENDED]
        _check_count(len(regions), max_regions, offset)
    real_size = parse_number(block[_HEADER_REAL_SIZE], "sparse real size")
    return regions, real_size


def _parse_pairs(
    block: bytes, start: int, count: int, regions: list[tuple[int, int]]
) -> None:
    for index in range(count):
        at = start + index * _ENTRY_SIZE
        offset_field = block[at : at + 12]
        # A NUL first offset byte ends the pairs of this block, as in Go's
        # archive/tar (which states that GNU and BSD tar agree) and libarchive.
        if offset_field[0] == 0:
            return
        offset = parse_number(offset_field, "sparse offset")
        length = parse_number(block[at + 12 : at + 24], "sparse length")
        regions.append((offset, length))


def has_sparse_records(records: list[tuple[bytes, bytes]]) -> bool:
    """Tell whether any of the records describes a GNU sparse file."""
    return any(key.startswith(_PREFIX) for key, _ in records)


def parse_sparse_records(
    records: list[tuple[bytes, bytes]], max_regions: int
) -> SparseInfo | None:
    """Decode the GNU sparse records among one entry's own PAX records.

    Returns None when there are none. Raises :class:`TarFormatError` for an
    unknown version, a missing real size, a malformed map, or a map of more
    than ``max_regions`` regions.
    """
    sparse = {key: value for key, value in records if key.startswith(_PREFIX)}
    if not sparse:
        return None
    name = sparse.get(b"GNU.sparse.name")
    if name is not None and b"\0" in name:
        raise TarFormatError("PAX GNU.sparse.name contains a NUL byte")
    if b"GNU.sparse.major" in sparse or b"GNU.sparse.minor" in sparse:
        return _version_1_0(sparse, name)
    if b"GNU.sparse.map" in sparse:
        regions = _map_0_1(sparse[b"GNU.sparse.map"], max_regions)
        version = b"0.1"
    else:
        regions = _map_0_0(records, max_regions)
        version = b"0.0"
    _check_numblocks(sparse, len(regions))
    real_size = _required(sparse, b"GNU.sparse.size")
    return SparseInfo(version, real_size, regions, name)


def _version_1_0(sparse: dict[bytes, bytes], name: bytes | None) -> SparseInfo:
    major = sparse.get(b"GNU.sparse.major", b"")
    version = major + b"." + sparse.get(b"GNU.sparse.minor", b"")
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


def _map_0_1(value: bytes, max_regions: int) -> list[tuple[int, int]]:
    fields = value.split(b",") if value else []
    if len(fields) % 2:
        raise TarFormatError("GNU.sparse.map has an odd count of numbers")
    _check_count(len(fields) // 2, max_regions)
    numbers = [parse_decimal(field, "GNU.sparse.map") for field in fields]
    return list(zip(numbers[::2], numbers[1::2]))


def _map_0_0(
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
            _check_count(len(regions) + 1, max_regions)
            regions.append((offset, parse_decimal(value, "GNU.sparse.numbytes")))
            offset = None
    if offset is not None:
        raise TarFormatError("GNU.sparse.offset without its numbytes")
    return regions


def read_sparse_map(
    source: BlockSource, stored_size: int, max_regions: int
) -> tuple[list[tuple[int, int]], int]:
    """Read the PAX 1.0 map that opens a sparse entry's data area.

    ``stored_size`` is the size of the whole data area. Returns the regions
    (unchecked) and the size of the map with its padding.
    """
    map_offset = source.offset
    text = bytearray()
    numbers: list[int] = []
    expected_count = 1
    position = 0
    while len(numbers) < expected_count:
        newline = text.find(b"\n", position)
        if newline < 0:
            if len(text) + BLOCK_SIZE > stored_size:
                raise TarFormatError(
                    "GNU sparse map runs past the entry's data", map_offset
                )
            text += source.read(BLOCK_SIZE, "GNU sparse map")
            continue
        numbers.append(_map_number(text[position:newline], map_offset))
        position = newline + 1
        if len(numbers) == 1:
            _check_count(numbers[0], max_regions, map_offset)
            expected_count = 1 + 2 * numbers[0]
    return list(zip(numbers[1::2], numbers[2::2])), len(text)


def _map_number(token: bytearray, map_offset: int) -> int:
    if not token.isdigit() or len(token) > _MAX_MAP_DIGITS:
        raise TarFormatError(
            f"invalid number {bytes(token)!r} in GNU sparse map", map_offset
        )
    return int(token)


def _check_count(count: int, max_regions: int, offset: int | None = None) -> None:
    if count > max_regions:
        raise TarFormatError(f"sparse map has more than {max_regions} regions", offset)


def check_regions(
    regions: list[tuple[int, int]], real_size: int, data_size: int
) -> list[tuple[int, int]]:
    """Validate a sparse map and return it without its zero-length regions.

    Regions must be in increasing order, must not overlap, must end within
    ``real_size``, and their lengths must add up to ``data_size``, the bytes
    the archive stores. GNU tar ends the map of a file that ends in a hole
    with a zero-length region at the real size, and that marker is dropped.
    """
    end = 0
    stored = 0
    for offset, length in regions:
        if offset < end:
            raise TarFormatError(
                f"sparse region at {offset} overlaps or precedes the one ending"
                f" at {end}"
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
