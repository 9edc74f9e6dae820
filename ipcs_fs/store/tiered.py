"""A local store as a cache in front of kubo.

Terms:

local
    The embedded store on this machine (any :class:`BlockStore` will do).
remote
    A :class:`~ipcs_fs.store.kubo.KuboStore`: the kubo node, and through it
    its peers.
pull
    Bringing a block that neither tier holds from kubo's peers.

Decisions, and why:

- Reads try the local store first, then blocks that kubo holds, then kubo's
  peers. Every block from kubo is checked against its CID (by the kubo store)
  and then kept in the local store, so the next read of it costs no request.
- When a dag-pb node must be pulled, kubo fetches the whole DAG under it in
  one request (:meth:`KuboStore.fetch_dag`), which is what makes a pull fast.
  If most of that DAG is missing locally too, one ``dag/export`` stream then
  copies it into the local store; otherwise the few missing blocks are copied
  one by one as they are read.
- Writes go to both tiers, local first: kubo needs the blocks to pin a layer
  and to serve it to peers, and the local copy keeps reads fast and working
  while kubo is down. Pins go to both tiers.
- The local store keeps what it caches until garbage collection removes what
  no local pin reaches: pulled layers are cached, not kept.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from ..errors import IpcsError, NotFoundError
from ..ids import DAG_PB, Cid
from .base import BlockStore, StoreStat
from .kubo import KuboStore

__all__ = ["TieredStore"]

log = logging.getLogger(__name__)

# Stream a pulled DAG into the local store when at least this share of its
# blocks is missing there. Below it, copying the missing blocks one by one as
# they are read moves fewer bytes than exporting the whole DAG again.
_EXPORT_SHARE = 0.5


class TieredStore(BlockStore):
    """A :class:`BlockStore` that reads from ``local`` first and from ``remote``
    (kubo) on a miss, caching what it reads, and writes and pins to both.

    The store owns both tiers: closing it closes them. ``stat`` reports the
    local store, where the cost of a conversion shows.
    """

    def __init__(self, local: BlockStore, remote: KuboStore) -> None:
        self.local = local
        self.remote = remote

    # Reads

    def get(self, cid: Cid) -> bytes:
        try:
            return self.local.get(cid)
        except NotFoundError:
            pass
        block = self.remote.get_local(cid)
        if block is None:
            block = self._pull(cid)
        self.local.put(cid, block)
        return block

    def has(self, cid: Cid) -> bool:
        return self.local.has(cid) or self.remote.has(cid)

    def _pull(self, cid: Cid) -> bytes:
        if cid.codec != DAG_PB:
            return self.remote.fetch(cid)
        try:
            below = self.remote.fetch_dag(cid)
        except IpcsError as error:
            # The fetch below names the block that could not be had, if any.
            log.warning("%s; reading its blocks one at a time", error)
            below = []
        block = self.remote.get_local(cid)
        if block is None:
            block = self.remote.fetch(cid)
        self._copy_dag(cid, below)
        return block

    def _copy_dag(self, cid: Cid, below: list[Cid]) -> None:
        missing = {link for link in below if not self.local.has(link)}
        if not missing or len(missing) < _EXPORT_SHARE * len(below):
            return
        copied = 0
        with self.local.batch() as batch:
            try:
                for link, block in self.remote.export_dag(cid):
                    if link in missing:
                        batch.put(link, block)
                        copied += 1
            except IpcsError as error:
                # The batch keeps what arrived; the rest is copied when read.
                log.warning("failed to copy the DAG under %s from kubo: %s", cid, error)
        log.debug("copied %d of %d blocks under %s", copied, len(missing), cid)

    # Writes and pins

    def put(self, cid: Cid, block: bytes) -> None:
        self.local.put(cid, block)
        self.remote.put(cid, block)

    def _write_blocks(self, blocks: list[tuple[Cid, bytes]]) -> None:
        self.local.put_many(blocks)
        self.remote.put_many(blocks)

    def pin(self, cid: Cid) -> None:
        """Pin ``cid`` in kubo (recursively, fetching what kubo lacks) and in
        the local store, copying the root block there first if needed."""
        self.remote.pin(cid)
        if not self.local.has(cid):
            block = self.remote.get_local(cid)
            self.local.put(cid, block if block is not None else self.remote.fetch(cid))
        self.local.pin(cid)

    def unpin(self, cid: Cid) -> None:
        self.local.unpin(cid)
        self.remote.unpin(cid)

    def pins(self) -> Iterator[Cid]:
        """Yield the CIDs pinned in either tier, each once."""
        pinned = dict.fromkeys(self.local.pins())
        pinned.update(dict.fromkeys(self.remote.pins()))
        return iter(list(pinned))

    # Removal and listing

    def delete(self, cids: Iterable[Cid]) -> int:
        """Remove the blocks from both tiers; return how many the local
        store held."""
        requested = list(cids)
        removed = self.local.delete(requested)
        self.remote.delete(requested)
        return removed

    def cids(self) -> Iterator[Cid]:
        """Yield the local blocks, then kubo's blocks that the local store
        lacks, with codec ``raw`` as kubo lists them."""
        local = set()
        for cid in self.local.cids():
            local.add(cid.hash_digest)
            yield cid
        for cid in self.remote.cids():
            if cid.hash_digest not in local:
                yield cid

    def stat(self) -> StoreStat:
        return self.local.stat()

    def close(self) -> None:
        try:
            self.local.close()
        finally:
            self.remote.close()

    def __repr__(self) -> str:
        return f"TieredStore({self.local!r}, {self.remote!r})"
