"""The DAG walk behind CAR export and gc: depth first, each block once."""

from __future__ import annotations

import pytest

from ipcs_fs.errors import InvalidArgumentError, NotFoundError
from ipcs_fs.ids import DAG_PB, RAW, Cid
from ipcs_fs.store import MemoryStore
from ipcs_fs.store.walk import iter_dag_blocks, iter_dag_cids
from ipcs_fs.unixfs import Link, encode_node


def leaf(store: MemoryStore, data: bytes) -> Cid:
    cid = Cid.for_block(RAW, data)
    store.put(cid, data)
    return cid


def node(store: MemoryStore, *children: Cid, data: bytes = b"") -> Cid:
    block = encode_node([Link(child, b"", 1) for child in children], data)
    cid = Cid.for_block(DAG_PB, block)
    store.put(cid, block)
    return cid


@pytest.fixture
def dag() -> tuple[MemoryStore, dict[str, Cid]]:
    r"""Two roots sharing subtree ``s``::

    r1 -> a -> (x, s -> (y, z)), b -> (s, x)
    r2 -> s, w
    """
    store = MemoryStore()
    x, y, z, w = (leaf(store, name) for name in (b"x", b"y", b"z", b"w"))
    s = node(store, y, z, data=b"s")
    a = node(store, x, s, data=b"a")
    b = node(store, s, x, data=b"b")
    r1 = node(store, a, b, data=b"r1")
    r2 = node(store, s, w, data=b"r2")
    names = {"x": x, "y": y, "z": z, "w": w, "s": s, "a": a, "b": b, "r1": r1, "r2": r2}
    return store, names


def names_of(cids: list[Cid], names: dict[str, Cid]) -> list[str]:
    by_cid = {cid: name for name, cid in names.items()}
    return [by_cid[cid] for cid in cids]


def test_depth_first_order_each_block_once(dag) -> None:
    store, names = dag

    walked = [cid for cid, _ in iter_dag_blocks(store.get, [names["r1"]])]

    assert names_of(walked, names) == ["r1", "a", "x", "s", "y", "z", "b"]


def test_blocks_come_with_their_bytes(dag) -> None:
    store, names = dag

    for cid, block in iter_dag_blocks(store.get, [names["r2"]]):
        assert block == store.get(cid)


def test_second_root_skips_what_the_first_had(dag) -> None:
    store, names = dag

    walked = [cid for cid, _ in iter_dag_blocks(store.get, [names["r1"], names["r2"]])]

    assert names_of(walked, names) == ["r1", "a", "x", "s", "y", "z", "b", "r2", "w"]


def test_shared_seen_set_across_walks(dag) -> None:
    store, names = dag
    seen: set[Cid] = set()

    list(iter_dag_cids(store.get, [names["a"]], seen=seen))
    second = list(iter_dag_cids(store.get, [names["r2"]], seen=seen))

    assert names_of(second, names) == ["r2", "w"]
    assert len(seen) == 7


def test_cids_walk_reads_nodes_only(dag) -> None:
    store, names = dag
    read: list[Cid] = []

    def get(cid: Cid) -> bytes:
        read.append(cid)
        return store.get(cid)

    walked = list(iter_dag_cids(get, [names["r1"]]))

    assert names_of(walked, names) == ["r1", "a", "x", "s", "y", "z", "b"]
    assert names_of(read, names) == ["r1", "a", "s", "b"]


def test_cids_walk_needs_no_leaf(dag) -> None:
    store, names = dag
    store.delete([names["x"]])

    walked = list(iter_dag_cids(store.get, [names["a"]]))

    assert names_of(walked, names) == ["a", "x", "s", "y", "z"]


def test_missing_node_raises_not_found(dag) -> None:
    store, names = dag
    store.delete([names["s"]])

    with pytest.raises(NotFoundError) as caught:
        list(iter_dag_cids(store.get, [names["r1"]]))

    assert str(names["s"]) in str(caught.value)


def test_undecodable_node_names_its_cid() -> None:
    store = MemoryStore()
    bad = Cid.for_block(DAG_PB, b"\xff\xff")
    store.put(bad, b"\xff\xff")

    with pytest.raises(InvalidArgumentError) as caught:
        list(iter_dag_blocks(store.get, [bad]))

    assert str(caught.value).startswith(f"failed to read links of node {bad}: ")
