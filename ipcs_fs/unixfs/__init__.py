"""UnixFS on dag-pb: file DAGs identical to kubo's, and directories with records.

Terms:

- *block*: bytes stored under a CID; none that ipcs-fs writes exceeds
  :data:`MAX_BLOCK_SIZE` (1 MiB).
- *node*: a dag-pb block: links plus a Data field holding a UnixFS
  ``Data`` message (:class:`UnixfsData`).
- *link*: a child's CID, a name and the child's *Tsize*, the total bytes of
  the blocks under that link.
- *chunk*: a 262144-byte piece of file content (the last may be shorter).
- *leaf*: a raw block (codec ``raw``) holding one chunk.
- *file DAG*: the leaves of a file and the nodes above them; *filesize* is
  the content length, *blocksizes* the content length under each link.
- *directory*: a basic node, or a HAMT of shard nodes, whose links name
  entries. Each link can carry an *entry record* (opaque bytes), and a
  layer's root carries a *layer header*. Both sit in extension fields of the
  UnixFS Data message, which other readers skip.

A file DAG, as ``ipfs add --cid-version=1`` builds it (balanced layout, at
most 174 links per node, here 175 chunks)::

                      root node  {File, filesize, blocksizes[2]}
                     /                                  \\
      node {File, blocksizes[174]}            node {File, blocksizes[1]}
       /        |          \\                             |
    leaf 0   leaf 1 ... leaf 173                      leaf 174
    (raw, 262144 bytes each)                          (raw, the rest)

A file of at most one chunk is its leaf alone; an empty file is the empty
leaf. Every link has an empty Name and a Tsize.

Builders take a ``put(cid, block)`` callable and readers a ``get(cid)``
callable, so this package stores nothing itself.
"""

from __future__ import annotations

from ._items import DirectoryDag, DirectoryItem
from .dagpb import (
    MAX_BLOCK_SIZE,
    Block,
    GetBlock,
    Link,
    Node,
    PutBlock,
    decode_node,
    encode_node,
)
from .data import DataType, UnixfsData, UnixTime, decode_data, encode_data
from .directory import SHARD_THRESHOLD, build_directory, iter_directory
from .file import CHUNK_SIZE, MAX_LINKS, FileBuilder, FileDag, read_file

__all__ = [
    "CHUNK_SIZE",
    "MAX_BLOCK_SIZE",
    "MAX_LINKS",
    "SHARD_THRESHOLD",
    "Block",
    "DataType",
    "DirectoryDag",
    "DirectoryItem",
    "FileBuilder",
    "FileDag",
    "GetBlock",
    "Link",
    "Node",
    "PutBlock",
    "UnixTime",
    "UnixfsData",
    "build_directory",
    "decode_data",
    "decode_node",
    "encode_data",
    "encode_node",
    "iter_directory",
    "read_file",
]
