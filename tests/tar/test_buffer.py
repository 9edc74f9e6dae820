"""BufferedStream: short reads, large reads, skipping, copying and the offset."""

from __future__ import annotations

import errno
import gzip
import io
import os
from pathlib import Path

import pytest

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


def _copied(stream: BufferedStream, tmp_path: Path, offset: int, size: int) -> bytes:
    """Run copy_to into a fresh file and return the file's content."""
    fd = os.open(tmp_path / "out", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        count = stream.copy_to(fd, offset, size)
        assert count == min(size, len(_DATA) - 100)
        return os.pread(fd, offset + size, 0)
    finally:
        os.close(fd)


def test_copy_to_from_plain_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[int] = []
    real_sendfile = os.sendfile

    def sendfile(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        sent.append(count)
        return real_sendfile(out_fd, in_fd, offset, count)

    monkeypatch.setattr(os, "sendfile", sendfile)
    (tmp_path / "in").write_bytes(_DATA)
    with open(tmp_path / "in", "rb") as source:
        source.read(50)  # the stream need not start at the file's start
        stream = BufferedStream(source)
        stream.take(50)

        written = _copied(stream, tmp_path, 10, 3 << 20)
        after = stream.take(20)

    assert written == bytes(10) + _DATA[100 : 100 + (3 << 20)]
    assert after == _DATA[100 + (3 << 20) : 120 + (3 << 20)]
    assert stream.offset == 70 + (3 << 20)
    assert sum(sent) > 2 << 20


def test_copy_to_stops_at_end(tmp_path: Path) -> None:
    for source in (io.BytesIO(_DATA), _ReadOnly(_DATA, piece=9000)):
        stream = BufferedStream(source)
        stream.take(100)

        written = _copied(stream, tmp_path, 0, len(_DATA))

        assert written == _DATA[100:]
        assert stream.take(1) == b""


def test_copy_to_reads_decompressed_bytes(tmp_path: Path) -> None:
    # GzipFile has a fileno(), that of the compressed file: copy_to must
    # copy what read() returns, never the file's own bytes.
    with gzip.open(tmp_path / "in.gz", "wb") as packed:
        packed.write(_DATA)
    with gzip.open(tmp_path / "in.gz", "rb") as source:
        stream = BufferedStream(source)
        stream.take(100)

        written = _copied(stream, tmp_path, 0, 2 << 20)

    assert written == _DATA[100 : 100 + (2 << 20)]


def test_copy_to_without_sendfile_support(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_sendfile = os.sendfile
    calls: list[int] = []

    def sendfile(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        # The first call copies part of the run, the next one fails as a file
        # system without splice support does.
        calls.append(count)
        if len(calls) > 1:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_sendfile(out_fd, in_fd, offset, min(count, 100_000))

    monkeypatch.setattr(os, "sendfile", sendfile)
    (tmp_path / "in").write_bytes(_DATA)
    with open(tmp_path / "in", "rb") as source:
        stream = BufferedStream(source)
        stream.take(100)

        written = _copied(stream, tmp_path, 0, 3 << 20)
        after = stream.take(10)

    assert written == _DATA[100 : 100 + (3 << 20)]
    assert after == _DATA[100 + (3 << 20) : 110 + (3 << 20)]
    assert len(calls) == 2
