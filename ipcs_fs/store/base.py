"""The block-store interface that every store of ipcs-fs implements.

Terms:

block
    The bytes that a :class:`~ipcs_fs.ids.Cid` names: a raw leaf or a dag-pb node.
pin
    A mark on a CID, normally a layer root, that the user keeps. A garbage
    collection keeps every block reachable from a pin and may remove the rest.
write batch
    A group of puts buffered in memory and committed together, which is much
    faster than one transaction per block when a layer has many small blocks.

:class:`BlockStore` is an abstract base class rather than a ``typing.Protocol``
because the stores share behaviour that each would otherwise repeat: the
context manager, :meth:`BlockStore.get_many`, :meth:`BlockStore.put_many` and
the write batch. A store implements the abstract methods and may override the
others where it can do better (one transaction per batch, parallel fetches).

A store trusts the CIDs that it is given: ``put`` does not hash the block. Wrap
a store whose content comes from elsewhere in
:func:`ipcs_fs.store.verified` to check every block read from it.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from ..errors import FailedPreconditionError, InvalidArgumentError
from ..ids import Cid

__all__ = [
    "DEFAULT_BATCH_BLOCKS",
    "DEFAULT_BATCH_BYTES",
    "BlockStore",
    "StoreStat",
    "WriteBatch",
]

log = logging.getLogger(__name__)

# On the embedded store, a 1 KiB block costs about 10 to 14 us of CPU to put at
# any group size from 250 to 100,000 blocks (measured on a shared 2-CPU VM). So
# these limits mainly bound the memory that a batch buffers and how long one
# commit holds the write lock: about 40 ms for a full group there.
DEFAULT_BATCH_BLOCKS = 4096
DEFAULT_BATCH_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class StoreStat:
    """The size of a store: how many blocks it holds and their total length."""

    blocks: int
    bytes: int


class BlockStore(ABC):
    """A content-addressed store of blocks, keyed by CID.

    Contract shared by every implementation:

    - ``put`` and ``put_many`` are idempotent: storing a block that is present
      already changes nothing and is not an error.
    - A block is visible whole or not at all, to every reader.
    - ``get`` raises :class:`~ipcs_fs.errors.NotFoundError` naming the CID.
    - Pins survive until ``unpin``; ``delete`` never removes a pinned block.
    - Methods may be called from several threads at once. A :class:`WriteBatch`
      belongs to the thread that created it.
    - After ``close`` (or the end of a ``with`` block) the store may not be used.
    """

    @abstractmethod
    def get(self, cid: Cid) -> bytes:
        """Return the block named ``cid``.

        Raises NotFoundError if the store does not hold it.
        """

    @abstractmethod
    def has(self, cid: Cid) -> bool:
        """Tell whether the store holds the block named ``cid``."""

    def get_many(self, cids: Iterable[Cid]) -> Iterator[tuple[Cid, bytes]]:
        """Yield ``(cid, block)`` for each CID of ``cids``, in the same order.

        One pair comes out per element, duplicates included, so a caller can
        stream a file's leaves in file order. A store may fetch ahead or in
        parallel, but yields in order. Raises NotFoundError at the first CID that
        the store does not hold, after yielding the pairs before it.
        """
        for cid in cids:
            yield cid, self.get(cid)

    @abstractmethod
    def put(self, cid: Cid, block: bytes) -> None:
        """Store ``block`` under ``cid`` in one atomic step; idempotent."""

    def put_many(self, blocks: Iterable[tuple[Cid, bytes]]) -> None:
        """Store every ``(cid, block)`` pair of ``blocks``, in write batches.

        Each batch commits atomically, but not the whole call: if it raises,
        the batches committed before the error stay.
        """
        with self.batch() as batch:
            for cid, block in blocks:
                batch.put(cid, block)

    def batch(
        self,
        *,
        max_blocks: int = DEFAULT_BATCH_BLOCKS,
        max_bytes: int = DEFAULT_BATCH_BYTES,
        background: bool = False,
    ) -> WriteBatch:
        """Return a write batch that commits every ``max_blocks`` blocks or
        ``max_bytes`` bytes, whichever comes first, and at the end of its
        ``with`` block. With ``background``, groups commit in a writer thread
        while the caller goes on. See :class:`WriteBatch`.
        """
        return WriteBatch(
            self._write_blocks,
            max_blocks=max_blocks,
            max_bytes=max_bytes,
            background=background,
        )

    def _write_blocks(self, blocks: list[tuple[Cid, bytes]]) -> None:
        """Commit one group of a write batch.

        The default puts one block at a time. Stores with transactions override
        this to commit the whole group at once.
        """
        for cid, block in blocks:
            self.put(cid, block)

    @abstractmethod
    def pin(self, cid: Cid) -> None:
        """Mark ``cid`` as a root to keep; idempotent.

        Raises NotFoundError if the store does not hold the block. Only the root
        block is checked: a pin does not prove that the whole DAG is present.
        """

    @abstractmethod
    def unpin(self, cid: Cid) -> None:
        """Remove the pin on ``cid``; a CID that is not pinned is left as it is."""

    @abstractmethod
    def pins(self) -> Iterator[Cid]:
        """Yield every pinned CID, in no particular order."""

    @abstractmethod
    def delete(self, cids: Iterable[Cid]) -> int:
        """Remove the blocks named by ``cids`` and return how many were present.

        CIDs that the store does not hold are skipped. Raises
        FailedPreconditionError naming the CID, and removes nothing, if one of
        them is pinned.
        """

    @abstractmethod
    def cids(self) -> Iterator[Cid]:
        """Yield the CID of every block in the store, in no particular order.

        Blocks put or deleted during the iteration may or may not be seen.
        """

    @abstractmethod
    def stat(self) -> StoreStat:
        """Return the number of blocks and their total length in bytes."""

    @abstractmethod
    def close(self) -> None:
        """Release the store's resources. Calling it again does nothing."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


