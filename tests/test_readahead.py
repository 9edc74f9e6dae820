"""ReadAhead returns the stream's bytes in order and raises its errors."""

from __future__ import annotations

import io
import os

import pytest

from ipcs_fs.errors import InvalidArgumentError
from ipcs_fs.readahead import ReadAhead


def test_bytes_in_order_with_mixed_reads() -> None:
    data = os.urandom(3 * 4096 + 17)
    with ReadAhead(io.BytesIO(data), piece_size=4096, depth=2) as stream:
        buffer = bytearray(1000)
        first = stream.readinto(buffer)
        rest = stream.read(5000) + stream.read()
    assert bytes(buffer[:first]) + rest == data
    assert stream.read(10) == b""


class _FailingStream(io.RawIOBase):
    def __init__(self) -> None:
        self.calls = 0

    def read(self, size: int = -1) -> bytes:
        self.calls += 1
        if self.calls > 2:
            raise InvalidArgumentError("invalid gzip data at offset 8192")
        return b"x" * size


def test_error_raised_where_it_happened() -> None:
    with ReadAhead(_FailingStream(), piece_size=4096) as stream:
        assert stream.read(8192) == b"x" * 4096
        assert stream.read(8192) == b"x" * 4096
        with pytest.raises(InvalidArgumentError, match="offset 8192"):
            stream.read(1)


def test_close_before_the_end_stops_the_thread() -> None:
    stream = ReadAhead(io.BytesIO(bytes(10 << 20)), piece_size=4096, depth=2)
    assert stream.read(10) == bytes(10)
    stream.close()
    assert not stream._thread.is_alive()


class _PieceStream(io.RawIOBase):
    """Returns fixed bytes objects and remembers them."""

    def __init__(self, count: int, size: int) -> None:
        self.pieces = [bytes([index]) * size for index in range(count)]
        self._next = iter(self.pieces)

    def read(self, size: int = -1) -> bytes:
        return next(self._next, b"")


def test_whole_piece_returned_without_copy() -> None:
    source = _PieceStream(3, 4096)
    with ReadAhead(source, piece_size=4096) as stream:
        whole = stream.read(10_000)
        head = stream.read(100)
        tail = stream.read(10_000)

    assert whole is source.pieces[0]
    assert head == source.pieces[1][:100]
    assert tail == source.pieces[1][100:]
