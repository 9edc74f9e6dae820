"""Decompressing layer blobs to their tar, and gzip-compressing tars.

:func:`open_uncompressed` turns a layer blob into a stream of its uncompressed
tar. The compression is detected from the first bytes of the blob (the
*magic*): ``1f 8b`` is gzip, ``28 b5 2f fd`` or a skippable frame's magic is
zstd, anything else is taken as a plain tar. When the layer's media type
declares another compression, the magic wins and a warning is logged:
containerd decompresses by magic too, and the diff_id that the caller checks
catches any content that is still wrong.

Layers may be cut into parts:

- gzip: several concatenated *members*, each with its own header and trailer.
  Zero bytes between or after members are skipped, as gzip(1) does.
- zstd: several *frames*, with *skippable frames* (magic ``0x184D2A5?``, used
  for metadata such as seekable-format tables) before, between or after them.

A stream that ends inside a member or frame raises InvalidArgumentError, and so
does garbage between parts. python-zstandard does not report a zstd stream that
ends mid-frame, so :class:`~ipcs_fs.oci.zstd_frames.ZstdFrameTracker` follows
the frame and block headers of the compressed bytes to find where frames end.

Gzip members are inflated by ISA-L (the ``isal`` package). On a 2-core Xeon VM
(isal 1.9.1), it took 0.29 s of CPU time to inflate the 194 MiB Debian base
layer, where zlib took 0.66 s. zlib still checks the first four bytes of each
member, so a wrong magic, an unknown method or reserved flags raise the error
that zlib raised before. Errors inside the deflate data and the trailer carry
ISA-L's messages.

:func:`gzip_compress_chunks` and :func:`gzip_compress_stream` write one gzip
member with a fixed header (mtime 0, no file name, OS 255), so the same tar and
level give the same bytes with the same zlib-ng version (the ``zlib-ng``
package). At level 6 on the same layer and VM, zlib-ng took 2.9 s of CPU time
where zlib took 5.5 s, and its output was 0.9 % larger. Compressing in
parallel blocks adds about 0.01 %.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, BinaryIO

import zstandard
from isal import isal_zlib
from zlib_ng import zlib_ng

from ..cpus import available_cpus
from ..errors import InvalidArgumentError
from .blob import READ_SIZE, read_up_to
from .mediatypes import Compression, compression_of
from .zstd_frames import ZstdFrameTracker, is_skippable_frame

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = [
    "GZIP_MAGIC",
    "ZSTD_MAGIC",
    "ZSTD_MAX_WINDOW_SIZE",
    "UncompressedReader",
    "detect_compression",
    "gzip_compress_chunks",
    "gzip_compress_stream",
    "open_uncompressed",
]

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

ZSTD_MAX_WINDOW_SIZE = 1 << 29
"""Largest zstd window accepted: 512 MiB, the default of the Go zstd decoder
(klauspost/compress) that Go container tools use. libzstd's own default is
128 MiB, which rejects layers written with ``zstd --long=28`` or more."""

_GZIP_WBITS = 31  # zlib's window bits for a gzip header and trailer
# Compressed input is fed to zlib in pieces of this size, because zlib copies
# the input it leaves unconsumed on every call. Measured on a 200 MB tar (2-core
# VM, CPython 3.11): 64 KiB pieces took about 10% less CPU time than 1 MiB.
_FEED_SIZE = 64 << 10
# A member's magic (2 bytes), method and flags, which zlib checks before ISA-L
# inflates the member.
_HEADER_CHECK_SIZE = 4
# Compression cuts the tar into blocks of this size, deflated in parallel.
# pigz uses 128 KiB, but larger blocks add fewer sync-flush markers (5 bytes
# each) and fewer dictionary restarts, and 1 MiB still gives every thread work.
_DEFLATE_BLOCK = 1 << 20
_DEFLATE_WINDOW = 32 << 10  # deflate's window: no match reaches back further


class UncompressedReader(io.BufferedReader):
    """A buffered stream of an uncompressed tar.

    ``compression`` is the compression that was detected. Closing the reader
    closes the blob stream it reads from.
    """

    compression: Compression


def detect_compression(prefix: bytes) -> Compression:
    """Return the compression that the first bytes of a blob indicate.

    A zstd stream may start with a skippable frame instead of a data frame.
    """
    if prefix.startswith(GZIP_MAGIC):
        return Compression.GZIP
    if prefix.startswith(ZSTD_MAGIC) or is_skippable_frame(prefix):
        return Compression.ZSTD
    return Compression.NONE


def open_uncompressed(
    stream: BinaryIO,
    media_type: str | None = None,
    *,
    max_window_size: int = ZSTD_MAX_WINDOW_SIZE,
    source: str | None = None,
) -> UncompressedReader:
    """Return a stream of the uncompressed tar in ``stream``.

    The returned reader owns ``stream`` and supports ``read`` and ``readinto``;
    it reads ``stream`` in pieces of 1 MiB. ``media_type``, when given, must be
    a tar layer type (UnimplementedError otherwise) and is only compared with
    the detected compression. Malformed compressed data raises
    InvalidArgumentError when the read that meets it happens, naming the
    layer as ``source`` (such as its digest) when given.
    """
    declared = compression_of(media_type) if media_type else None
    prefix = read_up_to(stream, len(ZSTD_MAGIC))
    detected = detect_compression(prefix)
    if declared is not None and declared is not detected:
        log.warning(
            "layer media type %s declares %s, but the magic bytes say %s;"
            " decompressing as %s",
            media_type,
            declared.value,
            detected.value,
            detected.value,
        )

    blob = _PrefixedReader(prefix, stream)
    raw: _RawReader
    if detected is Compression.GZIP:
        raw = _GzipReader(blob, _layer_name("gzip", source))
    elif detected is Compression.ZSTD:
        raw = _ZstdReader(blob, max_window_size, _layer_name("zstd", source))
    else:
        raw = blob
    reader = UncompressedReader(raw, READ_SIZE)
    reader.compression = detected
    return reader


def _layer_name(compression: str, source: str | None) -> str:
    """Return how error messages name the layer, such as "gzip layer sha256:…"."""
    if source is None:
        return f"{compression} layer"
    return f"{compression} layer {source}"


class _RawReader(io.RawIOBase):
    """Base of the raw streams here: readable, and ``readall`` in large pieces.

    io.RawIOBase's own ``readall`` reads 8 KiB at a time.
    """

    def readable(self) -> bool:
        return True

    def readall(self) -> bytes:
        chunks = []
        while data := self.read(READ_SIZE):
            chunks.append(data)
        return b"".join(chunks)


class _PrefixedReader(_RawReader):
    """``prefix`` followed by the rest of ``stream``."""

    def __init__(self, prefix: bytes, stream: BinaryIO) -> None:
        super().__init__()
        self._prefix = prefix
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        prefix, self._prefix = self._prefix[:size], self._prefix[size:]
        if len(prefix) == size:
            return prefix
        return prefix + self._stream.read(size - len(prefix))

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        readinto = getattr(self._stream, "readinto", None)
        if self._prefix or readinto is None:
            data = self.read(len(view))
            view[: len(data)] = data
            return len(data)
        return readinto(view) or 0

    def close(self) -> None:
        if not self.closed:
            self._stream.close()
        super().close()


class _GzipReader(_RawReader):
    """The decompressed bytes of one or more concatenated gzip members."""

    def __init__(self, source: _PrefixedReader, name: str) -> None:
        super().__init__()
        self._source = source
        self._name = name
        self._decompressor = isal_zlib.decompressobj(_GZIP_WBITS)
        self._input = memoryview(b"")
        self._in_member = False
        self._members = 0
        self._eof = False

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        return self._inflate(size)

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        data = self._inflate(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._source.close()
        super().close()

    def _inflate(self, limit: int) -> bytes:
        """Return up to ``limit`` decompressed bytes, b"" only at the end."""
        while limit > 0 and not self._eof:
            if not self._input and not self._refill():
                break
            if not self._in_member and not self._start_member():
                continue
            piece = self._input[:_FEED_SIZE]
            try:
                data = self._decompressor.decompress(piece, limit)
            except isal_zlib.error as error:
                raise self._error(f"invalid data: {error}") from error
            if self._decompressor.eof:
                self._input = self._input[len(piece) :]
                self._end_member()
            else:
                tail = len(self._decompressor.unconsumed_tail)
                self._input = self._input[len(piece) - tail :]
            if data:
                return data
        return b""

    def _refill(self) -> bool:
        data = self._source.read(READ_SIZE)
        if data:
            self._input = memoryview(data)
            return True
        if self._in_member:
            raise self._error("truncated: the stream ends inside a member")
        self._eof = True
        return False

    def _start_member(self) -> bool:
        """Check the first bytes of a member, False if none remain after padding.

        ISA-L accepts reserved header flags, and waits for a whole header
        before it rejects a wrong magic. So zlib checks the magic, the method
        and the flags first, and a failed check raises zlib's message.
        """
        if self._members and not self._skip_padding():
            return False
        self._gather(_HEADER_CHECK_SIZE)
        try:
            zlib.decompressobj(_GZIP_WBITS).decompress(self._input[:_HEADER_CHECK_SIZE])
        except zlib.error as error:
            raise self._error(f"invalid data: {error}") from error
        self._in_member = True
        return True

    def _gather(self, size: int) -> None:
        """Read until the input contains ``size`` bytes or the blob ends."""
        while len(self._input) < size:
            data = self._source.read(READ_SIZE)
            if not data:
                return
            self._input = memoryview(bytes(self._input) + data)

    def _skip_padding(self) -> bool:
        """Drop zero bytes before a member; tell whether input remains."""
        stripped = bytes(self._input).lstrip(b"\0")
        if len(stripped) < len(self._input):
            log.debug(
                "skipped %d zero bytes after gzip member",
                len(self._input) - len(stripped),
            )
        self._input = memoryview(stripped)
        return bool(stripped)

    def _end_member(self) -> None:
        # At the end of a member, unused_data contains every byte of the piece
        # after the trailer. unconsumed_tail may repeat them (seen with
        # CPython 3.11 after a call that stopped at the output limit), so it
        # is ignored here.
        unused = self._decompressor.unused_data
        if unused:
            self._input = memoryview(unused + bytes(self._input))
        self._decompressor = isal_zlib.decompressobj(_GZIP_WBITS)
        self._in_member = False
        self._members += 1

    def _error(self, reason: str) -> InvalidArgumentError:
        return InvalidArgumentError(
            f"failed to decompress {self._name} at member {self._members + 1}: {reason}"
        )


class _ZstdReader(_RawReader):
    """The decompressed bytes of all zstd frames, skippable frames skipped."""

    def __init__(
        self, source: _PrefixedReader, max_window_size: int, name: str
    ) -> None:
        super().__init__()
        self._name = name
        self._tracker = ZstdFrameTracker()
        self._source = _TrackedSource(source, self._tracker, name)
        decompressor = zstandard.ZstdDecompressor(max_window_size=max_window_size)
        # stream_reader calls only read(); its type stub requires IO[bytes].
        self._reader = decompressor.stream_reader(
            self._source,  # type: ignore[arg-type]
            read_size=READ_SIZE,
            read_across_frames=True,
            closefd=False,
        )

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        try:
            count = self._reader.readinto(buffer)
        except zstandard.ZstdError as error:
            # No frame number: the tracker runs ahead of the decoder by a read.
            raise InvalidArgumentError(
                f"failed to decompress {self._name}: {error}"
            ) from error
        if count == 0:
            self._source.finish()
        return count

    def close(self) -> None:
        if not self.closed:
            self._reader.close()  # type: ignore[no-untyped-call]
            self._source.close()
        super().close()


class _TrackedSource:
    """Passes compressed bytes to the zstd decoder and to a frame tracker."""

    def __init__(
        self, source: _PrefixedReader, tracker: ZstdFrameTracker, name: str
    ) -> None:
        self._source = source
        self._tracker = tracker
        self._name = name

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        try:
            self._tracker.feed(data)
        except InvalidArgumentError as error:
            raise self._named(error) from error
        return data

    def _named(self, error: InvalidArgumentError) -> InvalidArgumentError:
        """Put the layer's name into an error of the frame tracker."""
        # The tracker does not know the layer, and its messages start with
        # this generic prefix.
        generic = "failed to decompress zstd layer: "
        message = str(error)
        if message.startswith(generic):
            message = f"failed to decompress {self._name}: {message[len(generic) :]}"
        return InvalidArgumentError(message)

    def finish(self) -> None:
        """Raise InvalidArgumentError unless the stream ended after a whole frame."""
        if self._source.read(1):
            raise InvalidArgumentError(
                f"failed to decompress {self._name}: data after the last frame"
            )
        if not self._tracker.at_boundary():
            raise InvalidArgumentError(
                f"failed to decompress {self._name}: truncated inside frame"
                f" {self._tracker.frames + 1}"
            )

    def close(self) -> None:
        self._source.close()


