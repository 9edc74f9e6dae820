"""The kubo block store against real kubo daemons on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import pytest
from support.kubo import KuboNode

from ipcs_fs.cli import main
from ipcs_fs.errors import (
    DataLossError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from ipcs_fs.ids import DAG_PB, RAW, Cid
from ipcs_fs.store import MemoryStore, StoreStat
from ipcs_fs.store.kubo import EMPTY_BLOCK_CID, KuboStore
from ipcs_fs.unixfs import FileBuilder, FileDag

pytestmark = pytest.mark.integration

CHUNK = 262144


def block_file(node: KuboNode, cid: Cid) -> Path:
    """The flatfs file that holds ``cid``: the multihash in upper-case base32,
    sharded by the two characters before the last."""
    assert node.repo is not None
    key = base64.b32encode(cid.raw[2:]).decode().rstrip("=")
    return node.repo / "blocks" / key[-3:-1] / f"{key}.data"


def build_file(content: bytes) -> tuple[FileDag, MemoryStore]:
    blocks = MemoryStore()
    builder = FileBuilder(blocks.put)
    builder.write(content)
    return builder.finish(), blocks


def put_all(store: KuboStore, blocks: MemoryStore) -> None:
    store.put_many((cid, blocks.get(cid)) for cid in blocks.cids())


def test_put_get_round_trip(kubo_node: KuboNode) -> None:
    dag, blocks = build_file(os.urandom(2 * CHUNK + 5))
    with KuboStore(kubo_node.api_multiaddr) as store:
        put_all(store, blocks)

        for cid in blocks.cids():
            assert store.get(cid) == blocks.get(cid)
            assert kubo_node.run("block", "get", str(cid)).stdout == blocks.get(cid)
    assert dag.cid.codec == DAG_PB
    stat = kubo_node.output("block", "stat", str(dag.cid))
    assert stat.splitlines()[0] == f"Key: {dag.cid}"


def test_put_rejects_a_cid_kubo_does_not_compute(kubo_node: KuboNode) -> None:
    good = Cid.for_block(RAW, b"good")
    claimed = Cid.for_block(RAW, b"claimed")

    with KuboStore(kubo_node.api_multiaddr) as store:
        with pytest.raises(DataLossError) as caught:
            store.put_many([(good, b"good"), (claimed, b"other bytes")])

        # kubo stores none of a request's blocks when one does not match.
        assert not store.has(good)
        assert not store.has(claimed)
    message = str(caught.value)
    assert message.startswith(
        f"failed to put 2 blocks from {good}: kubo at {kubo_node.api_multiaddr}"
        " rejected the blocks: "
    )
    assert f"expected: {claimed}" in message
    assert str(Cid.for_block(RAW, b"other bytes")) in message


def test_offline_missing_block_fails_fast(kubo_node: KuboNode) -> None:
    missing = Cid.for_block(RAW, b"missing")

    with KuboStore(kubo_node.api_multiaddr, offline=True) as store:
        started = time.monotonic()
        with pytest.raises(NotFoundError) as caught:
            store.get(missing)
        elapsed = time.monotonic() - started

    assert str(caught.value) == (
        f"failed to get block {missing}: not in kubo at {kubo_node.api_multiaddr},"
        " and offline mode forbids asking its peers"
    )
    assert elapsed < 2


def test_online_missing_block_times_out(kubo_node: KuboNode) -> None:
    missing = Cid.for_block(RAW, b"missing")

    with KuboStore(kubo_node.api_multiaddr, fetch_timeout=1.5) as store:
        started = time.monotonic()
        with pytest.raises(NotFoundError) as caught:
            store.get(missing)
        elapsed = time.monotonic() - started

    assert str(caught.value) == (
        f"failed to get block {missing}: neither kubo at {kubo_node.api_multiaddr}"
        " nor its peers provided it within 1.5 s"
    )
    assert 1.5 <= elapsed < 10


def test_corrupt_block_on_disk_is_detected(kubo_node: KuboNode) -> None:
    cid = Cid.for_block(RAW, b"intact block")
    with KuboStore(kubo_node.api_multiaddr) as store:
        store.put(cid, b"intact block")
        block_file(kubo_node, cid).write_bytes(b"broken block")

        with pytest.raises(DataLossError) as caught:
            store.get(cid)

    assert str(caught.value).startswith(
        f"failed to read block {cid}: the 12 bytes from kubo at"
        f" {kubo_node.api_multiaddr} do not match its CID"
    )


def test_pin_is_recursive_and_guards_delete(kubo_node: KuboNode) -> None:
    dag, blocks = build_file(os.urandom(3 * CHUNK))
    leaf = next(cid for cid in blocks.cids() if cid.codec == RAW)
    with KuboStore(kubo_node.api_multiaddr) as store:
        put_all(store, blocks)
        store.pin(dag.cid)

        assert dag.cid in set(store.pins())
        listed = kubo_node.output("pin", "ls", "--type=recursive", str(dag.cid))
        assert listed == f"{dag.cid} recursive"
        with pytest.raises(FailedPreconditionError):
            store.delete([dag.cid])
        with pytest.raises(FailedPreconditionError) as caught:
            store.delete([leaf])
        assert str(leaf) in str(caught.value)

        store.unpin(dag.cid)
        store.unpin(dag.cid)
        assert dag.cid not in set(store.pins())
        assert store.delete([dag.cid, leaf, Cid.for_block(RAW, b"absent")]) == 2
        assert not store.has(dag.cid)


def test_offline_pin_names_the_missing_block(kubo_node: KuboNode) -> None:
    dag, blocks = build_file(os.urandom(2 * CHUNK))
    missing = next(cid for cid in blocks.cids() if cid.codec == RAW)
    with KuboStore(kubo_node.api_multiaddr, offline=True) as store:
        store.put_many(
            (cid, blocks.get(cid)) for cid in blocks.cids() if cid != missing
        )

        with pytest.raises(NotFoundError) as caught:
            store.pin(dag.cid)

    assert str(caught.value).startswith(
        f"failed to pin {dag.cid}: kubo at {kubo_node.api_multiaddr} lacks a block"
    )
    assert str(missing) in str(caught.value)


def test_listing_and_stat(kubo_node: KuboNode) -> None:
    dag, blocks = build_file(os.urandom(2 * CHUNK))
    with KuboStore(kubo_node.api_multiaddr) as store:
        before = store.stat()
        put_all(store, blocks)
        after = store.stat()
        listed = set(store.cids())

    assert after.blocks == before.blocks + 3
    assert after.bytes > before.bytes
    # kubo keys blocks by multihash, so the node comes back as raw.
    assert Cid.for_block(RAW, blocks.get(dag.cid)) in listed
    assert {cid for cid in blocks.cids() if cid.codec == RAW} <= listed


def test_peer_fetch_pulls_the_whole_dag(kubo_pair: tuple[KuboNode, KuboNode]) -> None:
    first, second = kubo_pair
    dag, blocks = build_file(os.urandom(5 * CHUNK + 1))
    with (
        KuboStore(first.api_multiaddr) as source,
        KuboStore(second.api_multiaddr, fetch_timeout=20) as store,
    ):
        put_all(source, blocks)

        assert store.get(dag.cid) == blocks.get(dag.cid)
        for cid in blocks.cids():
            assert store.get_local(cid) == blocks.get(cid)


def test_empty_block_needs_no_peer(kubo_pair: tuple[KuboNode, KuboNode]) -> None:
    first, second = kubo_pair
    with (
        KuboStore(first.api_multiaddr) as source,
        KuboStore(second.api_multiaddr, offline=True) as store,
    ):
        source.put(EMPTY_BLOCK_CID, b"")

        assert not store.has(EMPTY_BLOCK_CID)
        assert store.get(EMPTY_BLOCK_CID) == b""


def test_unreachable_api() -> None:
    with pytest.raises(UnavailableError) as caught:
        KuboStore("/ip4/127.0.0.1/tcp/1")

    assert str(caught.value) == (
        "failed to reach kubo: kubo at /ip4/127.0.0.1/tcp/1: cannot connect"
        " (connection refused); is `ipfs daemon` running?"
    )


def test_invalid_api_address() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        KuboStore("127.0.0.1:5001")

    assert str(caught.value) == (
        "invalid kubo API address '127.0.0.1:5001': expected a multiaddr such as"
        " /ip4/127.0.0.1/tcp/5001"
    )


def test_cli_env_selects_kubo_and_gc_collects(
    kubo_node: KuboNode,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ipcs_fs.car import CarWriter

    dag, blocks = build_file(os.urandom(2 * CHUNK))
    path = tmp_path / "file.car"
    with open(path, "wb") as file:
        writer = CarWriter(file, [dag.cid])
        for cid in blocks.cids():
            writer.write(cid, blocks.get(cid))
    monkeypatch.setenv("IPCS_FS_IPFS_API", kubo_node.api_multiaddr)

    assert main(["car", "import", str(path)]) == 0
    assert dag.cid in {Cid.parse(line.split()[0]) for line in _pins(kubo_node)}
    assert main(["rm", str(dag.cid)]) == 0
    capsys.readouterr()
    assert main(["gc", "--json"]) == 0

    summary = json.loads(capsys.readouterr().out)
    assert summary["kubo_blocks_deleted"] >= 3
    with KuboStore(kubo_node.api_multiaddr) as store:
        assert not any(store.has(cid) for cid in blocks.cids())
        assert store.stat() != StoreStat(0, 0)


def _pins(node: KuboNode) -> list[str]:
    return node.output("pin", "ls", "--type=recursive").splitlines()
