"""RebuiltTar as a stream: chunks, the hash thread, the end check and close."""

from __future__ import annotations

import gc
import threading

import pytest

from fixtures import tarwriter as tw
from ipcs_fs.errors import DataLossError
from ipcs_fs.ids import DAG_PB, RAW, Cid, Digest
from ipcs_fs.layer.convert import convert_layer
from ipcs_fs.layer.rebuild import CHUNK_BYTES, LayerRoot, RebuiltTar, read_layer_root
from ipcs_fs.layer.records import LayerHeader, encode_layer_header
from ipcs_fs.store import MemoryStore
from ipcs_fs.unixfs import DataType, UnixfsData, encode_data, encode_node
from tests.layer.streams import BytesStream

# Three files of 1.5 MiB, so the tar spans several chunks.
_TAR = (
    b"".join(
        tw.header(b"f%d" % index, size=3 << 19) + bytes([index]) * (3 << 19)
        for index in range(3)
    )
    + tw.end()
)


def _layer(data: bytes = _TAR) -> tuple[MemoryStore, LayerRoot]:
    store = MemoryStore()
    result = convert_layer(BytesStream(data), store.put, source="test layer")
    return store, read_layer_root(store.get, result.root_cid)


def _forged(store: MemoryStore, good: LayerRoot) -> LayerRoot:
    """The same tar stream under a header that records another diff_id."""
    header = LayerHeader(diff_id=bytes(32), tar_size=good.header.tar_size)
    data = UnixfsData(DataType.DIRECTORY, layer_header=encode_layer_header(header))
    block = encode_node([good.rootfs, good.tar_stream], encode_data(data))
    cid = Cid.for_block(DAG_PB, block)
    store.put(cid, block)
    return read_layer_root(store.get, cid)


def _hash_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "ipcs-fs-diff-id"}


@pytest.mark.parametrize("hash_thread", [True, False])
def test_readinto_returns_original(hash_thread: bool) -> None:
    store, root = _layer()
    stream = RebuiltTar(store.get, root, hash_thread=hash_thread)
    buffer = bytearray(CHUNK_BYTES + 1000)
    pieces = []

    while count := stream.readinto(buffer):
        pieces.append(bytes(buffer[:count]))
    stream.verify()

    assert b"".join(pieces) == _TAR
    assert max(len(piece) for piece in pieces) <= CHUNK_BYTES + 1000
    assert stream.size == len(_TAR)


@pytest.mark.parametrize("hash_thread", [True, False])
def test_wrong_diff_id_raised_at_end_and_after(hash_thread: bool) -> None:
    store, good = _layer()
    stream = RebuiltTar(store.get, _forged(store, good), hash_thread=hash_thread)

    head = stream.read(100)
    with pytest.raises(DataLossError, match="diff_id") as first:
        stream.read()
    with pytest.raises(DataLossError) as again:
        stream.read(1)

    assert head == _TAR[:100]
    assert again.value is first.value


def test_read_after_close_fails() -> None:
    store, root = _layer()
    stream = RebuiltTar(store.get, root)
    stream.read(10)

    stream.close()

    with pytest.raises(DataLossError) as error:
        stream.read(10)
    assert str(error.value) == (
        f"layer {root.cid} tar stream was closed after 10 of {len(_TAR)} bytes"
    )


def test_close_after_end_keeps_result() -> None:
    store, root = _layer()
    stream = RebuiltTar(store.get, root)
    data = stream.read()

    stream.close()

    assert data == _TAR
    assert stream.read(10) == b""


def test_hash_thread_ends_on_close_and_collection() -> None:
    store, root = _layer()
    # Threads of streams that earlier tests dropped may end at any time, so
    # the test follows only the threads its own streams start.
    before = _hash_threads()
    closed = RebuiltTar(store.get, root)
    closed.read(10)
    dropped = RebuiltTar(store.get, root)
    dropped.read(10)
    started = _hash_threads() - before

    closed.close()
    del dropped
    gc.collect()
    for thread in started:
        thread.join(timeout=10)

    assert len(started) == 2
    assert [thread.is_alive() for thread in started] == [False, False]


class _Records:
    """A VerifiedLayers in memory."""

    def __init__(self) -> None:
        self.diff_ids: dict[Cid, Digest] = {}

    def verified_diff_id(self, root: Cid) -> Digest | None:
        return self.diff_ids.get(root)

    def record_verified(self, root: Cid, diff_id: Digest) -> None:
        self.diff_ids[root] = diff_id

    def forget_verified(self, root: Cid) -> None:
        self.diff_ids.pop(root, None)


def _tamper_first_leaf(store: MemoryStore) -> None:
    """Change the bytes of f0's first leaf, keeping its CID and length."""
    leaf = Cid.for_block(RAW, bytes([0]) * (1 << 18))
    store._blocks[leaf] = b"\xff" * (1 << 18)


def test_full_check_records_layer() -> None:
    store, root = _layer()
    records = _Records()
    stream = RebuiltTar(store.get, root, verified_layers=records)

    data = stream.read()

    assert data == _TAR
    assert stream.hashed
    assert records.diff_ids == {root.cid: root.diff_id}


def test_recorded_layer_not_hashed() -> None:
    store, root = _layer()
    records = _Records()
    records.record_verified(root.cid, root.diff_id)
    _tamper_first_leaf(store)
    stream = RebuiltTar(store.get, root, verified_layers=records)

    data = stream.read()

    # Only a store whose blocks do not match their CIDs can show this.
    assert not stream.hashed
    assert data[512:513] == b"\xff"
    assert len(data) == len(_TAR)


def test_recheck_fails_and_drops_record() -> None:
    store, root = _layer()
    records = _Records()
    records.record_verified(root.cid, root.diff_id)
    _tamper_first_leaf(store)
    stream = RebuiltTar(store.get, root, verified_layers=records, recheck=True)

    with pytest.raises(DataLossError, match="diff_id"):
        stream.read()

    assert stream.hashed
    assert records.diff_ids == {}


def test_record_of_other_diff_id_ignored() -> None:
    store, good = _layer()
    forged = _forged(store, good)
    records = _Records()
    records.record_verified(forged.cid, good.diff_id)
    stream = RebuiltTar(store.get, forged, verified_layers=records)

    with pytest.raises(DataLossError, match="diff_id"):
        stream.read()

    assert stream.hashed


def test_recorded_layer_still_checks_length() -> None:
    store, good = _layer()
    header = LayerHeader(diff_id=good.header.diff_id, tar_size=len(_TAR) + 512)
    data = UnixfsData(DataType.DIRECTORY, layer_header=encode_layer_header(header))
    block = encode_node([good.rootfs, good.tar_stream], encode_data(data))
    cid = Cid.for_block(DAG_PB, block)
    store.put(cid, block)
    root = read_layer_root(store.get, cid)
    records = _Records()
    records.record_verified(cid, root.diff_id)
    stream = RebuiltTar(store.get, root, verified_layers=records)

    with pytest.raises(DataLossError) as error:
        stream.read()

    assert str(error.value) == (
        f"layer {cid} rebuilds a tar of {len(_TAR)} bytes, but its layer header"
        f" records {len(_TAR) + 512} bytes"
    )
