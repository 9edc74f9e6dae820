"""An in-memory block store for unit tests and short-lived work."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

from ..errors import FailedPreconditionError, NotFoundError
from ..ids import Cid
from .base import BlockStore, StoreStat

__all__ = ["MemoryStore"]


class MemoryStore(BlockStore):
    """A :class:`BlockStore` that keeps blocks in a dict, guarded by a lock.

    Like every store, it does not hash what it is given. So a test can put a
    block under the wrong CID to simulate a corrupt foreign store.
    """

    def __init__(self) -> None:
        self._blocks: dict[Cid, bytes] = {}
        self._pins: set[Cid] = set()
        self._lock = threading.Lock()
        self._closed = False

    def get(self, cid: Cid) -> bytes:
        self._check_open()
        block = self._blocks.get(cid)
        if block is None:
            raise NotFoundError(f"failed to get block {cid}: not found in memory store")
        return block

    def has(self, cid: Cid) -> bool:
        self._check_open()
        return cid in self._blocks

    def put(self, cid: Cid, block: bytes) -> None:
        self._check_open()
        with self._lock:
            self._blocks.setdefault(cid, bytes(block))

    def pin(self, cid: Cid) -> None:
        self._check_open()
        with self._lock:
            if cid not in self._blocks:
                raise NotFoundError(
                    f"failed to pin {cid}: block not found in memory store"
                )
            self._pins.add(cid)

    def unpin(self, cid: Cid) -> None:
        self._check_open()
        with self._lock:
            self._pins.discard(cid)

    def pins(self) -> Iterator[Cid]:
        self._check_open()
        with self._lock:
            pinned = list(self._pins)
        return iter(pinned)

    def delete(self, cids: Iterable[Cid]) -> int:
        self._check_open()
        requested = set(cids)
        with self._lock:
            for cid in requested & self._pins:
                raise FailedPreconditionError(
                    f"failed to delete block {cid}: it is pinned"
                )
            present = [cid for cid in requested if cid in self._blocks]
            for cid in present:
                del self._blocks[cid]
        return len(present)

    def cids(self) -> Iterator[Cid]:
        self._check_open()
        with self._lock:
            listed = list(self._blocks)
        return iter(listed)

    def stat(self) -> StoreStat:
        self._check_open()
        with self._lock:
            total = sum(len(block) for block in self._blocks.values())
            return StoreStat(blocks=len(self._blocks), bytes=total)

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise FailedPreconditionError(
                "failed to use memory store: it is closed; create a new one"
            )
