"""Buffered, forward-only access to a byte stream, for the tar reader.

The stream is anything with ``read(n) -> bytes`` (a file, a decompressor, a
socket wrapper), where ``b""`` means its end. Its ``readinto`` is used when it
has one. Reads from the stream are at least 1 MiB, so a tar of small files
costs one call per many entries, and at most 16 MiB, whatever a caller
requests. Every method returns fewer bytes than requested only at the end of
the stream, and the caller decides whether that is an error.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["BufferedStream", "ReadableStream"]

_READ_SIZE = 1 << 20
# Reads of at least this much go straight into the caller's buffer, which
# saves a copy for the 256 KiB chunks that UnixFS files are cut into.
_DIRECT_READ = 64 << 10
# python-zstandard's stream reader allocates the whole request up front (seen
# with zstandard 0.25), so no single call on the stream requests more.
_MAX_READ = 16 << 20


class ReadableStream(Protocol):
    """Anything with ``read(n) -> bytes``, where ``b""`` means end of stream."""

    def read(self, size: int, /) -> bytes: ...


class BufferedStream:
    """A read buffer in front of a :class:`ReadableStream`.

    The stream is read front to back and never closed here.
    """

    def __init__(self, stream: ReadableStream) -> None:
        self._stream = stream
        self._readinto = getattr(stream, "readinto", None)
        self._buffer = b""
        self._position = 0
        self._stream_offset = 0
        self._scratch: memoryview | None = None

    @property
    def offset(self) -> int:
        """Bytes handed out or skipped so far."""
        return self._stream_offset - len(self._buffer) + self._position

    def take(self, size: int) -> bytes:
        """Return the next ``size`` bytes."""
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
                # The excess stays buffered for the headers that follow.
                self._buffer = chunk
                self._position = missing
                parts.append(chunk[:missing])
                break
            parts.append(chunk)
            missing -= len(chunk)
        return b"".join(parts)

    def read_into(self, view: memoryview) -> int:
        """Fill ``view`` with the next bytes; return how many were written."""
        size = len(view)
        filled = min(len(self._buffer) - self._position, size)
        if filled:
            start = self._position
            view[:filled] = memoryview(self._buffer)[start : start + filled]
            self._position += filled
        while filled < size:
            missing = size - filled
            if self._readinto is None or missing < _DIRECT_READ:
                data = self.take(min(missing, _MAX_READ))
                view[filled : filled + len(data)] = data
                count = len(data)
            else:
                count = self._readinto(view[filled : filled + min(missing, _MAX_READ)])
                self._stream_offset += count or 0
            if not count:
                break
            filled += count
        return filled

    def skip(self, size: int) -> int:
        """Discard the next ``size`` bytes; return how many there were."""
        skipped = min(len(self._buffer) - self._position, size)
        self._position += skipped
        if skipped == size:
            return skipped
        if self._scratch is None:
            self._scratch = memoryview(bytearray(_READ_SIZE))
        while skipped < size:
            piece = self._scratch[: min(size - skipped, _READ_SIZE)]
            if self._readinto is not None:
                count = self._readinto(piece) or 0
            else:
                count = len(self._stream.read(len(piece)))
            if not count:
                break
            self._stream_offset += count
            skipped += count
        return skipped
