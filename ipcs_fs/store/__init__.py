"""Block stores: where the blocks of converted layers live.

A block is the bytes that a CID names (a raw leaf or a dag-pb node). Every store
implements :class:`BlockStore`:

- :class:`EmbeddedStore`, the default: SQLite in a directory, safe for the
  converter and the containerd plugin to use at once
  (:func:`default_store_path` gives its usual place);
- :class:`MemoryStore`, for tests;
- :func:`verified` wraps any store so that every block read from it is checked
  against its CID, for stores that ipcs-fs does not write itself.

Typical use::

    with EmbeddedStore(default_store_path()) as store:
        with store.batch() as batch:
            for cid, block in blocks:
                batch.put(cid, block)
        store.pin(root)
"""

from .base import (
    DEFAULT_BATCH_BLOCKS,
    DEFAULT_BATCH_BYTES,
    BlockStore,
    StoreStat,
    WriteBatch,
)
from .embedded import EmbeddedStore, default_store_path
from .memory import MemoryStore
from .verified import VerifiedStore, verified

__all__ = [
    "DEFAULT_BATCH_BLOCKS",
    "DEFAULT_BATCH_BYTES",
    "BlockStore",
    "EmbeddedStore",
    "MemoryStore",
    "StoreStat",
    "VerifiedStore",
    "WriteBatch",
    "default_store_path",
    "verified",
]