def _gzip_header(level: int) -> bytes:
    # RFC 1952: XFL 2 marks maximum compression, 4 the fastest; OS 255 is
    # "unknown", so the bytes do not depend on the platform.
    extra_flags = {9: 2, 1: 4}.get(level, 0)
    return GZIP_MAGIC + struct.pack("<BBIBB", 8, 0, 0, extra_flags, 255)


def gzip_compress_chunks(
    chunks: Iterable[bytes | memoryview], level: int = 6, *, threads: int | None = None
) -> Iterator[bytes]:
    """Yield one gzip member that contains the concatenation of ``chunks``.

    zlib-ng deflates blocks of 1 MiB, ``threads`` blocks at once (by default
    one per CPU that this process may use). Each block starts from the last
    32 KiB of the block before as its dictionary and ends with a sync flush,
    as pigz does. So the output does not depend on ``threads`` or on how the
    input is cut into chunks. The header has mtime 0 and no file name, so the
    bytes depend only on the input, the level and the zlib-ng version.
    """
    yield _gzip_header(level)
    crc = 0
    size = 0
    workers = threads or available_cpus()
    with ThreadPoolExecutor(workers, thread_name_prefix="ipcs-fs-gzip") as pool:
        in_flight: deque[Future[bytes]] = deque()
        dictionary = b""
        for block, last in _deflate_blocks(chunks):
            crc = zlib_ng.crc32(block, crc)
            size += len(block)
            in_flight.append(pool.submit(_deflate, block, dictionary, level, last))
            dictionary = block[-_DEFLATE_WINDOW:]
            # Two blocks per thread keep every thread busy and bound memory.
            while len(in_flight) > 2 * workers or (in_flight and in_flight[0].done()):
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()
    yield struct.pack("<II", crc, size & 0xFFFFFFFF)


