"""Behaviour that every BlockStore must share, run against each implementation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ipcs_fs.errors import FailedPreconditionError, NotFoundError
from ipcs_fs.ids import DAG_PB, RAW, Cid
from ipcs_fs.store import (
    BlockStore,
    EmbeddedStore,
    MemoryStore,
    StoreStat,
    verified,
)

HELLO = b"hello world"
HELLO_CID = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
EMPTY_CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"

StoreFactory = Callable[[Path], BlockStore]

FACTORIES: dict[str, StoreFactory] = {
    "memory": lambda path: MemoryStore(),
    "embedded": lambda path: EmbeddedStore(path / "store"),
    "verified-memory": lambda path: verified(MemoryStore()),
    "verified-embedded": lambda path: verified(EmbeddedStore(path / "store")),
}


@pytest.fixture(params=sorted(FACTORIES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlockStore]:
    with FACTORIES[request.param](tmp_path) as opened:
        yield opened


def raw_block(index: int, size: int = 1024) -> tuple[Cid, bytes]:
    block = (index.to_bytes(8, "big") * (size // 8 + 1))[:size]
    return Cid.for_block(RAW, block), block


def test_put_get_round_trip(store: BlockStore) -> None:
    cid = Cid.for_block(RAW, HELLO)
    store.put(cid, HELLO)

    assert str(cid) == HELLO_CID
    assert store.get(cid) == HELLO
    assert store.has(cid)


def test_empty_block_round_trip(store: BlockStore) -> None:
    cid = Cid.for_block(RAW, b"")
    store.put(cid, b"")

    assert str(cid) == EMPTY_CID
    assert store.get(cid) == b""
    assert store.stat() == StoreStat(blocks=1, bytes=0)


@pytest.mark.parametrize("size", [64 * 1024, 64 * 1024 + 1, 256 * 1024, 1024 * 1024])
def test_large_block_round_trip(store: BlockStore, size: int) -> None:
    cid, block = raw_block(size, size)
    store.put(cid, block)

    assert store.get(cid) == block
    assert store.stat() == StoreStat(blocks=1, bytes=size)


def test_codec_is_part_of_key(store: BlockStore) -> None:
    as_raw = Cid.for_block(RAW, HELLO)
    as_dag_pb = Cid.for_block(DAG_PB, HELLO)
    store.put(as_raw, HELLO)

    assert store.has(as_raw)
    assert not store.has(as_dag_pb)


def test_get_missing_names_cid(store: BlockStore) -> None:
    cid = Cid.for_block(RAW, HELLO)

    with pytest.raises(NotFoundError, match=f"failed to get block {cid}: not found"):
        store.get(cid)
    assert not store.has(cid)


def test_put_is_idempotent(store: BlockStore) -> None:
    cid = Cid.for_block(RAW, HELLO)
    store.put(cid, HELLO)
    store.put(cid, HELLO)
    store.put_many([(cid, HELLO), (cid, HELLO)])

    assert store.stat() == StoreStat(blocks=1, bytes=11)
    assert list(store.cids()) == [cid]


def test_put_copies_bytearray(store: BlockStore) -> None:
    buffer = bytearray(HELLO)
    cid = Cid.for_block(RAW, bytes(buffer))
    store.put(cid, buffer)  # type: ignore[arg-type]
    buffer[:] = b"overwritten"

    assert store.get(cid) == HELLO


def test_put_many_and_cids(store: BlockStore) -> None:
    blocks = [raw_block(index, 100) for index in range(2500)]
    store.put_many(iter(blocks))

    assert sorted(store.cids()) == sorted(cid for cid, _ in blocks)
    assert store.stat() == StoreStat(blocks=2500, bytes=250000)


def test_get_many_keeps_order_and_duplicates(store: BlockStore) -> None:
    blocks = [raw_block(index) for index in range(5)]
    store.put_many(blocks)
    wanted = [blocks[3][0], blocks[0][0], blocks[3][0], blocks[4][0]]

    pairs = list(store.get_many(wanted))

    assert [cid for cid, _ in pairs] == wanted
    assert [block for _, block in pairs] == [blocks[i][1] for i in (3, 0, 3, 4)]


def test_get_many_stops_at_missing(store: BlockStore) -> None:
    present, block = raw_block(1)
    missing, _ = raw_block(2)
    store.put(present, block)
    pairs = store.get_many([present, missing, present])

    assert next(pairs) == (present, block)
    with pytest.raises(NotFoundError, match=str(missing)):
        next(pairs)


def test_pin_unpin(store: BlockStore) -> None:
    first, first_block = raw_block(1)
    second, second_block = raw_block(2)
    store.put_many([(first, first_block), (second, second_block)])

    store.pin(first)
    store.pin(first)
    store.pin(second)
    assert sorted(store.pins()) == sorted([first, second])

    store.unpin(first)
    store.unpin(first)
    assert list(store.pins()) == [second]


def test_pin_missing_block(store: BlockStore) -> None:
    cid, _ = raw_block(1)

    with pytest.raises(NotFoundError, match=f"failed to pin {cid}: block not found"):
        store.pin(cid)
    assert list(store.pins()) == []


def test_delete_counts_present(store: BlockStore) -> None:
    blocks = [raw_block(index) for index in range(3)]
    missing, _ = raw_block(99)
    store.put_many(blocks)

    removed = store.delete([blocks[0][0], blocks[0][0], blocks[1][0], missing])

    assert removed == 2
    assert list(store.cids()) == [blocks[2][0]]
    assert store.stat() == StoreStat(blocks=1, bytes=1024)
    assert not store.has(blocks[0][0])


def test_delete_pinned_removes_nothing(store: BlockStore) -> None:
    blocks = [raw_block(index) for index in range(3)]
    store.put_many(blocks)
    pinned = blocks[1][0]
    store.pin(pinned)

    with pytest.raises(FailedPreconditionError, match=f"{pinned}: it is pinned"):
        store.delete(cid for cid, _ in blocks)
    assert store.stat() == StoreStat(blocks=3, bytes=3072)

    store.unpin(pinned)
    assert store.delete(cid for cid, _ in blocks) == 3
    assert store.stat() == StoreStat(blocks=0, bytes=0)


def test_batch_commits_at_exit(store: BlockStore) -> None:
    blocks = [raw_block(index) for index in range(10)]
    with store.batch(max_blocks=4) as batch:
        for cid, block in blocks:
            batch.put(cid, block)
        assert batch.committed == 8
        assert batch.pending == 2

    assert batch.committed == 10
    assert store.stat() == StoreStat(blocks=10, bytes=10240)


def test_batch_error_keeps_committed(store: BlockStore) -> None:
    blocks = [raw_block(index) for index in range(5)]
    with pytest.raises(RuntimeError, match="stop"), store.batch(max_blocks=2) as batch:
        for cid, block in blocks:
            batch.put(cid, block)
        raise RuntimeError("stop")

    assert sorted(store.cids()) == sorted(cid for cid, _ in blocks[:4])


def test_closed_store_rejects_use(tmp_path: Path) -> None:
    for name, factory in FACTORIES.items():
        store = factory(tmp_path / name)
        store.close()
        store.close()

        with pytest.raises(FailedPreconditionError, match="closed"):
            store.get(Cid.for_block(RAW, HELLO))
