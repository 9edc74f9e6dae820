"""The tar stream: the part of a layer DAG that rebuilds the original tar.

Terms, as in ``mediatypes/ipcs-fs-layer-v1.md``: a *leaf* tar-stream node holds
*records* (``RAW`` bytes of headers, padding and trailer; ``DATA`` and ``SPARSE``
references to file content by link index) and links to the content DAGs it
references; an *index* node links to leaves or further index nodes, in tar order.

:class:`TarStreamWriter` builds the nodes while a layer is converted;
:func:`iter_tar_stream` walks them and yields the tar's bytes again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import zstandard

from ..errors import DataLossError, InvalidArgumentError, ResourceExhaustedError
from ..ids import DAG_PB, Cid
from ..unixfs import FileDag, Link, decode_node, encode_node, read_file
from ..unixfs.wire import decode_varint, encode_varint
from .records import (
    TarStreamKind,
    TarStreamNode,
    decode_tar_stream_node,
    encode_tar_stream_node,
)

__all__ = ["LEAF_RECORDS_LIMIT", "TarStreamWriter", "iter_tar_stream"]

log = logging.getLogger(__name__)

LEAF_RECORDS_LIMIT = 512 * 1024
LEAF_LINKS_LIMIT = 4096
INDEX_LINKS_LIMIT = 1024
MAX_DEPTH = 16
_ZSTD_LEVEL = 3

_RAW = 1
_DATA = 2
_SPARSE = 3

Put = Callable[[Cid, bytes], None]
Get = Callable[[Cid], bytes]


@dataclass(slots=True)
class _Child:
    link: Link
    tar_size: int


class TarStreamWriter:
    """Write tar-stream nodes for a tar fed to it in order.

    Call :meth:`add_raw` for header bytes, :meth:`add_data` or
    :meth:`add_sparse` for each entry's data, then :meth:`finish`, which returns
    the link to the top node. Every node is handed to ``put`` once complete, so
    memory holds one leaf and one partial index node per level.
    """

    def __init__(self, put: Put) -> None:
        self._put = put
        self._compressor = zstandard.ZstdCompressor(
            level=_ZSTD_LEVEL, write_checksum=False, write_content_size=True
        )
        self._records = bytearray()
        self._links: list[Link] = []
        self._leaf_tar_size = 0
        self._levels: list[list[_Child]] = []

    def add_raw(self, data: bytes | memoryview) -> None:
        """Add bytes that the tar contains verbatim (headers, padding, trailer)."""
        view = memoryview(data)
        while view:
            length = self._raw_room(len(view))
            if length == 0:
                self._flush_leaf()
                continue
            self._records += encode_varint(_RAW) + encode_varint(length)
            self._records += view[:length]
            self._leaf_tar_size += length
            view = view[length:]

    def add_data(self, file: FileDag, length: int) -> None:
        """Add an entry's data: the whole content of ``file``, ``length`` bytes."""
        record = encode_varint(_DATA) + encode_varint(len(self._links))
        record += encode_varint(length)
        if not self._fits(len(record)):
            self._flush_leaf()
            record = encode_varint(_DATA) + encode_varint(0) + encode_varint(length)
        self._append_reference(file, record, length)

    def add_sparse(self, file: FileDag, regions: list[tuple[int, int]]) -> None:
        """Add a sparse entry's data: ``regions`` of ``file``'s content.

        A sparse map too long for one leaf becomes several SPARSE records of
        consecutive regions, each leaf taking as many regions as fit.
        """
        remaining = regions
        while remaining:
            record, count = self._sparse_record(file, remaining)
            if count == 0:
                self._flush_leaf()
                continue
            length = sum(size for _, size in remaining[:count])
            self._append_reference(file, record, length)
            remaining = remaining[count:]

    def finish(self) -> Link:
        """Write the last nodes; return the link to the top tar-stream node."""
        if self._records or self._links or not self._levels:
            self._flush_leaf()
        return self._finish_index().link

    def _fits(self, record_length: int) -> bool:
        return (
            len(self._links) < LEAF_LINKS_LIMIT
            and len(self._records) + record_length <= LEAF_RECORDS_LIMIT
        )

    def _raw_room(self, requested: int) -> int:
        """Largest RAW length up to ``requested`` whose record fits the leaf."""
        space = LEAF_RECORDS_LIMIT - len(self._records)
        length = min(requested, space - 1 - len(encode_varint(space)))
        while length > 0 and 1 + len(encode_varint(length)) + length > space:
            length -= 1
        return max(length, 0)

    def _sparse_record(
        self, file: FileDag, regions: list[tuple[int, int]]
    ) -> tuple[bytes, int]:
        """Encode the longest prefix of ``regions`` that fits; return it and its
        region count (0 when not even one region fits)."""
        if len(self._links) >= LEAF_LINKS_LIMIT:
            return b"", 0
        head = encode_varint(_SPARSE) + encode_varint(len(self._links))
        pairs: list[bytes] = []
        size = len(head)
        for offset, length in regions:
            pair = encode_varint(offset) + encode_varint(length)
            count_length = len(encode_varint(len(pairs) + 1))
            if len(self._records) + size + len(pair) + count_length > (
                LEAF_RECORDS_LIMIT
            ):
                break
            pairs.append(pair)
            size += len(pair)
        record = head + encode_varint(len(pairs)) + b"".join(pairs)
        return record, len(pairs)

    def _append_reference(self, file: FileDag, record: bytes, length: int) -> None:
        self._links.append(Link(file.cid, b"", file.tsize))
        self._records += record
        self._leaf_tar_size += length

    def _flush_leaf(self) -> None:
        records = bytes(self._records)
        compressed = self._compressor.compress(records) if records else b""
        use_zstd = 0 < len(compressed) < len(records)
        node = TarStreamNode(
            kind=TarStreamKind.LEAF,
            tar_size=self._leaf_tar_size,
            compression=1 if use_zstd else 0,
            records=compressed if use_zstd else records,
            records_size=len(records),
        )
        child = self._write_node(node, self._links)
        self._push(0, child)
        self._records = bytearray()
        self._links = []
        self._leaf_tar_size = 0

    def _write_node(self, node: TarStreamNode, links: list[Link]) -> _Child:
        block = encode_node(links, encode_tar_stream_node(node))
        cid = Cid.for_block(DAG_PB, block)
        self._put(cid, block)
        tsize = len(block) + sum(link.tsize for link in links)
        return _Child(Link(cid, b"", tsize), node.tar_size)

    def _make_index(self, children: list[_Child]) -> _Child:
        node = TarStreamNode(
            kind=TarStreamKind.INDEX,
            tar_size=sum(child.tar_size for child in children),
        )
        return self._write_node(node, [child.link for child in children])

    def _push(self, level: int, child: _Child) -> None:
        # Full nodes move up only when another sibling arrives, so that every
        # leaf ends at the same depth, as in a balanced UnixFS file.
        if level == len(self._levels):
            self._levels.append([])
        nodes = self._levels[level]
        if len(nodes) == INDEX_LINKS_LIMIT:
            self._push(level + 1, self._make_index(nodes))
            nodes.clear()
        nodes.append(child)

    def _finish_index(self) -> _Child:
        level = 0
        while True:
            nodes = self._levels[level]
            top = level == len(self._levels) - 1
            if top and level == 0 and len(nodes) == 1:
                return nodes[0]
            parent = self._make_index(nodes)
            if top:
                return parent
            self._push(level + 1, parent)
            level += 1


