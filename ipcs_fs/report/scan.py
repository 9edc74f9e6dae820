"""Read what one layer holds from its DAG: regular files and blocks.

A *scan* of a layer lists the regular files of its ``rootfs`` tree (path,
content CID, size) and every block reachable from its root (CID, size). Only
dag-pb nodes are read: a raw leaf's size is the ``Tsize`` of the link to it,
which for a raw block is its length. So a scan never reads file content.

A standard tar layer has no DAG yet, so :func:`convert_to_nodes` converts it
and keeps only its dag-pb nodes; the scan then runs on those.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import DataLossError, InvalidArgumentError, NotFoundError
from ..ids import DAG_PB, RAW, Cid, Digest
from ..layer.convert import convert_layer
from ..layer.listing import walk_layer
from ..layer.rebuild import LayerRoot, read_layer_root
from ..layer.records import Kind
from ..oci.compression import open_uncompressed
from ..oci.descriptor import Descriptor
from ..oci.image import ImageSource
from ..oci.transport import open_source
from ..unixfs import decode_node

__all__ = [
    "ConvertedNodes",
    "FileEntry",
    "LayerScan",
    "check_diff_id",
    "convert_to_nodes",
    "convert_to_nodes_from",
    "reachable_blocks",
    "scan_layer",
]

log = logging.getLogger(__name__)

Get = Callable[[Cid], bytes]


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A regular file of a layer: its path, content CID and size."""

    path: bytes
    cid: Cid
    size: int


@dataclass(frozen=True, slots=True)
class LayerScan:
    """What one layer holds.

    ``files`` lists the regular files of the tree in walk order. A path that
    the tar names twice appears once, with the later content, because the
    tree keeps only that entry. ``blocks`` maps every block reachable from
    the layer root to its size.
    """

    root: LayerRoot
    files: tuple[FileEntry, ...]
    blocks: dict[Cid, int]

    @property
    def diff_id(self) -> Digest:
        return self.root.diff_id

    @property
    def tar_size(self) -> int:
        return self.root.header.tar_size


def scan_layer(get: Get, root_cid: Cid) -> LayerScan:
    """Scan the layer whose root is ``root_cid``, reading nodes with ``get``.

    Raises InvalidArgumentError for a malformed DAG and NotFoundError, naming
    the CID, when ``get`` lacks a node.
    """
    root = read_layer_root(get, root_cid)
    files = tuple(
        FileEntry(item.path, item.cid, item.entry.size)
        for item in walk_layer(get, root)
        if item.entry.kind is Kind.FILE and item.cid is not None
    )
    return LayerScan(root, files, reachable_blocks(get, root_cid))


def reachable_blocks(get: Get, root_cid: Cid) -> dict[Cid, int]:
    """Map every block reachable from the dag-pb node ``root_cid`` to its size.

    dag-pb nodes are read with ``get``; raw blocks are never read, and their
    size is the ``Tsize`` of the first link found to them.
    """
    # NOTE: a raw block's Tsize is trusted, not checked against the block, so
    # a DAG from an untrusted source can misstate raw sizes in the report.
    sizes: dict[Cid, int] = {}
    pending = [root_cid]
    seen = {root_cid}
    while pending:
        cid = pending.pop()
        block = get(cid)
        sizes[cid] = len(block)
        for link in decode_node(block).links:
            if link.cid in seen:
                continue
            seen.add(link.cid)
            if link.cid.codec == RAW:
                sizes[link.cid] = link.tsize
            elif link.cid.codec == DAG_PB:
                pending.append(link.cid)
            else:
                raise InvalidArgumentError(
                    f"invalid node {cid}: link to {link.cid} of codec"
                    f" {link.cid.codec_name}, expected raw or dag-pb"
                )
    return sizes


@dataclass(frozen=True, slots=True)
class ConvertedNodes:
    """The dag-pb nodes of a layer converted for a scan, and its root CID."""

    root_cid: Cid
    nodes: dict[Cid, bytes]

    def get(self, cid: Cid) -> bytes:
        """Return the node ``cid``; NotFoundError if the layer has no such node."""
        block = self.nodes.get(cid)
        if block is None:
            raise NotFoundError(
                f"failed to get node {cid}: not in the converted layer {self.root_cid}"
            )
        return block


def convert_to_nodes_from(
    source: ImageSource, layer: Descriptor, diff_id: Digest
) -> ConvertedNodes:
    """Convert the standard layer ``layer`` of ``source``; keep its dag-pb nodes.

    Raw leaves are dropped as they come, so memory holds the tree, the tar
    stream and the internal file nodes, never file content. Raises
    DataLossError unless the tar hashes to ``diff_id``.
    """
    started = time.monotonic()
    nodes: dict[Cid, bytes] = {}

    def keep_node(cid: Cid, block: bytes | memoryview) -> None:
        if cid.codec == DAG_PB and cid not in nodes:
            nodes[cid] = bytes(block)

    with (
        source.open_blob(layer) as blob,
        open_uncompressed(blob, layer.media_type, source=str(layer.digest)) as tar,
    ):
        result = convert_layer(
            tar, keep_node, source=str(layer.digest), expected_diff_id=diff_id
        )
    log.debug(
        "converted layer %s for comparison: %d nodes, %.2fs",
        layer.digest,
        len(nodes),
        time.monotonic() - started,
    )
    return ConvertedNodes(result.root_cid, nodes)


def convert_to_nodes(
    reference: str, layer: Descriptor, diff_id: Digest
) -> ConvertedNodes:
    """Open the image ``reference`` and run :func:`convert_to_nodes_from`.

    Takes only picklable arguments, so that a worker process can run it.
    """
    with open_source(reference) as source:
        return convert_to_nodes_from(source, layer, diff_id)


def check_diff_id(root: LayerRoot, expected: Digest) -> None:
    """Raise DataLossError unless the layer header records ``expected``."""
    if root.diff_id != expected:
        raise DataLossError(
            f"layer {root.cid} records diff_id {root.diff_id}, but the image"
            f" config lists {expected}"
        )
