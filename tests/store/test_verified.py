"""verified(): blocks read from a store are checked against their CID."""

from __future__ import annotations

import hashlib

import pytest

import ipcs_fs.store
from ipcs_fs.errors import DataLossError, NotFoundError
from ipcs_fs.ids import RAW, Cid
from ipcs_fs.store import MemoryStore, StoreStat, VerifiedStore, verified

GOOD = b"hello world"
BAD = b"hello world!"


def tampered_store() -> tuple[MemoryStore, Cid]:
    """Return a store that holds BAD under the CID of GOOD."""
    inner = MemoryStore()
    cid = Cid.for_block(RAW, GOOD)
    inner.put(cid, BAD)
    return inner, cid


def test_get_raises_data_loss() -> None:
    inner, cid = tampered_store()
    store = verified(inner)
    actual = hashlib.sha256(BAD).hexdigest()

    with pytest.raises(DataLossError) as raised:
        store.get(cid)
    assert str(raised.value) == (
        f"failed to read block {cid}: content does not match its CID"
        f" (sha256 of the 12 bytes read is {actual})"
    )
    assert inner.get(cid) == BAD


def test_get_many_raises_at_tampered() -> None:
    inner, bad_cid = tampered_store()
    good_block = b"another block"
    good_cid = Cid.for_block(RAW, good_block)
    inner.put(good_cid, good_block)
    pairs = verified(inner).get_many([good_cid, bad_cid])

    assert next(pairs) == (good_cid, good_block)
    with pytest.raises(DataLossError, match=f"failed to read block {bad_cid}"):
        next(pairs)


def test_good_blocks_pass_through() -> None:
    store = verified(MemoryStore())
    cid = Cid.for_block(RAW, GOOD)
    store.put(cid, GOOD)

    assert store.get(cid) == GOOD
    assert list(store.get_many([cid, cid])) == [(cid, GOOD), (cid, GOOD)]
    assert store.stat() == StoreStat(blocks=1, bytes=11)


def test_missing_block_still_not_found() -> None:
    cid = Cid.for_block(RAW, GOOD)

    with pytest.raises(NotFoundError, match=str(cid)):
        verified(MemoryStore()).get(cid)


def test_verified_twice_wraps_once() -> None:
    once = verified(MemoryStore())

    assert verified(once) is once
    assert isinstance(once, VerifiedStore)


def test_close_closes_inner() -> None:
    inner = MemoryStore()
    verified(inner).close()

    assert inner._closed


def test_package_exports() -> None:
    assert sorted(ipcs_fs.store.__all__) == [
        "BlockStore",
        "DEFAULT_BATCH_BLOCKS",
        "DEFAULT_BATCH_BYTES",
        "EmbeddedStore",
        "MemoryStore",
        "StoreStat",
        "VerifiedStore",
        "WriteBatch",
        "default_store_path",
        "verified",
    ]
    for name in ipcs_fs.store.__all__:
        assert hasattr(ipcs_fs.store, name), name
