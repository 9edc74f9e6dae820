"""Buffered, forward-only access to a byte stream, for the tar reader.

The stream is anything with ``read(n) -> bytes`` (a file, a decompressor, a
socket wrapper), where ``b""`` means its end. Its ``readinto`` is used when it
has one. Reads from the stream are at least 1 MiB (128 KiB from a regular
file), so a tar of small files costs one call per many entries, and at most
16 MiB, whatever a caller requests. Every method returns fewer bytes than
requested only at the end of the stream, and the caller decides whether that
is an error.

When the stream is a plain regular file (``open(path, "rb")``),
:meth:`BufferedStream.copy_to` moves large runs of bytes into another file
with ``sendfile``, inside the kernel, and then seeks the stream past them.
On the Debian base layer that took a tenth off the apply engine's CPU time.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from typing import Protocol

__all__ = ["BufferedStream", "ReadableStream"]

_READ_SIZE = 1 << 20
_FILE_READ_SIZE = 128 << 10
# Reads of at least this much go straight into the caller's buffer, which
# saves a copy for the 256 KiB chunks that UnixFS files are cut into.
_DIRECT_READ = 64 << 10
# python-zstandard's stream reader allocates the whole request up front (seen
# with zstandard 0.25), so no single call on the stream requests more.
_MAX_READ = 16 << 20
# Shorter runs are copied through the buffer: each sendfile run costs three
# system calls (two seeks and the sendfile) where a short copy costs one.
_SENDFILE_MIN = 64 << 10
# sendfile errors that mean "not between these two files" rather than a
# failed write: the copy then goes through the buffer instead.
_SENDFILE_UNSUPPORTED = frozenset((errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP))


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
        self._file = _plain_file(stream)
        # A regular file costs one cheap syscall per read, and a smaller read
        # pulls less of a large file's data through the buffer that sendfile
        # would have moved in the kernel.
        self._read_size = _FILE_READ_SIZE if self._file is not None else _READ_SIZE
        self._file_start = stream.tell() if self._file is not None else 0  # type: ignore[attr-defined]

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
            chunk = self._stream.read(min(max(missing, self._read_size), _MAX_READ))
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
        scratch = self._scratch_view()
        while skipped < size:
            piece = scratch[: min(size - skipped, _READ_SIZE)]
            if self._readinto is not None:
                count = self._readinto(piece) or 0
            else:
                count = len(self._stream.read(len(piece)))
            if not count:
                break
            self._stream_offset += count
            skipped += count
        return skipped

    def copy_to(self, fd: int, offset: int, size: int) -> int:
        """Write the next ``size`` bytes into the file ``fd`` at ``offset``.

        Returns how many bytes were copied, fewer than ``size`` only at the
        end of the stream. Leaves ``fd``'s file position anywhere.
        """
        done = self._write_buffered(fd, offset, size)
        if self._file is not None and size - done >= _SENDFILE_MIN:
            done += self._send(fd, offset + done, size - done)
        while done < size:
            piece = self._scratch_view()[: min(size - done, _READ_SIZE)]
            count = self.read_into(piece)
            if not count:
                break
            _pwrite_all(fd, piece[:count], offset + done)
            done += count
        return done

    def _write_buffered(self, fd: int, offset: int, size: int) -> int:
        count = min(len(self._buffer) - self._position, size)
        if count:
            start = self._position
            _pwrite_all(fd, memoryview(self._buffer)[start : start + count], offset)
            self._position += count
        return count

    def _send(self, fd: int, offset: int, size: int) -> int:
        """Copy up to ``size`` bytes from the file, past the buffer, with sendfile.

        Where sendfile cannot copy between the two files, stops using it and
        returns what it copied so far.
        """
        file = self._file
        assert file is not None and self._position == len(self._buffer)
        source = file.fileno()
        position = self._file_start + self._stream_offset
        os.lseek(fd, offset, os.SEEK_SET)
        done = 0
        try:
            while done < size:
                count = os.sendfile(fd, source, position + done, size - done)
                if not count:
                    break
                done += count
        except OSError as error:
            if error.errno not in _SENDFILE_UNSUPPORTED:
                raise
            self._file = None
        finally:
            # sendfile takes the bytes at an explicit offset and leaves the
            # stream where it was, so move it past what was sent.
            file.seek(position + done)
            self._stream_offset += done
        return done

    def _scratch_view(self) -> memoryview:
        if self._scratch is None:
            self._scratch = memoryview(bytearray(_READ_SIZE))
        return self._scratch


def _plain_file(stream: object) -> io.BufferedReader | io.FileIO | None:
    """Return ``stream`` if it reads a regular file's bytes unchanged, else None.

    The exact types only: a decompressor such as ``gzip.GzipFile`` also has a
    ``fileno()``, that of the compressed file.
    """
    if type(stream) is io.BufferedReader and type(stream.raw) is io.FileIO:
        file: io.BufferedReader | io.FileIO = stream
    elif type(stream) is io.FileIO:
        file = stream
    else:
        return None
    try:
        if file.seekable() and stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            return file
    except (OSError, ValueError):
        pass
    return None


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    done = os.pwrite(fd, data, offset)
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)
