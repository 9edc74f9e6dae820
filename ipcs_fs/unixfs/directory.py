"""UnixFS directories with an entry record beside each link, and their reader.

A directory is stored in one of two forms:

- *basic*: one dag-pb node, links sorted by name bytes, Data
  ``{Type: Directory}`` plus the entry records in link order.
- *HAMT*: a tree of HAMTShard nodes (see :mod:`ipcs_fs.unixfs.hamt`), for
  directories too large for one node.

The choice follows kubo's rule, so that a directory with empty records is
byte-identical to what ``ipfs add`` builds. kubo (boxo's default
SizeEstimationLinks) estimates a directory as the sum over its links of name
length plus binary CID length. It shards when that estimate exceeds 256 KiB
(:data:`SHARD_THRESHOLD`), and so does the JS importer. Records are left
out of the estimate, so they do not change the shape kubo would give the same
files. Because records can be large, a basic node that would still exceed
:data:`~ipcs_fs.unixfs.dagpb.MAX_BLOCK_SIZE` with its records becomes a HAMT
too. Under the threshold, a basic node without records contains at most
256 KiB of names and CIDs, plus at most 20 bytes of framing for each of at
most 7085 links (each at least 37 bytes in the estimate): under 400 KiB. So
only records trigger the fallback.

A directory's Tsize is its blocks' bytes plus the Tsizes of its entries.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence

from ..errors import InvalidArgumentError
from ..ids import DAG_PB, Cid
from . import hamt
from ._items import (
    DirectoryDag,
    DirectoryItem,
    check_items,
    check_name,
    fail_read,
    records_field,
    records_of,
)
from .dagpb import (
    MAX_BLOCK_SIZE,
    GetBlock,
    Link,
    Node,
    PutBlock,
    decode_node,
    encode_node,
)
from .data import DataType, UnixfsData, decode_data, encode_data

__all__ = [
    "SHARD_THRESHOLD",
    "DirectoryDag",
    "DirectoryItem",
    "build_directory",
    "iter_directory",
]

logger = logging.getLogger(__name__)

# kubo's default HAMTShardingSize (and the JS importer's
# shardSplitThresholdBytes), in bytes of its link-size estimate.
SHARD_THRESHOLD = 256 * 1024


def build_directory(
    items: Iterable[tuple[bytes, Cid, int, bytes]],
    put: PutBlock,
    *,
    shard_threshold: int = SHARD_THRESHOLD,
    layer_header: bytes | None = None,
) -> DirectoryDag:
    """Store a directory of ``items`` and return its root CID and Tsize.

    Each item is ``(name, cid, tsize, record)`` (a :class:`DirectoryItem` or
    a plain tuple) in any order. ``shard_threshold`` is kubo's: a HAMT is
    built when the sum of name and binary CID lengths exceeds it.
    ``layer_header``, if given, is written into the root node's Data. Blocks
    go to ``put`` children first; no block exceeds MAX_BLOCK_SIZE.

    Raises InvalidArgumentError naming the entry for an empty, reserved or
    duplicate name, a name with ``/`` or NUL, or an entry whose name and
    record cannot fit in one block.
    """
    entries = check_items(items)
    estimate = sum(len(item.name) + len(item.cid.raw) for item in entries)
    if entries and estimate > shard_threshold:
        return hamt.build_hamt(entries, put, layer_header=layer_header)
    block = _encode_basic(entries, layer_header)
    if len(block) > MAX_BLOCK_SIZE:
        logger.debug(
            "directory of %d entries: records make a %d-byte node, building a HAMT",
            len(entries),
            len(block),
        )
        return hamt.build_hamt(entries, put, layer_header=layer_header)
    cid = Cid.for_block(DAG_PB, block)
    put(cid, block)
    return DirectoryDag(cid, len(block) + sum(item.tsize for item in entries))


def _encode_basic(entries: Sequence[DirectoryItem], header: bytes | None) -> bytes:
    message = UnixfsData(
        DataType.DIRECTORY,
        layer_header=header,
        entry_records=records_field([item.record for item in entries]),
    )
    links = [Link(item.cid, item.name, item.tsize) for item in entries]
    return encode_node(links, encode_data(message))


def iter_directory(get: GetBlock, cid: Cid) -> Iterator[DirectoryItem]:
    """Yield the entries of the directory at ``cid``, basic or HAMT.

    A basic directory yields in name order, a HAMT in hash order. Every node
    is checked before its entries are yielded: UnixFS type, valid and
    strictly ascending names, one record per link (or none), and for HAMTs
    fanout, hash type, bitfield, slots and at most eight levels. Raises
    InvalidArgumentError naming the node's CID, and whatever ``get`` raises.
    """
    if cid.codec != DAG_PB:
        fail_read(cid, f"codec {cid.codec_name} is not dag-pb")
    node, message = _load(get, cid)
    if message.type == DataType.DIRECTORY:
        yield from _iter_basic(cid, node, message)
    elif message.type == DataType.HAMT_SHARD:
        yield from hamt.iter_hamt(get, cid, node, message)
    else:
        fail_read(cid, f"UnixFS type {message.type.name} is not a directory")


def _load(get: GetBlock, cid: Cid) -> tuple[Node, UnixfsData]:
    try:
        node = decode_node(get(cid))
        return node, decode_data(node.data or b"")
    except InvalidArgumentError as error:
        raise InvalidArgumentError(
            f"failed to read directory {cid}: {error}"
        ) from error


def _iter_basic(cid: Cid, node: Node, message: UnixfsData) -> Iterator[DirectoryItem]:
    records = records_of(cid, node.links, message)
    previous = b""
    for link in node.links:
        problem = check_name(link.name)
        if problem is not None:
            fail_read(cid, problem)
        if link.name <= previous:
            fail_read(
                cid, f"link {link.name!r} is not after {previous!r} in name order"
            )
        previous = link.name
    for link, record in zip(node.links, records):
        yield DirectoryItem(link.name, link.cid, link.tsize, record)
