"""File DAGs identical to kubo's ``ipfs add --cid-version=1``, and their reader.

The builder cuts the content into fixed chunks of :data:`CHUNK_SIZE` bytes
and stores each as a raw leaf. Leaves are grouped under dag-pb nodes of at
most :data:`MAX_LINKS` links, level by level, in kubo's *balanced* layout.
Every leaf sits at the same depth, and every node but the last of its level
is full. The last may be partly filled, so 175 chunks give a root with a
174-leaf node and a 1-leaf node. A file of one chunk or less is its own raw
leaf, and an empty file is the empty raw leaf.

Each internal node's Data is ``{Type: File, filesize, blocksizes}``, where
``blocksizes[i]`` is the content size under link ``i`` and ``filesize`` their
sum. Each link has an empty Name and a Tsize: the block length of the child
plus its own links' Tsizes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from ..errors import (
    DataLossError,
    FailedPreconditionError,
    InvalidArgumentError,
    ResourceExhaustedError,
)
from ..ids import DAG_PB, RAW, Cid
from .dagpb import GetBlock, Link, PutBlock, decode_node, encode_node
from .data import DataType, UnixfsData, decode_data, encode_data

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_MAX_DEPTH",
    "MAX_LINKS",
    "FileBuilder",
    "FileDag",
    "read_file",
]

CHUNK_SIZE = 262144
# kubo's helpers.DefaultLinksPerBlock: 8 KiB over a 47-byte link estimate.
MAX_LINKS = 174
# A balanced file DAG of 2**64 bytes has 7 levels of nodes above its leaves.
# Trickle DAGs (ipfs add --trickle) grow deeper, an estimated 17 levels for
# the same size, so the default leaves room for both.
DEFAULT_MAX_DEPTH = 32


class FileDag(NamedTuple):
    """A built file DAG (or any subtree of one).

    ``size`` is the content length in bytes, ``tsize`` the total length of
    its blocks: the Tsize a parent link records.
    """

    cid: Cid
    size: int
    tsize: int


_ZERO_CHUNK = bytes(CHUNK_SIZE)
_ZERO_PREFIX = bytes(512)
_ZERO_LEAF = FileDag(Cid.for_block(RAW, _ZERO_CHUNK), CHUNK_SIZE, CHUNK_SIZE)


def _is_zero_chunk(chunk: bytes | memoryview) -> bool:
    """Tell whether ``chunk`` is a whole chunk of zeros, cheaply for other data."""
    return (
        len(chunk) == CHUNK_SIZE
        and bytes(chunk[:512]) == _ZERO_PREFIX
        and bytes(chunk) == _ZERO_CHUNK
    )


class FileBuilder:
    """Build a file DAG from content written in pieces of any size.

    Call :meth:`write` any number of times, then :meth:`finish` once. Blocks
    go to ``put`` as soon as they are complete, leaves before their parents.
    Memory stays bounded by one chunk plus at most :data:`MAX_LINKS` pending
    links per level. A chunk that lies inside one written buffer reaches
    ``put`` as a memoryview of that buffer, without a copy. A chunk that is a
    whole written ``bytes`` object (or the last chunk, when it is one) reaches
    ``put`` as that object itself.

    Example::

        builder = FileBuilder(store.put)
        for piece in pieces:
            builder.write(piece)
        dag = builder.finish()
    """

    def __init__(self, put: PutBlock) -> None:
        self._put = put
        # A bytes object is kept as written (it cannot change), and becomes a
        # bytearray copy only when more data must be appended to it.
        self._pending: bytes | bytearray = b""
        self._levels: list[list[FileDag]] = [[]]
        self._finished = False
        self._zero_leaf_stored = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` to the file.

        The builder keeps a reference only to ``bytes`` objects, which cannot
        change, so the caller may reuse any other buffer after this returns.
        """
        self._check_open()
        if not self._pending and type(data) is bytes and len(data) <= CHUNK_SIZE:
            self._pending = data
            if len(data) == CHUNK_SIZE:
                self._flush_pending()
            return
        view = memoryview(data).cast("B")
        offset = self._fill_pending(view)
        end = len(view)
        while end - offset >= CHUNK_SIZE:
            self._add_leaf(view[offset : offset + CHUNK_SIZE])
            offset += CHUNK_SIZE
        if offset < end:
            self._pending = bytearray(view[offset:])

    def _fill_pending(self, view: memoryview) -> int:
        """Complete a chunk begun by an earlier write; return the bytes used."""
        if not self._pending:
            return 0
        if type(self._pending) is bytes:
            self._pending = bytearray(self._pending)
        used = min(CHUNK_SIZE - len(self._pending), len(view))
        self._pending += view[:used]
        if len(self._pending) == CHUNK_SIZE:
            self._flush_pending()
        return used

    def _flush_pending(self) -> None:
        # Later writes go to a fresh buffer, so the block handed to put is
        # never changed afterwards.
        chunk, self._pending = self._pending, b""
        self._add_leaf(chunk if type(chunk) is bytes else memoryview(chunk))

    def finish(self) -> FileDag:
        """Store the remaining blocks and return the file's root.

        Raises FailedPreconditionError if called twice.
        """
        self._check_open()
        self._finished = True
        if self._pending or not self._levels[0]:
            self._flush_pending()
        level = 0
        while True:
            children = self._levels[level]
            if level == len(self._levels) - 1 and len(children) == 1:
                return children[0]
            self._push(level + 1, self._add_node(children))
            level += 1

    def _check_open(self) -> None:
        if self._finished:
            raise FailedPreconditionError("failed to write file: builder finished")

    def _add_leaf(self, chunk: bytes | memoryview) -> None:
        if _is_zero_chunk(chunk):
            # Holes of sparse files and zero-filled images repeat this one
            # leaf; skipping its hash makes them cost a comparison per chunk.
            if not self._zero_leaf_stored:
                self._put(_ZERO_LEAF.cid, _ZERO_CHUNK)
                self._zero_leaf_stored = True
            self._push(0, _ZERO_LEAF)
            return
        cid = Cid.for_block(RAW, chunk)
        self._put(cid, chunk)
        self._push(0, FileDag(cid, len(chunk), len(chunk)))

    def _push(self, level: int, child: FileDag) -> None:
        """Add ``child`` to ``level``, first closing that level's node if full."""
        if level == len(self._levels):
            self._levels.append([])
        if len(self._levels[level]) == MAX_LINKS:
            full = self._levels[level]
            self._levels[level] = []
            self._push(level + 1, self._add_node(full))
        self._levels[level].append(child)

    def _add_node(self, children: list[FileDag]) -> FileDag:
        sizes = tuple(child.size for child in children)
        size = sum(sizes)
        data = UnixfsData(DataType.FILE, filesize=size, blocksizes=sizes)
        links = [Link(child.cid, b"", child.tsize) for child in children]
        block = encode_node(links, encode_data(data))
        cid = Cid.for_block(DAG_PB, block)
        self._put(cid, block)
        return FileDag(cid, size, len(block) + sum(link.tsize for link in links))