def _deflate_blocks(
    chunks: Iterable[bytes | memoryview],
) -> Iterator[tuple[bytes, bool]]:
    """Yield the input in blocks of :data:`_DEFLATE_BLOCK` bytes, each with a flag
    that is true for the last block. An empty input gives one empty block."""
    pending = bytearray()
    previous: bytes | None = None
    for chunk in chunks:
        pending += chunk
        while len(pending) >= _DEFLATE_BLOCK:
            if previous is not None:
                yield previous, False
            previous = bytes(pending[:_DEFLATE_BLOCK])
            del pending[:_DEFLATE_BLOCK]
    if previous is not None:
        yield previous, not pending
    if pending or previous is None:
        yield bytes(pending), True


def _deflate(block: bytes, dictionary: bytes, level: int, last: bool) -> bytes:
    """Deflate ``block`` after ``dictionary``, ending byte-aligned unless ``last``."""
    compressor = zlib_ng.compressobj(
        level, zlib_ng.DEFLATED, -zlib_ng.MAX_WBITS, zdict=dictionary
    )
    mode = zlib_ng.Z_FINISH if last else zlib_ng.Z_SYNC_FLUSH
    return compressor.compress(block) + compressor.flush(mode)


def gzip_compress_stream(src: BinaryIO, dst: BinaryIO, level: int = 6) -> int:
    """Gzip the rest of ``src`` into ``dst``; return the count of bytes written.

    Neither stream is closed.
    """
    written = 0
    chunks = iter(lambda: src.read(READ_SIZE), b"")
    for data in gzip_compress_chunks(chunks, level):
        dst.write(data)
        written += len(data)
    return written
