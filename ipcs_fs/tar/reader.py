"""A streaming tar reader that keeps every byte of the archive.

:class:`TarReader` cuts a tar stream into :class:`~ipcs_fs.tar.entry.TarEntry`
objects such that::

    tar bytes == b"".join(e.raw_header + DATA(e) for e in entries) + trailer

Terms used here:

raw header
    Every byte between one entry's data and the next entry's data. That is
    the previous entry's padding, the extension records with their bodies (GNU
    long names, PAX headers, skipped GNU volume headers), the entry's header
    block, old GNU sparse extension blocks and a PAX 1.0 sparse map.
data
    The ``data_size`` bytes the archive stores for an entry. For a sparse
    file, they are the concatenation of its data regions.
trailer
    What follows the last entry's data. That is its padding, any GNU volume
    header or PAX global header that no entry follows, and the first all-zero
    block where a header was expected. Every byte after that block belongs to
    it too: more zero blocks, the rest of a padded record, or junk.

Rules that tar implementations disagree on, as decided here:

- Typeflags 1 to 6 (links, devices, directories, FIFOs) have no data, whatever
  their size field records, as in Go's archive/tar, which containerd uses.
- Typeflags 0, NUL and 7 are regular files. An entry with typeflag NUL (the
  pre-POSIX regular file) and a name ending in ``/`` is a directory without
  data, as Go's archive/tar reads it. libarchive 3.6 takes 0 and 7 with such
  a name as directories too, but here they stay files with a slash in the
  name.
- GNU ``D`` is a directory with data. Every other typeflag that is not an
  extension record is a regular file with data, as POSIX tells readers to do.
- GNU ``V`` (volume label), ``M`` (continuation from a previous volume) and
  ``N`` (old long names) headers are skipped with their bodies. Their bytes
  become part of the next entry's raw header (or of the trailer), so they are
  kept but describe no entry.
- Names: ``GNU.sparse.name`` wins over a GNU long name, which wins over PAX
  ``path``, which wins over the header's name (with its ustar prefix). Link
  names: GNU long link, then PAX ``linkpath``, then the header.
- Two PAX ``x`` headers, two long names or two long links for one entry are an
  error, since readers differ on which one counts.
- Entries end at the first zero block, as in GNU tar and libarchive, and
  whatever follows it is trailer. Go's archive/tar instead rejects a zero
  block followed by a block that is not zero.
- The stream may end right after the last entry's data, before its padding,
  as Go's archive/tar allows. Part of the padding alone is an error.
- GNU sparse records are read from the entry's own ``x`` header only.
- At most 1024 global PAX records stay in force, since every later entry
  carries a copy of them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from ..errors import InvalidArgumentError
from .buffer import BufferedStream, ReadableStream
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
    verify_checksum,
)
from .pax import apply_records, merge_records, parse_records, update_globals
from .sparse import (
    check_regions,
    has_sparse_records,
    parse_sparse_records,
    read_old_sparse,
    read_sparse_map,
)

__all__ = ["ReadableStream", "TarReader"]

logger = logging.getLogger(__name__)

_MAX_GLOBAL_RECORDS = 1024
# A decoded PAX record takes about 100 bytes of memory (a tuple and two bytes
# objects) for as little as 5 bytes of input. So an extended header may
# contain at most max_header_bytes / 64 records: 262144 at the default limit.
_RECORD_MEMORY = 64
_MAX_NAME_IN_MESSAGE = 200

_TYPEFLAG = slice(156, 157)
_SIZE = slice(124, 136)
_MAGIC = slice(257, 265)
_PAX_LOCAL = frozenset((b"x", b"X"))  # X is Solaris's name for x
_PAX_GLOBAL = b"g"
_LONG_NAME = b"L"
_LONG_LINK = b"K"
_SKIPPED = frozenset((b"V", b"M", b"N"))
_EXTENSIONS = _PAX_LOCAL | {_PAX_GLOBAL, _LONG_NAME, _LONG_LINK} | _SKIPPED
_OLD_SPARSE = b"S"
_OLD_REGULAR = b"\0"
# Typeflags whose header is followed by more blocks of the raw header.
_NEEDS_RAW_HEADER = _EXTENSIONS | {_OLD_SPARSE}


class _RawHeader:
    """The raw header of the entry being read, and the extension records in it.

    Its size may not pass ``limit``: every read checks that first.
    """

    __slots__ = (
        "_limit",
        "_stream",
        "local",
        "long_link",
        "long_name",
        "parts",
        "size",
    )

    def __init__(self, stream: BufferedStream, limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self.local: list[tuple[bytes, bytes]] | None = None
        self.long_name: bytes | None = None
        self.long_link: bytes | None = None

    @property
    def offset(self) -> int:
        return self._stream.offset

    def add(self, data: bytes) -> None:
        self.parts.append(data)
        self.size += len(data)

    def check_budget(self, size: int) -> None:
        if self.size + size > self._limit:
            raise TarFormatError(
                f"headers of one entry exceed the limit of {self._limit} bytes"
            )

    def read(self, size: int, part: str) -> bytes:
        self.check_budget(size)
        offset = self._stream.offset
        data = self._stream.take(size)
        if len(data) < size:
            raise TarFormatError(
                f"stream ends inside the {part}, after {len(data)} of {size} bytes",
                offset,
            )
        self.add(data)
        return data

    def expects_entry(self) -> bool:
        return (
            self.local is not None
            or self.long_name is not None
            or self.long_link is not None
        )


class TarReader:
    """Read the entries of an uncompressed tar stream, keeping every byte.

    Iterating yields one :class:`TarEntry` per file system object, with the
    extension records folded into the entry they describe. While an entry is
    current, :meth:`read_data` and :meth:`readinto_data` return its data, and
    moving to the next entry skips what was not read. When iteration ends,
    :attr:`trailer` contains the bytes after the last entry's data.

    The stream is read once, front to back, in pieces of at most 16 MiB, and
    is never closed here. Every malformed input raises
    :class:`~ipcs_fs.errors.InvalidArgumentError` naming ``source``, the byte
    offset and the entry. After an error, every call raises it again. Raw
    headers are held in memory, so an entry's raw header (and the trailer) may
    not exceed ``max_header_bytes``, nor a sparse map ``max_sparse_regions``
    regions (about 130 bytes of memory each).

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
        self._stream = BufferedStream(stream)
        self._source = source
        self._max_header_bytes = max_header_bytes
        self._max_sparse_regions = max_sparse_regions
        self._max_records = max_header_bytes // _RECORD_MEMORY
        self._globals: dict[bytes, bytes] = {}
        self._current: TarEntry | None = None
        self._remaining = 0
        self._padding = 0
        self._done = False
        self._failure: Exception | None = None
        # For error messages: the header block being decoded, and its name.
        self._block_offset = 0
        self._name: bytes | None = None
        self.trailer: bytes | None = None
        """Bytes after the last entry's data, or None until iteration ends."""

    @property
    def offset(self) -> int:
        """Bytes of the tar stream consumed so far."""
        return self._stream.offset

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
            data = self._stream.take(size)
        except Exception as error:
            self._failure = error
            raise
        self._remaining -= len(data)
        if len(data) < size:
            self._failure = self._truncated_data()
            raise self._failure
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
            count = self._stream.read_into(view[:size])
        except Exception as error:
            self._failure = error
            raise
        self._remaining -= count
        if count < size:
            self._failure = self._truncated_data()
            raise self._failure
        return count

    def copy_data(self, fd: int, offset: int, size: int) -> int:
        """Write the current entry's next data bytes into file ``fd`` at ``offset``.

        Copies ``min(size, remaining)`` bytes and returns that count; a tar
        stream that is a plain regular file sends large runs with
        ``sendfile``, so they never pass through Python. ``fd``'s file
        position is left anywhere. Raises like :meth:`read_data`, and
        OSError when writing fails.
        """
        if self._failure is not None:
            raise self._failure
        size = min(size, self._remaining)
        if size <= 0:
            return 0
        try:
            count = self._stream.copy_to(fd, offset, size)
        except Exception as error:
            self._failure = error
            raise
        self._remaining -= count
        if count < size:
            self._failure = self._truncated_data()
            raise self._failure
        return count

    # Entry assembly

    def _advance(self) -> TarEntry | None:
        if self._remaining:
            skipped = self._stream.skip(self._remaining)
            self._remaining -= skipped
            if self._remaining:
                raise self._truncated_data()
        self._current = None
        self._name = None
        try:
            entry = self._read_entry()
        except TarFormatError as error:
            offset = self._block_offset if error.offset is None else error.offset
            raise self._invalid(str(error), offset, "header") from None
        self._current = entry
        if entry is not None:
            self._remaining = entry.data_size
            self._padding = padding_after(entry.data_size)
        return entry

    def _read_entry(self) -> TarEntry | None:
        start = self._stream.offset
        # The previous entry's padding and this header block come in one
        # piece, so the raw header of a plain entry is a single bytes object.
        padding = self._padding
        self._padding = 0
        self._block_offset = start
        chunk = self._stream.take(padding + BLOCK_SIZE)
        # A stream may end right after the last entry's data, without its
        # padding: Go's archive/tar takes that as the end of the archive.
        if 0 < len(chunk) < padding:
            raise TarFormatError(
                f"stream ends inside the padding, after {len(chunk)} of {padding} bytes"
            )
        block = chunk[padding:] if padding else chunk
        self._block_offset = start + padding
        if len(block) == BLOCK_SIZE and block != ZERO_BLOCK:
            verify_checksum(block)
            if block[_TYPEFLAG] not in _NEEDS_RAW_HEADER:
                # Most entries have no extension record: skip the bookkeeping.
                return self._build_entry(None, block, start, chunk)
        raw = _RawHeader(self._stream, self._max_header_bytes)
        raw.add(chunk)
        # The loop checks the first block's checksum again, which is cheap
        # next to reading the extension records that follow it.
        while len(block) == BLOCK_SIZE and block != ZERO_BLOCK:
            verify_checksum(block)
            typeflag = block[_TYPEFLAG]
            if typeflag not in _EXTENSIONS:
                return self._build_entry(raw, block, start, b"")
            self._read_extension(raw, block, typeflag)
            self._block_offset = self._stream.offset
            block = self._stream.take(BLOCK_SIZE)
            raw.add(block)
        self._finish(raw, block)
        return None

    def _finish(self, raw: _RawHeader, block: bytes) -> None:
        if block and len(block) < BLOCK_SIZE:
            raise TarFormatError(
                f"stream ends inside a header block, after {len(block)} of"
                f" {BLOCK_SIZE} bytes"
            )
        if raw.expects_entry():
            raise TarFormatError(
                "extended header or long name is not followed by an entry"
            )
        limit = self._max_header_bytes - raw.size
        rest = self._stream.take(limit + 1)
        if len(rest) > limit:
            raise TarFormatError(
                "the end-of-archive blocks and the bytes after them exceed the"
                f" limit of {self._max_header_bytes} bytes"
            )
        raw.add(rest)
        self.trailer = b"".join(raw.parts)

    def _read_extension(self, raw: _RawHeader, block: bytes, typeflag: bytes) -> None:
        size = parse_number(block[_SIZE], "size")
        padded = size + padding_after(size)
        # The budget covers the body and the header block that must follow.
        raw.check_budget(padded + BLOCK_SIZE)
        body = raw.read(padded, "extended header")
        if typeflag in _PAX_LOCAL:
            if raw.local is not None:
                raise TarFormatError("second PAX extended header for one entry")
            raw.local = parse_records(body, size, self._max_records)
        elif typeflag == _PAX_GLOBAL:
            records = parse_records(body, size, self._max_records)
            update_globals(self._globals, records)
            if len(self._globals) > _MAX_GLOBAL_RECORDS:
                raise TarFormatError(
                    f"more than {_MAX_GLOBAL_RECORDS} global PAX records in force"
                )
        elif typeflag == _LONG_NAME:
            if raw.long_name is not None:
                raise TarFormatError("second GNU long name for one entry")
            raw.long_name = body[:size].partition(b"\0")[0]
        elif typeflag == _LONG_LINK:
            if raw.long_link is not None:
                raise TarFormatError("second GNU long link for one entry")
            raw.long_link = body[:size].partition(b"\0")[0]
        else:
            logger.debug(
                "skipped GNU %r header at offset %d in %s",
                typeflag,
                self._block_offset,
                self._source,
            )

    def _build_entry(
        self, raw: _RawHeader | None, block: bytes, start: int, chunk: bytes
    ) -> TarEntry:
        """Decode the entry whose header block is ``block``.

        ``raw`` holds the extension records read before it. It is None when
        there were none and the entry needs no more blocks (not an old GNU
        sparse file), and then ``chunk`` is the whole raw header.
        """
        try:
            entry = decode_header(block)
        except TarFormatError:
            long_name = raw.long_name if raw is not None else None
            self._name = long_name or block[:100].partition(b"\0")[0]
            raise
        self._name = entry.name
        if raw is not None:
            self._apply_extensions(raw, entry)
        elif self._globals:
            apply_records(entry, merge_records(self._globals, []))
        self._name = entry.name
        if entry.typeflag == _OLD_REGULAR and entry.name.endswith(b"/"):
            entry.kind = EntryKind.DIR
            entry.data_size = 0
        if raw is None:
            entry.raw_header = chunk
        else:
            if entry.typeflag == _OLD_SPARSE:
                self._apply_old_sparse(raw, entry, block)
            elif raw.local:
                self._apply_pax_sparse(raw, entry)
            parts = raw.parts
            entry.raw_header = parts[0] if len(parts) == 1 else b"".join(parts)
        entry.offset = start
        return entry

    def _apply_extensions(self, raw: _RawHeader, entry: TarEntry) -> None:
        """Apply the PAX records in force and GNU long names to ``entry``."""
        if raw.local or self._globals:
            apply_records(entry, merge_records(self._globals, raw.local or []))
        # An empty long name or link leaves the header's own, as in Go.
        if raw.long_name:
            entry.name = raw.long_name
        if raw.long_link:
            entry.linkname = raw.long_link

    def _apply_old_sparse(self, raw: _RawHeader, entry: TarEntry, block: bytes) -> None:
        if raw.local and has_sparse_records(raw.local):
            raise TarFormatError("entry has both an old GNU and a PAX sparse map")
        if block[_MAGIC] != GNU_MAGIC:
            raise TarFormatError("old GNU sparse header without the GNU magic")
        regions, real_size = read_old_sparse(block, raw, self._max_sparse_regions)
        entry.sparse = check_regions(regions, real_size, entry.data_size)
        entry.size = real_size

    def _apply_pax_sparse(self, raw: _RawHeader, entry: TarEntry) -> None:
        assert raw.local is not None
        info = parse_sparse_records(raw.local, self._max_sparse_regions)
        if info is None:
            return
        if entry.typeflag[0] in HEADER_ONLY_TYPEFLAGS or (
            entry.kind is EntryKind.DIR and entry.typeflag == _OLD_REGULAR
        ):
            raise TarFormatError("GNU sparse records on an entry without data")
        if info.name:
            entry.name = info.name
            self._name = entry.name
        regions = info.regions
        if regions is None:
            regions, map_size = read_sparse_map(
                raw, entry.data_size, self._max_sparse_regions
            )
            entry.data_size -= map_size
        entry.sparse = check_regions(regions, info.real_size, entry.data_size)
        entry.size = info.real_size

    # Errors

    def _invalid(self, rule: str, offset: int, part: str) -> InvalidArgumentError:
        where = f" in {self._source}" if self._source else ""
        entry = ""
        if self._name is not None:
            name = self._name.decode("utf-8", "backslashreplace")
            if len(name) > _MAX_NAME_IN_MESSAGE:
                name = name[:_MAX_NAME_IN_MESSAGE] + "..."
            entry = f" for {name!r}"
        return InvalidArgumentError(
            f"invalid tar {part}{entry} at offset {offset}{where}: {rule}"
        )

    def _truncated_data(self) -> InvalidArgumentError:
        assert self._current is not None
        self._name = self._current.name
        data_start = self._current.offset + len(self._current.raw_header)
        return self._invalid(
            f"stream ends inside the entry's {self._current.data_size} bytes of"
            f" data, which start at offset {data_start}",
            self._stream.offset,
            "data",
        )
