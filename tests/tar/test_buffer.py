"""BufferedStream: short reads, large reads, skipping and the offset."""

from __future__ import annotations

import io

from ipcs_fs.tar.buffer import BufferedStream


class _ReadOnly:
    """A stream with read() alone, returning at most ``piece`` bytes a call."""

    def __init__(self, data: bytes, piece: int) -> None:
        self._data = io.BytesIO(data)
        self._piece = piece
        self.requests: list[int] = []

    def read(self, size: int) -> bytes:
        self.requests.append(size)
        return self._data.read(min(size, self._piece))


_DATA = bytes(range(256)) * 20_000  # about 5 MiB


def test_take_across_short_reads() -> None:
    stream = BufferedStream(_ReadOnly(_DATA, piece=1000))

    first = stream.take(10)
    second = stream.take(5000)

    assert first == _DATA[:10]
    assert second == _DATA[10:5010]
    assert stream.offset == 5010


def test_take_at_end_returns_rest() -> None:
    stream = BufferedStream(io.BytesIO(b"abc"))

    assert stream.take(2) == b"ab"
    assert stream.take(10) == b"c"
    assert stream.take(10) == b""
    assert stream.offset == 3


def test_reads_are_bounded() -> None:
    source = _ReadOnly(_DATA, piece=len(_DATA))
    stream = BufferedStream(source)

    data = stream.take(len(_DATA))
    stream.take(1)

    assert data == _DATA
    assert min(source.requests) == 1 << 20
    assert max(source.requests) <= 16 << 20


def test_read_into_with_readinto() -> None:
    stream = BufferedStream(io.BytesIO(_DATA))
    head = stream.take(7)
    target = bytearray(3 << 20)

    count = stream.read_into(memoryview(target))

    assert head == _DATA[:7]
    assert count == 3 << 20
    assert bytes(target) == _DATA[7 : 7 + (3 << 20)]
    assert stream.offset == 7 + (3 << 20)


def test_read_into_without_readinto() -> None:
    stream = BufferedStream(_ReadOnly(_DATA, piece=70_000))
    target = bytearray(len(_DATA) + 100)

    count = stream.read_into(memoryview(target))

    assert count == len(_DATA)
    assert bytes(target[:count]) == _DATA


def test_skip_counts_to_end() -> None:
    for source in (io.BytesIO(_DATA), _ReadOnly(_DATA, piece=4096)):
        stream = BufferedStream(source)
        stream.take(100)

        skipped = stream.skip(len(_DATA))

        assert skipped == len(_DATA) - 100
        assert stream.offset == len(_DATA)
        assert stream.take(1) == b""