WriteFunction = Callable[[list[tuple[Cid, bytes]]], None]


class WriteBatch:
    """Puts buffered in memory and committed in groups.

    A group is committed when it reaches ``max_blocks`` blocks or ``max_bytes``
    bytes, on :meth:`flush`, and when the ``with`` block ends normally. Each
    group commits atomically. If the ``with`` block raises, the groups committed
    so far stay and the blocks still buffered are dropped.

    Buffering, instead of holding a transaction open between puts, keeps the
    store's write lock free while the caller computes its next blocks.

    With ``background``, a group that reaches a limit is committed by a writer
    thread while the caller fills the next one; at most one group is in flight,
    so memory holds two groups at most. An error of the writer is raised by the
    next put, flush or the end of the ``with`` block. :meth:`flush` and the end
    of the block wait until everything is committed.

    A batch is not thread-safe: use one per thread.
    """

    def __init__(
        self,
        write: WriteFunction,
        *,
        max_blocks: int,
        max_bytes: int,
        background: bool = False,
    ) -> None:
        if max_blocks < 1 or max_bytes < 1:
            raise InvalidArgumentError(
                f"invalid write batch limits {max_blocks} blocks, {max_bytes} bytes:"
                " both must be at least 1"
            )
        self._write = write
        self._max_blocks = max_blocks
        self._max_bytes = max_bytes
        self._pending: list[tuple[Cid, bytes]] = []
        self._pending_bytes = 0
        self._closed = False
        self._writer = (
            ThreadPoolExecutor(1, thread_name_prefix="ipcs-fs-store-writer")
            if background
            else None
        )
        self._in_flight: Future[None] | None = None
        self._in_flight_count = 0
        self.committed = 0
        """How many blocks this batch has committed, counting ones already present."""

    def put(self, cid: Cid, block: bytes) -> None:
        """Buffer ``block``, committing the group when it reaches a limit."""
        if self._closed:
            raise FailedPreconditionError(
                f"failed to put block {cid}: batch is closed; start a new one"
            )

        # The caller may reuse a bytearray or memoryview after this returns.
        if not isinstance(block, bytes):
            block = bytes(block)
        self._pending.append((cid, block))
        self._pending_bytes += len(block)

        full = len(self._pending) >= self._max_blocks
        if full or self._pending_bytes >= self._max_bytes:
            self._commit_pending(wait=False)

    def flush(self) -> None:
        """Commit the buffered blocks now, and wait for any group in flight."""
        self._commit_pending(wait=True)

    def _commit_pending(self, *, wait: bool) -> None:
        group, self._pending = self._pending, []
        self._pending_bytes = 0
        if self._writer is None:
            if group:
                self._write(group)
                self.committed += len(group)
            return
        self._wait_in_flight()
        if group:
            self._in_flight = self._writer.submit(self._write, group)
            self._in_flight_count = len(group)
        if wait:
            self._wait_in_flight()

    def _wait_in_flight(self) -> None:
        if self._in_flight is None:
            return
        future, self._in_flight = self._in_flight, None
        future.result()
        self.committed += self._in_flight_count

    @property
    def pending(self) -> int:
        """The number of blocks buffered and not yet committed."""
        return len(self._pending)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self.flush()
            elif self._pending:
                log.debug("dropped %d uncommitted blocks after an error", self.pending)
        finally:
            self._pending = []
            self._pending_bytes = 0
            self._closed = True
            self._stop_writer(failed=exc_type is not None)

    def _stop_writer(self, *, failed: bool) -> None:
        """Wait for the writer thread; after a failure its error is secondary."""
        if self._writer is None:
            return
        try:
            self._wait_in_flight()
        except Exception:
            if not failed:
                raise
            log.warning("a block group failed to commit after an earlier error")
        finally:
            self._writer.shutdown(wait=True)