def iter_tar_stream(
    get: Get, cid: Cid, *, max_tar_size: int | None = None
) -> Iterator[bytes | memoryview]:
    """Yield the bytes of the tar that the tar stream rooted at ``cid`` rebuilds.

    ``get`` returns a block by CID; when blocks come from a store that is not
    trusted it must verify them. Every declared size is checked against what the
    nodes hold; a mismatch raises DataLossError naming the node's CID. Past
    ``max_tar_size`` bytes, ResourceExhaustedError stops the walk, so a DAG
    that links one large file many times cannot produce an unbounded tar.
    """
    produced = 0
    for piece in _walk(get, cid, 0):
        produced += len(piece)
        if max_tar_size is not None and produced > max_tar_size:
            raise ResourceExhaustedError(
                f"tar stream {cid} rebuilds more than the {max_tar_size} bytes"
                " its layer declares"
            )
        yield piece


def _walk(get: Get, cid: Cid, depth: int) -> Iterator[bytes | memoryview]:
    if depth > MAX_DEPTH:
        raise InvalidArgumentError(f"tar-stream node {cid} is nested too deep")
    node_block = decode_node(get(cid))
    node = decode_tar_stream_node(node_block.data or b"")
    if node.kind is TarStreamKind.INDEX:
        pieces = _walk_index(get, node_block.links, depth)
    else:
        pieces = _walk_leaf(get, cid, node, node_block.links)
    produced = 0
    for piece in pieces:
        produced += len(piece)
        if produced > node.tar_size:
            break
        yield piece
    if produced != node.tar_size:
        raise DataLossError(
            f"tar-stream node {cid} declares {node.tar_size} bytes of tar but"
            f" holds {'more' if produced > node.tar_size else produced}"
        )


