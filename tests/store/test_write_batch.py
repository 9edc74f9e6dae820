"""WriteBatch thresholds and error handling, with a recording write function."""

from __future__ import annotations

import pytest

from ipcs_fs.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    ResourceExhaustedError,
)
from ipcs_fs.ids import RAW, Cid
from ipcs_fs.store import WriteBatch


class Recorder:
    def __init__(self) -> None:
        self.groups: list[list[tuple[Cid, bytes]]] = []

    def __call__(self, blocks: list[tuple[Cid, bytes]]) -> None:
        self.groups.append(list(blocks))

    def sizes(self) -> list[int]:
        return [len(group) for group in self.groups]


def block(size: int, fill: int = 0) -> tuple[Cid, bytes]:
    data = bytes([fill]) * size
    return Cid.for_block(RAW, data), data


def test_commits_every_max_blocks() -> None:
    recorder = Recorder()
    with WriteBatch(recorder, max_blocks=3, max_bytes=1 << 30) as batch:
        for index in range(7):
            batch.put(*block(10, index))

    assert recorder.sizes() == [3, 3, 1]
    assert batch.committed == 7


def test_commits_at_max_bytes() -> None:
    recorder = Recorder()
    with WriteBatch(recorder, max_blocks=1000, max_bytes=250) as batch:
        for index in range(6):
            batch.put(*block(100, index))
        assert recorder.sizes() == [3, 3]
        assert batch.pending == 0

    assert recorder.sizes() == [3, 3]


def test_block_over_max_bytes_commits_alone() -> None:
    recorder = Recorder()
    with WriteBatch(recorder, max_blocks=1000, max_bytes=50) as batch:
        batch.put(*block(10, 1))
        batch.put(*block(500, 2))
        batch.put(*block(10, 3))

    assert recorder.sizes() == [2, 1]


def test_flush_commits_pending() -> None:
    recorder = Recorder()
    batch = WriteBatch(recorder, max_blocks=100, max_bytes=1 << 30)
    batch.put(*block(10))
    batch.flush()
    batch.flush()

    assert recorder.sizes() == [1]
    assert batch.pending == 0


def test_error_drops_pending_only() -> None:
    recorder = Recorder()
    failure = pytest.raises(ValueError, match="producer failed")
    with failure, WriteBatch(recorder, max_blocks=2, max_bytes=1 << 30) as batch:
        for index in range(3):
            batch.put(*block(10, index))
        raise ValueError("producer failed")

    assert recorder.sizes() == [2]
    assert batch.committed == 2
    assert batch.pending == 0


def test_failed_write_keeps_earlier_groups() -> None:
    recorder = Recorder()

    def write(blocks: list[tuple[Cid, bytes]]) -> None:
        if recorder.groups:
            raise OSError("disk gone")
        recorder(blocks)

    failure = pytest.raises(OSError, match="disk gone")
    with failure, WriteBatch(write, max_blocks=2, max_bytes=1 << 30) as batch:
        for index in range(5):
            batch.put(*block(10, index))

    assert recorder.sizes() == [2]
    assert batch.committed == 2


def test_put_after_exit_rejected() -> None:
    recorder = Recorder()
    with WriteBatch(recorder, max_blocks=2, max_bytes=100) as batch:
        pass
    cid, data = block(10)

    with pytest.raises(FailedPreconditionError, match=f"{cid}: batch is closed"):
        batch.put(cid, data)


@pytest.mark.parametrize("max_blocks, max_bytes", [(0, 100), (10, 0), (-1, -1)])
def test_invalid_limits(max_blocks: int, max_bytes: int) -> None:
    with pytest.raises(InvalidArgumentError, match="invalid write batch limits"):
        WriteBatch(Recorder(), max_blocks=max_blocks, max_bytes=max_bytes)


def test_background_batch_commits_every_group() -> None:
    from ipcs_fs.store import MemoryStore

    store = MemoryStore()
    blocks = [Cid.for_block(RAW, bytes([i])) for i in range(10)]
    with store.batch(max_blocks=3, background=True) as batch:
        for index, cid in enumerate(blocks):
            batch.put(cid, bytes([index]))
    assert batch.committed == 10
    assert all(store.has(cid) for cid in blocks)


def test_background_batch_raises_writer_error() -> None:
    def failing(group):
        raise ResourceExhaustedError("failed to commit blocks: disk full")

    batch = WriteBatch(failing, max_blocks=2, max_bytes=1 << 20, background=True)
    with pytest.raises(ResourceExhaustedError, match="disk full"):
        with batch:
            for index in range(6):
                batch.put(Cid.for_block(RAW, bytes([index])), bytes([index]))
