"""A block store in a kubo (go-ipfs) node, reached through its HTTP RPC API.

Terms:

local block
    A block in the kubo node's own repository. Requests for local blocks
    pass ``offline=true``, so kubo responds at once and requests nothing from peers.
fetch
    Getting a block that the node does not hold from its peers over
    bitswap. Allowed unless the store is offline, and bounded by
    ``fetch_timeout``.
DAG fetch
    Making the node hold every block of the DAG under a node. The store
    pins the node recursively and then removes that pin: kubo's ``pin/add``
    fetches each missing block once, through one bitswap session, the
    children of each node in parallel. Fetching the same blocks one
    ``block/get`` at a time costs one bitswap round trip each (about 33 ms on
    loopback with kubo 0.43.1, measured). ``refs?recursive=true`` fetches
    in parallel too, but leaves wants behind (323 after pulling one layer,
    seen) whose late answers arrive as duplicate blocks. The store starts a
    DAG fetch whenever a dag-pb node is missing, and later reads find the
    blocks local.

How the store meets the :class:`~ipcs_fs.store.BlockStore` contract:

- Writes: a write batch becomes one CARv1 stream sent to ``dag/import``
  (roots left unpinned). The CAR carries each block's CID with its codec
  (raw leaves as ``raw``, nodes as ``dag-pb``), and kubo hashes every
  block it imports and stores none of the request's blocks if one does not
  match its CID, so what kubo stores is what ipcs-fs computed. Measured by
  ``benchmarks/kubo.py`` on the 1677 blocks (45 MB) of a real layer: 0.20 ms
  a block, against 0.75 ms with one multipart ``block/put`` per batch
  (``cid-codec`` and ``mhtype=sha2-256`` set, kubo returning each CID),
  1.7 ms with eight threads of single puts and 1.9 ms one put at a time.
- Reads: every block that ``get`` returns has been hashed and matches its CID,
  because kubo does not check what its repository or peers give it
  (``Datastore.HashOnRead`` is off by default). A walk that reads a node
  is then served from one ``dag/export`` stream of the DAG under it, as
  long as it reads in the stream's depth-first order
  (:mod:`ipcs_fs.store._readahead`), instead of one request per block.
- Pins are kubo's recursive pins, so kubo's own garbage collection keeps the
  whole DAG of each layer root.
- Keys: kubo keys its repository by multihash, so a block put under one codec
  is also found under another, and :meth:`KuboStore.cids` lists every block
  with codec ``raw``. Unlike the embedded store, the codec is not part of
  the key.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from ipfshttpclient import multipart  # type: ignore[import-untyped]

from ..car import CarReader, CarWriter
from ..errors import (
    DataLossError,
    FailedPreconditionError,
    InvalidArgumentError,
    IpcsError,
    NotFoundError,
    UnavailableError,
)
from ..ids import DAG_PB, RAW, Cid
from ._kubo_rpc import KuboRejection, KuboRpc
from ._readahead import ReadAhead
from .base import BlockStore, StoreStat

__all__ = [
    "DEFAULT_FETCH_TIMEOUT",
    "DEFAULT_REQUEST_TIMEOUT",
    "EMPTY_BLOCK_CID",
    "KuboStore",
]

log = logging.getLogger(__name__)

DEFAULT_FETCH_TIMEOUT = 60.0
"""Seconds to wait for a block from peers, or for progress of a DAG fetch."""

DEFAULT_REQUEST_TIMEOUT = 300.0
"""Seconds to wait for kubo to respond to a request that needs no peer."""

EMPTY_BLOCK_CID = Cid.for_block(RAW, b"")
"""The raw block of zero bytes: every empty file, device and whiteout links it."""

_EMPTY_SHA256 = hashlib.sha256(b"").digest()
# block/rm takes the CIDs as query arguments; this keeps the URL short.
_REMOVE_GROUP = 500
# kubo 0.43.1 emits pin/add progress every 500 ms, even while stalled.
_PIN_PROGRESS = "Progress"


class KuboStore(BlockStore):
    """A :class:`~ipcs_fs.store.BlockStore` in the kubo node whose RPC API
    listens at multiaddr ``api`` (for example ``/ip4/127.0.0.1/tcp/5001``).

    ``offline`` forbids asking peers: a block the node does not hold fails at
    once with NotFoundError naming the CID. Otherwise missing blocks are
    fetched from peers, and a fetch that gets nothing for ``fetch_timeout``
    seconds fails with NotFoundError naming the CID. ``get`` raises
    DataLossError naming the CID for a block that does not match it.

    Raises UnavailableError at once if the daemon does not respond, and
    InvalidArgumentError if ``api`` is not a multiaddr. Safe to use from
    several threads.
    """

    def __init__(
        self,
        api: str,
        *,
        offline: bool = False,
        fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ) -> None:
        if fetch_timeout <= 0:
            raise InvalidArgumentError(
                f"invalid fetch timeout {fetch_timeout:g} s: must be positive"
            )
        self.api = api
        self.offline = offline
        self.fetch_timeout = fetch_timeout
        self._rpc = KuboRpc(api, timeout=request_timeout)
        self._empty_block_stored = False
        self._empty_block_lock = threading.Lock()
        # One read-ahead per thread, since each thread walks its own DAG.
        self._local = threading.local()
        self._read_aheads: list[ReadAhead] = []
        self._read_aheads_lock = threading.Lock()
        version = self._rpc.request("/version", action="reach kubo", decoder="json")
        self.version = str(_single(version).get("Version", "unknown"))
        log.debug("kubo %s at %s, offline=%s", self.version, api, offline)

    # Reads

    def get(self, cid: Cid) -> bytes:
        ahead = self._read_ahead()
        block = ahead.take(cid)
        if block is not None:
            return block
        block = self.get_local(cid)
        if block is None:
            block = self.fetch(cid)
        if cid.codec == DAG_PB:
            ahead.follow(cid)
        return block

    def fetch(self, cid: Cid) -> bytes:
        """Return the block from the node's peers, checked against its CID.

        A missing dag-pb node starts a DAG fetch of everything under it
        first. Raises NotFoundError naming the CID when the store is offline
        or nothing arrives within ``fetch_timeout`` seconds.
        """
        return self._verify(cid, self._fetch(cid))

    def get_local(self, cid: Cid) -> bytes | None:
        """Return the block if the node has it, else None, without asking peers.

        Raises DataLossError naming the CID if the block does not match it.
        """
        if cid.hash_digest == _EMPTY_SHA256:
            # The content is known, and kubo 0.43.1 never sends this block
            # over bitswap (seen: a fetch from a peer that holds it times out).
            return b""
        block = self._get_local(cid)
        return None if block is None else self._verify(cid, block)

    def has(self, cid: Cid) -> bool:
        try:
            self._rpc.request(
                "/block/stat",
                str(cid),
                offline=True,
                decoder="json",
                action=f"look up block {cid}",
            )
        except KuboRejection as rejection:
            if rejection.not_found:
                return False
            raise self._rejected(f"look up block {cid}", rejection) from None
        return True

    def fetch_dag(self, cid: Cid) -> list[Cid]:
        """Make the node hold every block of the DAG under ``cid``; return their
        CIDs, ``cid`` excluded, in walk order, each once.

        Online, missing blocks are fetched from peers (see the module
        documentation); a fetch that makes no progress for ``fetch_timeout``
        seconds raises NotFoundError. Offline, a missing block raises
        NotFoundError naming it.

        NOTE: the temporary pin is removed afterwards unless ``cid`` was
        pinned before; a pin of ``cid`` that another client adds meanwhile
        is removed with it.
        """
        self._store_empty_block()
        temporary = False
        try:
            if self.offline:
                self._check_dag_offline(cid)
            elif not self._is_pinned(cid):
                self._pin_online(cid, f"fetch the DAG under {cid}")
                temporary = True
            return self._list_dag(cid)
        except KuboRejection as rejection:
            raise self._rejected(f"fetch the DAG under {cid}", rejection) from None
        finally:
            if temporary:
                self.unpin(cid)

    def _is_pinned(self, cid: Cid) -> bool:
        try:
            self._rpc.request(
                "/pin/ls",
                str(cid),
                opts={"type": "recursive"},
                decoder="json",
                action=f"look up the pin of {cid}",
            )
        except KuboRejection as rejection:
            if rejection.not_pinned:
                return False
            raise
        return True

    def _list_dag(self, cid: Cid) -> list[Cid]:
        action = f"list the DAG under {cid}"
        refs = self._rpc.stream(
            "/refs",
            str(cid),
            opts={"recursive": "true", "unique": "true"},
            offline=True,
            decoder="json",
            action=action,
        )
        try:
            return [self._ref(item, action) for item in refs]
        finally:
            refs.close()

    def export_dag(self, cid: Cid) -> Iterator[tuple[Cid, bytes]]:
        """Yield every local block of the DAG under ``cid``, ``cid`` first.

        One ``dag/export`` request streams the blocks as a CAR, so this reads
        a whole DAG far faster than one ``get`` per block. Every block is
        checked against its CID. The node does not ask peers: a block it
        lacks ends the stream early, so callers must not take what they
        received as the whole DAG without checking.
        """
        chunks = self._rpc.stream(
            "/dag/export",
            str(cid),
            offline=True,
            action=f"export the DAG under {cid}",
        )
        source = f"dag/export {cid} from kubo at {self.api}"
        try:
            stream = io.BufferedReader(_ChunkReader(chunks), buffer_size=1 << 20)
            yield from CarReader(stream, source=source)
        except InvalidArgumentError as error:
            # A stream cut by an error inside kubo looks like a short section.
            raise UnavailableError(str(error)) from error

    # Writes

    def put(self, cid: Cid, block: bytes) -> None:
        self._write_blocks([(cid, block)])

    def _write_blocks(self, blocks: list[tuple[Cid, bytes]]) -> None:
        action = f"put {len(blocks)} blocks from {blocks[0][0]}"
        car = io.BytesIO()
        writer = CarWriter(car, [blocks[0][0]])
        for cid, block in blocks:
            writer.write(cid, block)
        car.seek(0)
        body, headers = multipart.stream_files(car)
        try:
            response = self._rpc.request(
                "/dag/import",
                opts={"pin-roots": "false", "stats": "true"},
                decoder="json",
                data=body,
                headers=headers,
                action=action,
            )
        except KuboRejection as rejection:
            # kubo hashes every block it imports and stores none of the
            # request's blocks if one does not match its CID.
            raise DataLossError(
                f"failed to {action}: kubo at {self.api} rejected the blocks:"
                f" {rejection.message}"
            ) from None
        count = _single(response).get("Stats", {}).get("BlockCount")
        if count != len(blocks):
            raise DataLossError(
                f"failed to {action}: kubo at {self.api} imported {count} blocks"
            )

    # Pins

    def pin(self, cid: Cid) -> None:
        """Pin ``cid`` recursively, so kubo keeps its whole DAG.

        kubo needs every block of the DAG for that. Online, it fetches the
        missing ones from peers, which is how a layer is pulled. Offline, a
        missing block raises NotFoundError with kubo's message, which names
        it. A fetch that makes no progress for ``fetch_timeout`` seconds
        raises NotFoundError.
        """
        self._store_empty_block()
        try:
            if self.offline:
                self._pin_offline(cid)
            else:
                self._pin_online(cid, f"pin {cid}")
        except KuboRejection as rejection:
            if rejection.not_found:
                raise NotFoundError(
                    f"failed to pin {cid}: kubo at {self.api} lacks a block of its"
                    f" DAG: {rejection.message}"
                ) from None
            raise self._rejected(f"pin {cid}", rejection) from None

    def _pin_offline(self, cid: Cid) -> None:
        self._check_dag_offline(cid)
        self._rpc.request(
            "/pin/add",
            str(cid),
            opts={"recursive": "true"},
            offline=True,
            decoder="json",
            action=f"pin {cid}",
        )

    def _check_dag_offline(self, cid: Cid) -> None:
        # kubo 0.43.1's pin/add ignores offline=true and waits for a missing
        # block; dag/stat walks the DAG offline and names the block it lacks.
        self._rpc.request(
            "/dag/stat",
            str(cid),
            opts={"progress": "false"},
            offline=True,
            decoder="json",
            action=f"check the DAG under {cid}",
        )

    def _pin_online(self, cid: Cid, action: str) -> None:
        """Pin ``cid`` recursively, fetching what kubo lacks; ``action`` names
        the caller's goal in errors."""
        progress = _Progress(self.fetch_timeout)
        pinned = False
        for item in self._rpc.stream(
            "/pin/add",
            str(cid),
            opts={"recursive": "true", "progress": "true"},
            decoder="json",
            action=action,
        ):
            pinned = pinned or bool(item.get("Pins"))
            if progress.stalled(item.get(_PIN_PROGRESS)):
                raise NotFoundError(
                    f"failed to {action}: no block of its DAG arrived from the"
                    f" peers of kubo at {self.api} for {self.fetch_timeout:g} s"
                    f"{self._first_missing(cid)}"
                )
        if not pinned:
            raise UnavailableError(
                f"failed to {action}: kubo at {self.api} ended the pin request"
                " without confirming the pin; see its log"
            )

    def _first_missing(self, cid: Cid) -> str:
        """Return kubo's message about a block that the DAG under ``cid`` lacks."""
        try:
            self._check_dag_offline(cid)
        except KuboRejection as rejection:
            return f"; kubo reports: {rejection.message}"
        return ""

    def unpin(self, cid: Cid) -> None:
        try:
            self._rpc.request(
                "/pin/rm",
                str(cid),
                opts={"recursive": "true"},
                decoder="json",
                action=f"unpin {cid}",
            )
        except KuboRejection as rejection:
            if not rejection.not_pinned:
                raise self._rejected(f"unpin {cid}", rejection) from None

    def pins(self) -> Iterator[Cid]:
        response = self._rpc.request(
            "/pin/ls",
            opts={"type": "recursive"},
            decoder="json",
            action="list pins",
        )
        keys = _single(response).get("Keys") or {}
        return iter([Cid.parse(text) for text in keys])

    # Removal and listing

    def delete(self, cids: Iterable[Cid]) -> int:
        """Remove blocks with ``block/rm``; see :meth:`BlockStore.delete`.

        NOTE: only the recursive pins of the CIDs themselves are checked before
        anything is removed. kubo refuses, block by block, to remove a block
        inside a pinned DAG, so such a refusal comes after the others went.
        """
        requested = list(dict.fromkeys(cids))
        pinned = set(self.pins())
        for cid in requested:
            if cid in pinned:
                raise FailedPreconditionError(
                    f"failed to delete block {cid}: it is pinned in kubo at {self.api}"
                )
        removed = 0
        for start in range(0, len(requested), _REMOVE_GROUP):
            removed += self._remove(requested[start : start + _REMOVE_GROUP])
        return removed

    def _remove(self, cids: list[Cid]) -> int:
        results = self._rpc.request(
            "/block/rm",
            *map(str, cids),
            decoder="json",
            action=f"delete {len(cids)} blocks from {cids[0]}",
        )
        removed = 0
        for result in results:
            error = result.get("Error") or ""
            if not error:
                removed += 1
            elif not KuboRejection(error).not_found:
                raise FailedPreconditionError(
                    f"failed to delete block {result.get('Hash')} from kubo at"
                    f" {self.api}: {error}"
                )
        return removed

    def cids(self) -> Iterator[Cid]:
        """Yield every block of the node's repository, each with codec ``raw``
        (kubo keys blocks by multihash and keeps no codec)."""
        action = "list blocks"
        for item in self._rpc.stream("/refs/local", decoder="json", action=action):
            yield self._ref(item, action)

    def stat(self) -> StoreStat:
        """Return kubo's ``repo/stat``: its object count and its repository's
        size on disk, which includes kubo's own metadata, not block bytes alone."""
        response = _single(
            self._rpc.request("/repo/stat", decoder="json", action="read repo stat")
        )
        return StoreStat(
            blocks=int(response.get("NumObjects", 0)),
            bytes=int(response.get("RepoSize", 0)),
        )

    def collect_garbage(self) -> int:
        """Run kubo's garbage collection; return how many blocks it removed.

        kubo removes every block that no pin reaches, no matter which client
        stored it.
        """
        removed = 0
        action = "collect garbage"
        for item in self._rpc.stream("/repo/gc", decoder="json", action=action):
            if item.get("Error"):
                raise UnavailableError(
                    f"failed to {action} in kubo at {self.api}: {item['Error']}"
                )
            removed += 1
        return removed

    def close(self) -> None:
        with self._read_aheads_lock:
            read_aheads, self._read_aheads = self._read_aheads, []
        for ahead in read_aheads:
            ahead.close()
        self._rpc.close()

    def _read_ahead(self) -> ReadAhead:
        ahead: ReadAhead | None = getattr(self._local, "read_ahead", None)
        if ahead is None:
            ahead = ReadAhead(self.export_dag)
            self._local.read_ahead = ahead
            with self._read_aheads_lock:
                self._read_aheads.append(ahead)
        return ahead

    def __repr__(self) -> str:
        return f"KuboStore({self.api!r}, offline={self.offline})"

    # Helpers

    def _get_local(self, cid: Cid) -> bytes | None:
        try:
            block: bytes = self._rpc.request(
                "/block/get", str(cid), offline=True, action=f"get block {cid}"
            )
        except KuboRejection as rejection:
            if rejection.not_found:
                return None
            raise self._rejected(f"get block {cid}", rejection) from None
        return block

    def _fetch(self, cid: Cid) -> bytes:
        if self.offline:
            raise NotFoundError(
                f"failed to get block {cid}: not in kubo at {self.api}, and offline"
                " mode forbids asking its peers"
            )
        if cid.codec == DAG_PB:
            try:
                self.fetch_dag(cid)
            except IpcsError as error:
                # The exact block that is missing shows in the get below.
                log.warning("%s; reading its blocks one at a time", error)
            block = self._get_local(cid)
            if block is not None:
                return block
        return self._fetch_block(cid)

    def _fetch_block(self, cid: Cid) -> bytes:
        seconds = self.fetch_timeout
        try:
            block: bytes = self._rpc.request(
                "/block/get",
                str(cid),
                opts={"timeout": f"{seconds:g}s"},
                timeout=seconds + 10,
                action=f"get block {cid}",
            )
        except KuboRejection as rejection:
            if rejection.timed_out:
                raise NotFoundError(
                    f"failed to get block {cid}: neither kubo at {self.api} nor its"
                    f" peers provided it within {seconds:g} s"
                ) from None
            raise self._rejected(f"get block {cid}", rejection) from None
        return block

    def _verify(self, cid: Cid, block: bytes) -> bytes:
        if not cid.matches(block):
            actual = hashlib.sha256(block).hexdigest()
            raise DataLossError(
                f"failed to read block {cid}: the {len(block)} bytes from kubo at"
                f" {self.api} do not match its CID (their sha256 is {actual})"
            )
        return block

    def _store_empty_block(self) -> None:
        # kubo cannot fetch the empty block from peers (see get), so a DAG walk
        # inside kubo (refs, pin) would wait on it forever unless it is local.
        with self._empty_block_lock:
            if self._empty_block_stored:
                return
            self._write_blocks([(EMPTY_BLOCK_CID, b"")])
            self._empty_block_stored = True

    def _ref(self, item: dict[str, Any], action: str) -> Cid:
        if item.get("Err"):
            raise KuboRejection(str(item["Err"]))
        try:
            return Cid.parse(item["Ref"])
        except (KeyError, InvalidArgumentError) as error:
            raise UnavailableError(
                f"failed to {action}: kubo at {self.api} sent {item!r}"
            ) from error

    def _rejected(self, action: str, rejection: KuboRejection) -> IpcsError:
        if rejection.not_found:
            return NotFoundError(
                f"failed to {action}: kubo at {self.api}: {rejection.message}"
            )
        return UnavailableError(
            f"failed to {action}: kubo at {self.api}: {rejection.message}"
        )


class _Progress:
    """Tells when a pin's progress count has not grown for ``limit`` seconds."""

    def __init__(self, limit: float) -> None:
        self._limit = limit
        self._count = -1
        self._since = time.monotonic()

    def stalled(self, count: int | None) -> bool:
        now = time.monotonic()
        if count is None or count > self._count:
            self._count = max(self._count, count or 0)
            self._since = now
            return False
        return now - self._since > self._limit


class _ChunkReader(io.RawIOBase):
    """A readable stream over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buffer = memoryview(chunk)
        count = min(len(buffer), len(self._buffer))
        buffer[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]
        return count


def _single(response: Any) -> dict[str, Any]:
    """Return the one JSON object of a response that ipfshttpclient may wrap in
    a list."""
    if isinstance(response, list):
        response = response[0] if response else {}
    return dict(response)
