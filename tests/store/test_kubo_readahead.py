"""The read-ahead that serves a depth-first walk from one export stream."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ipcs_fs.errors import UnavailableError
from ipcs_fs.ids import RAW, Cid
from ipcs_fs.store import _readahead
from ipcs_fs.store._readahead import ReadAhead


def blocks(count: int, size: int = 10) -> list[tuple[Cid, bytes]]:
    made = []
    for index in range(count):
        block = index.to_bytes(4, "big") * (size // 4)
        made.append((Cid.for_block(RAW, block), block))
    return made


class Exports:
    """Streams of a fixed block list, recording which ones start and end."""

    def __init__(self, listed: list[tuple[Cid, bytes]], fail_after: int = -1) -> None:
        self.listed = listed
        self.fail_after = fail_after
        self.started: list[Cid] = []
        self.closed = 0

    def __call__(self, cid: Cid) -> Iterator[tuple[Cid, bytes]]:
        self.started.append(cid)
        start = [found for found, _ in self.listed].index(cid)
        try:
            for count, pair in enumerate(self.listed[start:]):
                if count == self.fail_after:
                    raise UnavailableError("stream cut")
                yield pair
        finally:
            self.closed += 1


def test_walk_in_order_uses_one_stream() -> None:
    listed = blocks(10)
    exports = Exports(listed)
    ahead = ReadAhead(exports)

    ahead.follow(listed[0][0])
    taken = [ahead.take(cid) for cid, _ in listed[1:]]

    assert taken == [block for _, block in listed[1:]]
    assert exports.started == [listed[0][0]]


def test_reads_out_of_order_within_the_window() -> None:
    listed = blocks(10)
    ahead = ReadAhead(Exports(listed))
    ahead.follow(listed[0][0])

    assert ahead.take(listed[5][0]) == listed[5][1]
    assert ahead.take(listed[2][0]) == listed[2][1]
    assert ahead.take(listed[9][0]) == listed[9][1]


def test_block_read_twice_comes_from_elsewhere() -> None:
    listed = blocks(5)
    ahead = ReadAhead(Exports(listed))
    ahead.follow(listed[0][0])

    assert ahead.take(listed[1][0]) == listed[1][1]
    assert ahead.take(listed[1][0]) is None
    assert ahead.active
    assert ahead.take(listed[2][0]) == listed[2][1]


def test_read_past_the_window_drops_the_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_readahead, "WINDOW_BLOCKS", 3)
    listed = blocks(10)
    exports = Exports(listed)
    ahead = ReadAhead(exports)
    ahead.follow(listed[0][0])

    assert ahead.take(listed[8][0]) is None
    assert not ahead.active
    assert exports.closed == 1
    ahead.follow(listed[8][0])
    assert ahead.take(listed[9][0]) == listed[9][1]
    assert exports.started == [listed[0][0], listed[8][0]]


def test_window_bytes_bound_the_search(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_readahead, "WINDOW_BYTES", 25)
    listed = blocks(10, size=12)
    ahead = ReadAhead(Exports(listed))
    ahead.follow(listed[0][0])

    assert ahead.take(listed[4][0]) is None
    assert not ahead.active


def test_window_outlives_the_end_of_its_stream() -> None:
    listed = blocks(4)
    ahead = ReadAhead(Exports(listed))
    ahead.follow(listed[0][0])

    assert ahead.take(Cid.for_block(RAW, b"not in the DAG")) is None
    assert not ahead.active
    assert ahead.take(listed[2][0]) == listed[2][1]


def test_broken_stream_ends_quietly() -> None:
    listed = blocks(6)
    ahead = ReadAhead(Exports(listed, fail_after=3))
    ahead.follow(listed[0][0])

    assert ahead.take(listed[2][0]) == listed[2][1]
    assert ahead.take(listed[4][0]) is None
    assert not ahead.active


def test_follow_keeps_a_running_stream() -> None:
    listed = blocks(6)
    exports = Exports(listed)
    ahead = ReadAhead(exports)

    ahead.follow(listed[0][0])
    ahead.follow(listed[3][0])

    assert exports.started == [listed[0][0]]
    ahead.close()
    assert exports.closed == 1
    assert ahead.take(listed[1][0]) is None
