"""A streaming tar reader that keeps every byte of the archive.

:class:`TarReader` cuts a tar stream into :class:`~ipcs_fs.tar.entry.TarEntry`
objects such that::

    tar bytes == b"".join(e.raw_header + DATA(e) for e in entries) + trailer

Terms used here:

raw header
    Every byte between one entry's data and the next entry's data: the
    previous entry's padding, extension records (GNU long names, PAX headers,
    skipped GNU volume headers) with their bodies, the entry's header block,
    old GNU sparse extension blocks and a PAX 1.0 sparse map.
data
    The ``data_size`` bytes the archive stores for an entry; for a sparse
    file, the concatenation of its data regions.
trailer
    What follows the last entry's data: its padding, any GNU volume header or
    PAX global header that no entry follows, the first all-zero block where a
    header was expected, and every byte after it (more zero blocks, the rest
    of a padded record, junk).

Rules that tar implementations disagree on, as decided here:

- Typeflags 1 to 6 (links, devices, directories, FIFOs) have no data, whatever
  their size field says, as in Go's archive/tar, which containerd uses.
- Typeflags 0, NUL and 7 are regular files, and directories when the name ends
  in ``/`` (old tars). GNU ``D`` is a directory with data. Every other
  typeflag that is not an extension record is a regular file with data, as
  POSIX tells readers to do.
- GNU ``V`` (volume label), ``M`` (continuation from a previous volume) and
  ``N`` (old long names) headers are skipped with their bodies; their bytes
  become part of the next entry's raw header (or of the trailer), so they are
  kept but describe no entry.
- Names: ``GNU.sparse.name`` wins over a GNU long name, which wins over PAX
  ``path``, which wins over the header's name (with its ustar prefix). Link
  names: GNU long link, then PAX ``linkpath``, then the header.
- Two PAX ``x`` headers, two long names or two long links for one entry are an
  error, since readers differ on which one counts.
- GNU sparse records are read from the entry's own ``x`` header only.
- At most 1024 global PAX records stay in force, since every later entry
  carries a copy of them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Protocol

from ..errors import InvalidArgumentError
from .entry import EntryKind, TarEntry
from .header import (
    BLOCK_SIZE,
    GNU_MAGIC,
    HEADER_ONLY_TYPEFLAGS,
    ZERO_BLOCK,
    TarFormatError,
    decode_header,
    padding_after,
    parse_number,
    parse_old_sparse,
    verify_checksum,
)
from .pax import (
    apply_records,
    check_regions,
    has_sparse_records,
    merge_records,
    parse_records,
    parse_sparse_records,
    update_globals,
)

__all__ = ["ReadableStream", "TarReader"]

logger = logging.getLogger(__name__)

# Large enough that a tar of small files costs one read call per many
# entries, small enough to stay cheap per reader.
_READ_SIZE = 1 << 20
# Upper bound of one read call on the stream, even when a caller asks
# read_data() for more: decompressors allocate the whole request up front.
_MAX_READ = 16 << 20
_MAX_GLOBAL_RECORDS = 1024
# A decoded PAX record costs about 100 bytes of memory (a tuple and two bytes
# objects) for as little as 5 bytes of input, so an extended header may hold
# at most max_header_bytes / 64 records: 262144 at the default limit.
_RECORD_MEMORY = 64
_MAX_NAME_IN_MESSAGE = 200

_TYPEFLAG = slice(156, 157)
_SIZE = slice(124, 136)
_MAGIC = slice(257, 265)
_PAX_LOCAL = frozenset((b"x", b"X"))  # X: Solaris's name for x
_PAX_GLOBAL = b"g"
_LONG_NAME = b"L"
_LONG_LINK = b"K"
_SKIPPED = frozenset((b"V", b"M", b"N"))
_EXTENSIONS = _PAX_LOCAL | {_PAX_GLOBAL, _LONG_NAME, _LONG_LINK} | _SKIPPED
_OLD_SPARSE = b"S"
_SLASH_DIR_TYPEFLAGS = frozenset((b"0", b"\0", b"7"))

# Old GNU sparse layout: 4 map entries in the header block, then extension
# blocks of 21 entries while the "is extended" byte is set.
_SPARSE_IN_HEADER = (386, 4)
_SPARSE_HEADER_EXTENDED = 482
_SPARSE_REAL_SIZE = slice(483, 495)
_SPARSE_IN_EXTENSION = (0, 21)
_SPARSE_EXTENSION_EXTENDED = 504
_MAX_SPARSE_MAP_DIGITS = 20


class ReadableStream(Protocol):
    """Anything with ``read(n) -> bytes``; ``b""`` means end of stream."""

    def read(self, size: int, /) -> bytes: ...


class _Pending:
    """Extension records read so far for the entry to come."""

    __slots__ = ("local", "long_link", "long_name", "parts", "size")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.local: list[tuple[bytes, bytes]] | None = None
        self.long_name: bytes | None = None
        self.long_link: bytes | None = None

    def expects_entry(self) -> bool:
        return (
            self.local is not None
            or self.long_name is not None
            or self.long_link is not None
        )


class TarReader:
    """Read the entries of an uncompressed tar stream, keeping every byte.

    Iterating yields one :class:`TarEntry` per file system object; extension
    records are folded into the entry they describe. While an entry is
    current, :meth:`read_data` and :meth:`readinto_data` return its data;
    moving to the next entry skips what was not read. When iteration ends,
    :attr:`trailer` holds the bytes after the last entry's data.

    The stream is read once, front to back, in pieces of at most 16 MiB; it
    is never closed here. Every malformed input raises
    :class:`~ipcs_fs.errors.InvalidArgumentError` naming ``source``, the byte
    offset and the entry; after an error the reader raises it again on every
    call. Raw headers are held in memory, so each entry's raw header (and the
    trailer) may not exceed ``max_header_bytes``, nor a sparse map
    ``max_sparse_regions`` regions (about 130 bytes of memory each).

    Example::

        reader = TarReader(open(path, "rb"), source=path)
        for entry in reader:
            while chunk := reader.read_data(1 << 18):
                ...
        assert reader.trailer is not None
    """

    def __init__(
        self,
        stream: ReadableStream,
        *,
        source: str = "",
        max_header_bytes: int = 16 << 20,
        max_sparse_regions: int = 1 << 18,
    ) -> None:
        if max_header_bytes < 2 * BLOCK_SIZE:
            raise InvalidArgumentError(
                f"invalid max_header_bytes {max_header_bytes}: must be at least"
                f" {2 * BLOCK_SIZE}"
            )
        self._stream = stream
        self._readinto = getattr(stream, "readinto", None)
        self._scratch: memoryview | None = None
        self._source = source
        self._max_header_bytes = max_header_bytes
        self._max_sparse_regions = max_sparse_regions
        self._max_records = max_header_bytes // _RECORD_MEMORY
        self._buffer = b""
        self._position = 0
        self._stream_offset = 0
        self._current: TarEntry | None = None
        self._remaining = 0
        self._padding = 0
        self._globals: dict[bytes, bytes] = {}
        self._done = False
        self._failure: Exception | None = None
        self._block_offset = 0
        self._name: bytes | None = None
        self.trailer: bytes | None = None
        """Bytes after the last entry's data; None until iteration ends."""

    @property
    def offset(self) -> int:
        """Bytes of the tar stream consumed so far."""
        return self._stream_offset - len(self._buffer) + self._position

    def __iter__(self) -> Iterator[TarEntry]:
        return self

    def __next__(self) -> TarEntry:
        if self._failure is not None:
            raise self._failure
        if self._done:
            raise StopIteration
        try:
            entry = self._advance()
        except Exception as error:
            self._failure = error
            raise
        if entry is None:
            self._done = True
            raise StopIteration
        return entry

    def read_data(self, size: int = -1) -> bytes:
        """Return the next ``size`` bytes of the current entry's data.

        Returns exactly ``min(size, remaining)`` bytes (all that remain when
        ``size`` is negative), and ``b""`` at the end of the data or when no
        entry is current. Raises InvalidArgumentError if the stream ends
        inside the data.
        """
        if self._failure is not None:
            raise self._failure
        if size < 0 or size > self._remaining:
            size = self._remaining
        if size == 0:
            return b""
        try:
            data = self._read(size)
        except Exception as error:
            self._failure = error
            raise
        self._remaining -= size
        return data

    def readinto_data(self, buffer: bytearray | memoryview) -> int:
        """Fill ``buffer`` with the current entry's next data bytes.

        Returns how many bytes were written: ``min(len(buffer), remaining)``,
        so 0 only at the end of the data. Raises like :meth:`read_data`.
        """
        if self._failure is not None:
            raise self._failure
        view = memoryview(buffer).cast("B")
        size = min(len(view), self._remaining)
        if size == 0:
            return 0
        try:
            self._read_into(view[:size])
        except Exception as error:
            self._failure = error
            raise
        self._remaining -= size
        return size

    # Entry assembly

    def _advance(self) -> TarEntry | None:
        if self._remaining:
            self._skip(self._remaining)
            self._remaining = 0
        self._current = None
        self._name = None
        try:
            entry = self._read_entry()
        except TarFormatError as error:
            raise self._invalid(str(error), self._block_offset) from None
        self._current = entry
        if entry is not None:
            self._remaining = entry.data_size
            self._padding = padding_after(entry.data_size)
        return entry

    def _read_entry(self) -> TarEntry | None:
        start = self.offset
        pending = _Pending()
        # The previous entry's padding and this header block come in one
        # piece, so the raw header of a plain entry is a single bytes object.
        padding = self._padding
        self._padding = 0
        self._block_offset = start
        chunk = self._take(padding + BLOCK_SIZE)
        if len(chunk) < padding:
            raise TarFormatError(
                f"stream ends inside the padding, after {len(chunk)} of {padding} bytes"
            )
        pending.parts.append(chunk)
        pending.size = len(chunk)
        block = chunk[padding:] if padding else chunk
        self._block_offset = start + padding
        while len(block) == BLOCK_SIZE and block != ZERO_BLOCK:
            verify_checksum(block)
            typeflag = block[_TYPEFLAG]
            if typeflag not in _EXTENSIONS:
                return self._build_entry(pending, block, start)
            self._read_extension(pending, block, typeflag)
            self._block_offset = self.offset
            block = self._take(BLOCK_SIZE)
            pending.parts.append(block)
            pending.size += len(block)
        self._finish(pending, block)
        return None

    def _finish(self, pending: _Pending, block: bytes) -> None:
        if block and len(block) < BLOCK_SIZE:
            raise TarFormatError(
                f"stream ends inside a header block, after {len(block)} of"
                f" {BLOCK_SIZE} bytes"
            )
        if pending.expects_entry():
            raise TarFormatError(
                "extended header or long name is not followed by an entry"
            )
        limit = self._max_header_bytes - pending.size
        pending.parts.append(self._read_rest(limit))
        self.trailer = b"".join(pending.parts)

    def _read_extension(self, pending: _Pending, block: bytes, typeflag: bytes) -> None:
        size = parse_number(block[_SIZE], "size")
        padded = size + padding_after(size)
        # The budget covers the body and the header block that must follow.
        self._check_budget(pending, padded + BLOCK_SIZE)
        body = self._collect(pending, padded, "extended header")
        if typeflag in _PAX_LOCAL:
            if pending.local is not None:
                raise TarFormatError("second PAX extended header for one entry")
            pending.local = parse_records(body, size, self._max_records)
        elif typeflag == _PAX_GLOBAL:
            update_globals(self._globals, parse_records(body, size, self._max_records))
            if len(self._globals) > _MAX_GLOBAL_RECORDS:
                raise TarFormatError(
                    f"more than {_MAX_GLOBAL_RECORDS} global PAX records in force"
                )
        elif typeflag == _LONG_NAME:
            if pending.long_name is not None:
                raise TarFormatError("second GNU long name for one entry")
            pending.long_name = body[:size].partition(b"\0")[0]
        elif typeflag == _LONG_LINK:
            if pending.long_link is not None:
                raise TarFormatError("second GNU long link for one entry")
            pending.long_link = body[:size].partition(b"\0")[0]
        else:
            logger.debug(
                "skipped GNU %r header at offset %d in %s",
                typeflag,
                self._block_offset,
                self._source,
            )

    def _build_entry(self, pending: _Pending, block: bytes, start: int) -> TarEntry:
        try:
            entry = decode_header(block)
        except TarFormatError:
            self._name = pending.long_name or block[:100].partition(b"\0")[0]
            raise
        self._name = entry.name
        if pending.local or self._globals:
            apply_records(entry, merge_records(self._globals, pending.local or []))
        if pending.long_name is not None:
            entry.name = pending.long_name
        if pending.long_link is not None:
            entry.linkname = pending.long_link
        self._name = entry.name
        if entry.typeflag == _OLD_SPARSE:
            self._read_old_sparse(pending, entry, block)
        elif pending.local:
            self._apply_pax_sparse(pending, entry)
        if (
            entry.kind is EntryKind.FILE
            and entry.typeflag in _SLASH_DIR_TYPEFLAGS
            and entry.name.endswith(b"/")
        ):
            entry.kind = EntryKind.DIR
        parts = pending.parts
        entry.raw_header = parts[0] if len(parts) == 1 else b"".join(parts)
        entry.offset = start
        return entry

    # Sparse maps

    def _read_old_sparse(
        self, pending: _Pending, entry: TarEntry, block: bytes
    ) -> None:
        if pending.local and has_sparse_records(pending.local):
            raise TarFormatError("entry has both an old GNU and a PAX sparse map")
        if block[_MAGIC] != GNU_MAGIC:
            raise TarFormatError("old GNU sparse header without the GNU magic")
        regions: list[tuple[int, int]] = []
        ended = parse_old_sparse(block, *_SPARSE_IN_HEADER, regions)
        extended = block[_SPARSE_HEADER_EXTENDED]
        real_size = parse_number(block[_SPARSE_REAL_SIZE], "sparse real size")
        while extended:
            if ended:
                raise TarFormatError("old GNU sparse map continues after its end")
            self._block_offset = self.offset
            self._check_budget(pending, BLOCK_SIZE)
            extension = self._collect(pending, BLOCK_SIZE, "sparse header")
            ended = parse_old_sparse(extension, *_SPARSE_IN_EXTENSION, regions)
            extended = extension[_SPARSE_EXTENSION_EXTENDED]
            self._check_region_count(len(regions))
        self._check_region_count(len(regions))
        entry.sparse = check_regions(regions, real_size, entry.data_size)
        entry.size = real_size

    def _apply_pax_sparse(self, pending: _Pending, entry: TarEntry) -> None:
        assert pending.local is not None
        info = parse_sparse_records(pending.local, self._max_sparse_regions)
        if info is None:
            return
        if entry.typeflag[0] in HEADER_ONLY_TYPEFLAGS:
            raise TarFormatError("GNU sparse records on an entry without data")
        if info.name is not None:
            entry.name = info.name
            self._name = entry.name
        regions = info.regions
        if regions is None:
            regions = self._read_sparse_map(pending, entry)
        entry.sparse = check_regions(regions, info.real_size, entry.data_size)
        entry.size = info.real_size

    def _read_sparse_map(
        self, pending: _Pending, entry: TarEntry
    ) -> list[tuple[int, int]]:
        # PAX 1.0: decimal lines "COUNT\n" then "OFFSET\nLENGTH\n" per region,
        # padded to a whole block, at the start of the data area. The map is
        # part of the raw header; the data that follows it is what remains.
        self._block_offset = self.offset
        text = bytearray()
        numbers: list[int] = []
        wanted = 1
        position = 0
        while len(numbers) < wanted:
            newline = text.find(b"\n", position)
            if newline < 0:
                text += self._read_sparse_map_block(pending, entry, len(text))
                continue
            numbers.append(self._sparse_map_number(text[position:newline]))
            position = newline + 1
            if len(numbers) == 1:
                self._check_region_count(numbers[0])
                wanted = 1 + 2 * numbers[0]
        entry.data_size -= len(text)
        return list(zip(numbers[1::2], numbers[2::2]))

    def _read_sparse_map_block(
        self, pending: _Pending, entry: TarEntry, read_so_far: int
    ) -> bytes:
        if read_so_far + BLOCK_SIZE > entry.data_size:
            raise TarFormatError("GNU sparse map runs past the entry's data")
        self._check_budget(pending, BLOCK_SIZE)
        return self._collect(pending, BLOCK_SIZE, "sparse map")

    @staticmethod
    def _sparse_map_number(token: bytes | bytearray) -> int:
        if not token.isdigit() or len(token) > _MAX_SPARSE_MAP_DIGITS:
            raise TarFormatError(f"invalid number {bytes(token)!r} in GNU sparse map")
        return int(token)

    def _check_region_count(self, count: int) -> None:
        if count > self._max_sparse_regions:
            raise TarFormatError(
                f"sparse map has more than {self._max_sparse_regions} regions"
            )

    # Budget and errors

    def _check_budget(self, pending: _Pending, size: int) -> None:
        if pending.size + size > self._max_header_bytes:
            raise TarFormatError(
                f"headers of one entry exceed the limit of"
                f" {self._max_header_bytes} bytes"
            )

    def _invalid(
        self, rule: str, offset: int, what: str = "header"
    ) -> InvalidArgumentError:
        where = f" in {self._source}" if self._source else ""
        entry = ""
        if self._name is not None:
            name = self._name.decode("utf-8", "backslashreplace")
            if len(name) > _MAX_NAME_IN_MESSAGE:
                name = name[:_MAX_NAME_IN_MESSAGE] + "..."
            entry = f" for {name!r}"
        return InvalidArgumentError(
            f"invalid tar {what}{entry} at offset {offset}{where}: {rule}"
        )

    def _truncated_data(self) -> InvalidArgumentError:
        assert self._current is not None
        self._name = self._current.name
        data_start = self._current.offset + len(self._current.raw_header)
        return self._invalid(
            f"stream ends inside the entry's {self._current.data_size} bytes of"
            f" data, which start at offset {data_start}",
            self.offset,
            "data",
        )

    # Buffered stream access

    def _collect(self, pending: _Pending, size: int, what: str) -> bytes:
        """Read ``size`` header bytes into ``pending``; error if the stream ends."""
        data = self._take(size)
        if len(data) < size:
            raise TarFormatError(
                f"stream ends inside the {what}, after {len(data)} of {size} bytes"
            )
        pending.parts.append(data)
        pending.size += size
        return data

    def _take(self, size: int) -> bytes:
        """Return the next ``size`` bytes, fewer only at the end of the stream."""
        position = self._position
        end = position + size
        if end <= len(self._buffer):
            self._position = end
            return self._buffer[position:end]
        return self._take_across(size)

    def _take_across(self, size: int) -> bytes:
        parts = [self._buffer[self._position :]]
        missing = size - len(parts[0])
        self._buffer = b""
        self._position = 0
        while missing > 0:
            chunk = self._stream.read(min(max(missing, _READ_SIZE), _MAX_READ))
            if not chunk:
                break
            self._stream_offset += len(chunk)
            if len(chunk) > missing:
                # Keep the excess buffered for the headers that follow.
                self._buffer = chunk
                self._position = missing
                parts.append(chunk[:missing])
                break
            parts.append(chunk)
            missing -= len(chunk)
        return b"".join(parts)

    def _read_rest(self, limit: int) -> bytes:
        data = self._take(limit + 1)
        if len(data) > limit:
            raise TarFormatError(
                "the end-of-archive blocks and the bytes after them exceed the"
                f" limit of {self._max_header_bytes} bytes"
            )
        return data

    def _read(self, size: int) -> bytes:
        data = self._take(size)
        if len(data) < size:
            raise self._truncated_data()
        return data

    def _read_into(self, view: memoryview) -> None:
        size = len(view)
        filled = min(len(self._buffer) - self._position, size)
        if filled:
            start = self._position
            view[:filled] = memoryview(self._buffer)[start : start + filled]
            self._position += filled
        while filled < size:
            missing = size - filled
            if self._readinto is None or missing < _READ_SIZE:
                data = self._read(min(missing, _MAX_READ))
                view[filled : filled + len(data)] = data
                filled += len(data)
                continue
            # Large reads go straight into the caller's buffer, with no copy.
            count = self._readinto(view[filled : filled + min(missing, _MAX_READ)])
            if not count:
                raise self._truncated_data()
            self._stream_offset += count
            filled += count

    def _skip(self, size: int) -> None:
        available = min(len(self._buffer) - self._position, size)
        self._position += available
        size -= available
        if not size:
            return
        if self._scratch is None:
            self._scratch = memoryview(bytearray(_READ_SIZE))
        scratch = self._scratch
        while size:
            piece = scratch[: min(size, len(scratch))]
            if self._readinto is not None:
                count = self._readinto(piece)
            else:
                count = len(self._stream.read(len(piece)))
            if not count:
                raise self._truncated_data()
            self._stream_offset += count
            size -= count