def _walk_index(get: Get, links: list[Link], depth: int):
    for link in links:
        yield from _walk(get, link.cid, depth + 1)


def _walk_leaf(get: Get, cid: Cid, node: TarStreamNode, links: list[Link]):
    records = _leaf_records(cid, node)
    position = 0
    while position < len(records):
        tag, position = decode_varint(records, position)
        if tag == _RAW:
            length, position = decode_varint(records, position)
            if position + length > len(records):
                raise InvalidArgumentError(f"tar-stream node {cid}: RAW overruns")
            yield records[position : position + length]
            position += length
        elif tag in (_DATA, _SPARSE):
            link, regions, position = _read_reference(
                tag, records, position, links, cid
            )
            yield from _read_regions(get, tag, link, regions)
        else:
            raise InvalidArgumentError(f"tar-stream node {cid}: unknown record {tag}")


def _leaf_records(cid: Cid, node: TarStreamNode) -> memoryview:
    if node.records_size > 2 * LEAF_RECORDS_LIMIT:
        raise InvalidArgumentError(
            f"tar-stream node {cid} declares {node.records_size} bytes of records;"
            f" the limit is {2 * LEAF_RECORDS_LIMIT}"
        )
    if node.compression == 0:
        records = node.records
    else:
        try:
            records = zstandard.ZstdDecompressor().decompress(
                node.records, max_output_size=node.records_size
            )
        except zstandard.ZstdError as error:
            raise InvalidArgumentError(
                f"failed to decompress tar-stream node {cid}: {error}"
            ) from error
    if len(records) != node.records_size:
        raise DataLossError(
            f"tar-stream node {cid} declares {node.records_size} bytes of records"
            f" but holds {len(records)}"
        )
    return memoryview(records)


def _read_reference(tag: int, records: memoryview, position: int, links, cid):
    index, position = decode_varint(records, position)
    if index >= len(links):
        raise InvalidArgumentError(
            f"tar-stream node {cid}: record names link {index} of {len(links)}"
        )
    count_or_length, position = decode_varint(records, position)
    if tag == _DATA:
        return links[index], [(0, count_or_length)], position
    regions = []
    for _ in range(count_or_length):
        offset, position = decode_varint(records, position)
        length, position = decode_varint(records, position)
        regions.append((offset, length))
    return links[index], regions, position


def _read_regions(get: Get, tag: int, link: Link, regions: list[tuple[int, int]]):
    """Yield ``regions`` of the linked file's content, in one pass over it.

    A DATA record has one region that must cover the whole file; SPARSE
    regions must be in ascending order and lie inside the file.
    """
    position = 0
    pending = iter(regions)
    region = next(pending, None)
    for chunk in read_file(get, link.cid):
        end = position + len(chunk)
        while region is not None and region[0] + region[1] <= end:
            yield _slice(chunk, position, region[0], region[0] + region[1])
            region = next(pending, None)
        if region is not None and region[0] < end:
            yield _slice(chunk, position, region[0], end)
            region = (end, region[0] + region[1] - end)
        position = end
        if region is None and tag != _DATA:
            return
    # A sparse map may end with an empty region at the end of the file.
    while region is not None and region[1] == 0 and region[0] <= position:
        region = next(pending, None)
    if region is not None or (tag == _DATA and position != regions[0][1]):
        raise DataLossError(
            f"file {link.cid} has {position} bytes, which does not cover what the"
            " tar stream references"
        )


def _slice(chunk: bytes, chunk_start: int, start: int, end: int) -> memoryview:
    if start < chunk_start:
        raise InvalidArgumentError("sparse regions overlap or are out of order")
    return memoryview(chunk)[start - chunk_start : end - chunk_start]
