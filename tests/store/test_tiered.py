"""The tiered store's rules, against a fake kubo store with fake peers."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from ipcs_fs.errors import NotFoundError, UnavailableError
from ipcs_fs.ids import DAG_PB, RAW, Cid
from ipcs_fs.store import MemoryStore, StoreStat
from ipcs_fs.store.tiered import TieredStore
from ipcs_fs.store.walk import iter_dag_blocks
from ipcs_fs.unixfs import Link, encode_node


class FakeKubo(MemoryStore):
    """A kubo store: its own blocks, and peers that can send it more."""

    def __init__(self, peers: MemoryStore) -> None:
        super().__init__()
        self.peers = peers
        self.offline = False
        self.calls: list[tuple[str, Cid]] = []
        self.fail_fetch = False
        self.export_limit: int | None = None
        self.closed = False

    def get_local(self, cid: Cid) -> bytes | None:
        return super().get(cid) if self.has(cid) else None

    def fetch(self, cid: Cid) -> bytes:
        self.calls.append(("fetch", cid))
        if not self.has(cid):
            self.put(cid, self.peers.get(cid))
        return super().get(cid)

    def fetch_dag(self, cid: Cid) -> list[Cid]:
        self.calls.append(("fetch_dag", cid))
        if self.fail_fetch:
            raise UnavailableError(f"failed to fetch the DAG under {cid}: stalled")
        below = []
        for found, block in iter_dag_blocks(self._either, [cid]):
            self.put(found, block)
            below.append(found)
        return below[1:]

    def export_dag(self, cid: Cid) -> Iterator[tuple[Cid, bytes]]:
        self.calls.append(("export_dag", cid))
        for count, pair in enumerate(iter_dag_blocks(super().get, [cid])):
            if count == self.export_limit:
                raise UnavailableError("stream cut")
            yield pair

    def close(self) -> None:
        self.closed = True
        super().close()

    def _either(self, cid: Cid) -> bytes:
        return super().get(cid) if self.has(cid) else self.peers.get(cid)


def leaf(store: MemoryStore, data: bytes) -> Cid:
    cid = Cid.for_block(RAW, data)
    store.put(cid, data)
    return cid


def node(store: MemoryStore, children: list[Cid], data: bytes) -> Cid:
    block = encode_node([Link(child, b"", 1) for child in children], data)
    cid = Cid.for_block(DAG_PB, block)
    store.put(cid, block)
    return cid


@pytest.fixture
def peers() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def kubo(peers: MemoryStore) -> FakeKubo:
    return FakeKubo(peers)


@pytest.fixture
def local() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def tiered(local: MemoryStore, kubo: FakeKubo) -> TieredStore:
    return TieredStore(local, kubo)  # type: ignore[arg-type]


def names(kubo: FakeKubo) -> list[str]:
    return [call for call, _ in kubo.calls]


def test_reads_local_first(tiered, local, kubo) -> None:
    cid = leaf(local, b"here")

    assert tiered.get(cid) == b"here"
    assert kubo.calls == []


def test_copies_a_block_that_kubo_holds(tiered, local, kubo) -> None:
    cid = leaf(kubo, b"in kubo")

    assert tiered.get(cid) == b"in kubo"
    assert local.get(cid) == b"in kubo"
    assert kubo.calls == []


def test_pulls_a_leaf_without_a_dag_fetch(tiered, local, kubo, peers) -> None:
    cid = leaf(peers, b"from a peer")

    assert tiered.get(cid) == b"from a peer"
    assert names(kubo) == ["fetch"]
    assert local.has(cid)


def test_pull_of_a_new_dag_copies_it_whole(tiered, local, kubo, peers) -> None:
    leaves = [leaf(peers, bytes([i])) for i in range(4)]
    inner = node(peers, leaves[:2], b"inner")
    root = node(peers, [inner, *leaves[2:]], b"root")

    assert tiered.get(root) == peers.get(root)

    assert names(kubo) == ["fetch_dag", "export_dag"]
    assert all(local.has(cid) for cid in [root, inner, *leaves])
    kubo.calls.clear()
    for cid in [inner, *leaves]:
        assert tiered.get(cid) == peers.get(cid)
    assert kubo.calls == []


def test_pull_of_known_dag_copies_on_read(tiered, local, kubo, peers) -> None:
    old = [leaf(local, bytes([i])) for i in range(5)]
    for cid in old:
        kubo.put(cid, local.get(cid))
    new = leaf(peers, b"new")
    root = node(peers, [*old, new], b"root")

    tiered.get(root)

    assert names(kubo) == ["fetch_dag"]
    assert not local.has(new)
    assert tiered.get(new) == b"new"
    assert local.has(new)


def test_failed_dag_fetch_falls_back_to_get(tiered, local, kubo, peers, caplog) -> None:
    root = node(peers, [leaf(peers, b"a")], b"root")
    kubo.fail_fetch = True

    with caplog.at_level(logging.WARNING, logger="ipcs_fs.store.tiered"):
        assert tiered.get(root) == peers.get(root)

    assert names(kubo) == ["fetch_dag", "fetch"]
    assert f"failed to fetch the DAG under {root}: stalled" in caplog.text


def test_cut_export_leaves_the_rest_for_reads(
    tiered, local, kubo, peers, caplog
) -> None:
    leaves = [leaf(peers, bytes([i])) for i in range(4)]
    root = node(peers, leaves, b"root")
    kubo.export_limit = 3

    with caplog.at_level(logging.WARNING, logger="ipcs_fs.store.tiered"):
        tiered.get(root)

    assert [local.has(cid) for cid in leaves] == [True, True, False, False]
    assert "stream cut" in caplog.text
    assert tiered.get(leaves[3]) == bytes([3])


def test_missing_everywhere_raises_not_found(tiered) -> None:
    cid = Cid.for_block(RAW, b"nowhere")

    with pytest.raises(NotFoundError) as caught:
        tiered.get(cid)

    assert str(cid) in str(caught.value)


def test_has_checks_both_tiers(tiered, local, kubo) -> None:
    here, there = leaf(local, b"1"), leaf(kubo, b"2")

    assert tiered.has(here)
    assert tiered.has(there)
    assert not tiered.has(Cid.for_block(RAW, b"3"))


def test_writes_go_to_both(tiered, local, kubo) -> None:
    single = Cid.for_block(RAW, b"single")
    tiered.put(single, b"single")
    batched = [Cid.for_block(RAW, bytes([i])) for i in range(10)]
    with tiered.batch(max_blocks=4) as batch:
        for cid in batched:
            batch.put(cid, cid.raw[-1:])

    for cid in [single, *batched]:
        assert local.has(cid)
        assert kubo.has(cid)


def test_pin_copies_the_root_and_pins_both(tiered, local, kubo) -> None:
    root = leaf(kubo, b"root")

    tiered.pin(root)

    assert list(local.pins()) == [root]
    assert list(kubo.pins()) == [root]
    assert list(tiered.pins()) == [root]


def test_unpin_and_pins_union(tiered, local, kubo) -> None:
    first, second = leaf(local, b"1"), leaf(kubo, b"2")
    local.pin(first)
    kubo.pin(second)

    assert sorted(tiered.pins()) == sorted([first, second])
    tiered.unpin(first)
    tiered.unpin(second)
    assert list(tiered.pins()) == []


def test_delete_from_both(tiered, local, kubo) -> None:
    cid = Cid.for_block(RAW, b"gone")
    tiered.put(cid, b"gone")

    assert tiered.delete([cid]) == 1
    assert not local.has(cid)
    assert not kubo.has(cid)


def test_cids_lists_kubo_blocks_once(tiered, local, kubo) -> None:
    both = Cid.for_block(DAG_PB, b"both")
    local.put(both, b"both")
    kubo.put(Cid.for_block(RAW, b"both"), b"both")  # kubo keeps no codec
    only_kubo = leaf(kubo, b"kubo")

    assert sorted(tiered.cids()) == sorted([both, only_kubo])


def test_stat_and_close(tiered, local, kubo) -> None:
    leaf(local, b"12345")

    assert tiered.stat() == StoreStat(blocks=1, bytes=5)
    tiered.close()
    assert kubo.closed