def read_file(
    get: GetBlock, cid: Cid, *, max_depth: int = DEFAULT_MAX_DEPTH
) -> Iterator[bytes]:
    """Yield the content of the file DAG at ``cid``, one leaf at a time.

    Reads raw leaves and UnixFS File or Raw nodes, whatever the layout.
    Before yielding a child's bytes, it checks them against the sizes its
    parent declares (``blocksizes``, and ``filesize`` where present), so a
    DAG that lies about its sizes stops the read before any wrong byte is
    yielded. Raises DataLossError naming the CID on a size mismatch,
    InvalidArgumentError for a node that is not a UnixFS file node,
    ResourceExhaustedError past ``max_depth`` levels of nodes, and whatever
    ``get`` raises.
    """
    block = get(cid)
    if cid.codec == RAW:
        yield block
        return
    node = _load_node(cid, block)
    yield from _read_node(get, cid, node, 0, max_depth)


class _FileNode(NamedTuple):
    links: tuple[Link, ...]
    data: bytes
    blocksizes: tuple[int, ...]
    size: int


def _load_node(cid: Cid, block: bytes) -> _FileNode:
    """Decode a dag-pb file node and check that its sizes agree."""
    if cid.codec != DAG_PB:
        raise InvalidArgumentError(
            f"failed to read file {cid}: codec {cid.codec_name} is not raw or dag-pb"
        )
    try:
        node = decode_node(block)
        message = decode_data(node.data or b"")
    except InvalidArgumentError as error:
        raise InvalidArgumentError(f"failed to read file {cid}: {error}") from error
    if message.type not in (DataType.FILE, DataType.RAW):
        raise InvalidArgumentError(
            f"failed to read file {cid}: UnixFS type {message.type.name} is not a file"
        )
    return _check_sizes(cid, node.links, message)


def _check_sizes(cid: Cid, links: tuple[Link, ...], message: UnixfsData) -> _FileNode:
    if len(message.blocksizes) != len(links):
        raise DataLossError(
            f"failed to read file {cid}: {len(message.blocksizes)} blocksizes"
            f" declared for {len(links)} links"
        )
    data = message.data or b""
    size = len(data) + sum(message.blocksizes)
    if message.filesize is not None and message.filesize != size:
        raise DataLossError(
            f"failed to read file {cid}: filesize {message.filesize} declared,"
            f" but its data and blocksizes add up to {size}"
        )
    return _FileNode(links, data, message.blocksizes, size)


def _read_node(
    get: GetBlock, cid: Cid, node: _FileNode, depth: int, max_depth: int
) -> Iterator[bytes]:
    if node.data:
        yield node.data
    for link, declared in zip(node.links, node.blocksizes, strict=True):
        block = get(link.cid)
        if link.cid.codec == RAW:
            _check_child_size(cid, link.cid, declared, len(block))
            yield block
            continue
        if depth == max_depth:
            raise ResourceExhaustedError(
                f"failed to read file {cid}: child node {link.cid} is at depth"
                f" {depth + 1}, past the limit of {max_depth}"
            )
        child = _load_node(link.cid, block)
        _check_child_size(cid, link.cid, declared, child.size)
        yield from _read_node(get, link.cid, child, depth + 1, max_depth)


def _check_child_size(parent: Cid, child: Cid, declared: int, actual: int) -> None:
    if declared != actual:
        raise DataLossError(
            f"failed to read file {parent}: child {child} contains {actual} bytes,"
            f" but blocksizes declares {declared}"
        )
