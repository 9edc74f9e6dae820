"""Convert one uncompressed layer tar into a file-granular layer DAG.

One pass over the tar: each entry's data becomes a content DAG (raw leaves of
256 KiB, kubo-identical), its metadata an entry record in the ``rootfs`` tree,
and its raw header bytes a record of the tar stream. The layer root ties the
two together with the layer header (diff_id, tar size). Blocks go to ``put``
as soon as they are complete, so memory holds the tree's entries, not the data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import InvalidArgumentError
from ..ids import DAG_PB, Cid, Digest
from ..readahead import ReadAhead
from ..tar.entry import EntryKind, TarEntry
from ..tar.reader import TarReader
from ..unixfs import (
    CHUNK_SIZE,
    DataType,
    FileBuilder,
    FileDag,
    Link,
    UnixfsData,
    encode_data,
    encode_node,
)
from .hashing import HashingReader
from .rebuild import ROOTFS_NAME, TAR_STREAM_NAME
from .records import LayerHeader, encode_layer_header
from .tarstream import TarStreamWriter
from .tree import TreeBuilder

__all__ = ["ConvertedLayer", "convert_layer"]

log = logging.getLogger(__name__)

_READ_SIZE = 1 << 20
_ZEROS = bytes(_READ_SIZE)

Put = Callable[[Cid, bytes], None]


@dataclass(slots=True)
class ConvertedLayer:
    """The result of converting one layer."""

    root_cid: Cid
    root_block: bytes
    diff_id: Digest
    tar_size: int
    entry_count: int
    content_size: int

    @property
    def digest(self) -> Digest:
        """The descriptor digest: the sha256 of the root block."""
        return self.root_cid.digest()


def convert_layer(
    stream,
    put: Put,
    *,
    source: str,
    expected_diff_id: Digest | None = None,
    read_ahead: bool = False,
) -> ConvertedLayer:
    """Convert the uncompressed tar read from ``stream`` into a layer DAG.

    Every block is handed to ``put(cid, block)``, the root block last. ``source``
    names the layer in errors and logs. When ``expected_diff_id`` is given (the
    image config's diff_id for this layer), a tar that hashes differently raises
    DataLossError once the whole tar has been read, before the layer root is
    written; the blocks written so far are then unreferenced.

    With ``read_ahead``, a thread of its own reads ``stream`` and computes the
    diff_id, so decompression (when ``stream`` decompresses) and that hash run
    beside the parsing and chunk hashing of the calling thread. ``stream`` is
    then closed on return.
    """
    hashing = HashingReader(stream, expected=expected_diff_id, source=source)
    if not read_ahead:
        return _convert(hashing, hashing, put, source)
    with ReadAhead(hashing) as tar:
        return _convert(tar, hashing, put, source)


def _convert(tar, hashing: HashingReader, put: Put, source: str) -> ConvertedLayer:
    """Convert the tar read from ``tar``, which ``hashing`` hashes as it is read."""
    started = time.monotonic()
    reader = TarReader(tar, source=source)
    tar_stream = TarStreamWriter(put)
    entry_count = 0
    # A large tree spills to temporary files; leaving the block frees them
    # at once when the tar turns out to be bad.
    with TreeBuilder(source) as tree:
        for entry in reader:
            entry_count += 1
            tar_stream.add_raw(entry.raw_header)
            content = _convert_data(reader, entry, tar_stream, put, source)
            tree.add(entry, content)
        tar_stream.add_raw(reader.trailer)
        diff_id = hashing.diff_id
        rootfs = tree.finish(put)
    tar_link = tar_stream.finish()
    header = LayerHeader(
        diff_id=hashing.sha256.digest(),
        tar_size=hashing.size,
        root=rootfs.root,
        entry_count=entry_count,
        content_size=rootfs.content_size,
    )
    root_block = _encode_root(rootfs.cid, rootfs.tsize, tar_link, header)
    root_cid = Cid.for_block(DAG_PB, root_block)
    put(root_cid, root_block)
    log.debug(
        "converted layer %s: %d entries, %d bytes of tar, root %s, %.2fs",
        source,
        entry_count,
        hashing.size,
        root_cid,
        time.monotonic() - started,
    )
    return ConvertedLayer(
        root_cid, root_block, diff_id, hashing.size, entry_count, rootfs.content_size
    )


def _encode_root(rootfs_cid: Cid, rootfs_tsize: int, tar_link, header) -> bytes:
    links = [
        Link(rootfs_cid, ROOTFS_NAME, rootfs_tsize),
        Link(tar_link.cid, TAR_STREAM_NAME, tar_link.tsize),
    ]
    data = UnixfsData(DataType.DIRECTORY, layer_header=encode_layer_header(header))
    return encode_node(links, encode_data(data))


def _convert_data(
    reader: TarReader,
    entry: TarEntry,
    tar_stream: TarStreamWriter,
    put: Put,
    source: str,
) -> FileDag | None:
    """Store the entry's data; return the content DAG a regular file links to."""
    if entry.kind is EntryKind.FILE and entry.sparse is not None:
        content = _build_sparse(reader, entry, put, source)
        if entry.data_size:
            tar_stream.add_sparse(content, entry.sparse)
        return content
    if entry.kind is not EntryKind.FILE and entry.data_size == 0:
        return None
    content = _build_plain(reader, entry, put, source)
    if entry.data_size:
        tar_stream.add_data(content, entry.data_size)
    return content if entry.kind is EntryKind.FILE else None


def _build_plain(reader: TarReader, entry: TarEntry, put: Put, source: str) -> FileDag:
    builder = FileBuilder(put)
    _copy_data(reader, builder, entry.data_size, entry, source)
    return builder.finish()


def _build_sparse(reader: TarReader, entry: TarEntry, put: Put, source: str) -> FileDag:
    """Build the full content of a sparse file, holes as zeros."""
    assert entry.sparse is not None
    builder = FileBuilder(put)
    position = 0
    for offset, length in entry.sparse:
        if offset < position or offset + length > entry.size:
            raise InvalidArgumentError(
                f"invalid sparse map of {entry.name!r} in {source}: region"
                f" ({offset}, {length}) overlaps another or passes the file size"
                f" {entry.size}"
            )
        _write_zeros(builder, offset - position)
        _copy_data(reader, builder, length, entry, source)
        position = offset + length
    _write_zeros(builder, entry.size - position)
    return builder.finish()


def _copy_data(
    reader: TarReader, builder: FileBuilder, length: int, entry: TarEntry, source: str
) -> None:
    # Reads of one chunk each give the builder whole chunks as bytes objects,
    # which reach the block store without another copy.
    while length:
        data = reader.read_data(min(length, CHUNK_SIZE))
        if not data:
            raise InvalidArgumentError(
                f"invalid tar in {source}: data of {entry.name!r} ends early"
            )
        builder.write(data)
        length -= len(data)


def _write_zeros(builder: FileBuilder, count: int) -> None:
    while count:
        piece = min(count, _READ_SIZE)
        builder.write(memoryview(_ZEROS)[:piece])
        count -= piece
