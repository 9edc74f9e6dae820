"""A wrapper that checks every block read from a store against its CID.

Use it on any store that ipcs-fs does not write itself: a kubo node, a CAR file
from elsewhere, a peer. Such a store may return wrong bytes, by fault or by
intent, and a CID proves nothing until the block is hashed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from ..errors import DataLossError
from ..ids import Cid
from .base import (
    DEFAULT_BATCH_BLOCKS,
    DEFAULT_BATCH_BYTES,
    BlockStore,
    StoreStat,
    WriteBatch,
)

__all__ = ["VerifiedStore", "verified"]


def verified(store: BlockStore) -> VerifiedStore:
    """Return ``store`` wrapped so that every block read from it is verified.

    The wrapper owns ``store``: closing the wrapper closes it. A store that is
    verified already is returned as it is.
    """
    if isinstance(store, VerifiedStore):
        return store
    return VerifiedStore(store)


def _check(cid: Cid, block: bytes) -> bytes:
    if not cid.matches(block):
        actual = hashlib.sha256(block).hexdigest()
        raise DataLossError(
            f"failed to read block {cid}: content does not match its CID"
            f" (sha256 of the {len(block)} bytes read is {actual})"
        )
    return block


class VerifiedStore(BlockStore):
    """A :class:`BlockStore` that hashes each block that ``get`` and ``get_many``
    return and raises :class:`~ipcs_fs.errors.DataLossError` naming the CID on a
    mismatch.

    Writes, pins and listings pass through unchanged: a writer computes the
    CIDs of the blocks it puts, so only reads need checking.
    """

    def __init__(self, inner: BlockStore) -> None:
        self.inner = inner

    def get(self, cid: Cid) -> bytes:
        return _check(cid, self.inner.get(cid))

    def get_many(self, cids: Iterable[Cid]) -> Iterator[tuple[Cid, bytes]]:
        for cid, block in self.inner.get_many(cids):
            yield cid, _check(cid, block)

    def has(self, cid: Cid) -> bool:
        return self.inner.has(cid)

    def put(self, cid: Cid, block: bytes) -> None:
        self.inner.put(cid, block)

    def put_many(self, blocks: Iterable[tuple[Cid, bytes]]) -> None:
        self.inner.put_many(blocks)

    def batch(
        self,
        *,
        max_blocks: int = DEFAULT_BATCH_BLOCKS,
        max_bytes: int = DEFAULT_BATCH_BYTES,
    ) -> WriteBatch:
        return self.inner.batch(max_blocks=max_blocks, max_bytes=max_bytes)

    def pin(self, cid: Cid) -> None:
        self.inner.pin(cid)

    def unpin(self, cid: Cid) -> None:
        self.inner.unpin(cid)

    def pins(self) -> Iterator[Cid]:
        return self.inner.pins()

    def delete(self, cids: Iterable[Cid]) -> int:
        return self.inner.delete(cids)

    def cids(self) -> Iterator[Cid]:
        return self.inner.cids()

    def stat(self) -> StoreStat:
        return self.inner.stat()

    def close(self) -> None:
        self.inner.close()
