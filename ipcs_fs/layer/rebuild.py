"""Read a file-granular layer back: its root, its tree, and its original tar.

:func:`read_layer_root` decodes and checks the layer root block.
:class:`RebuiltTar` is a readable stream of the original tar, rebuilt from the
tar stream and the content DAGs and hashed as it goes. When the stream reaches
its end, it raises DataLossError unless the bytes hash to the layer's diff_id
and have its declared length. So a consumer that reads to the end (the tar reader
does, to collect the trailer) never accepts a tar that is not the original.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..errors import DataLossError, InvalidArgumentError
from ..ids import DAG_PB, Cid, Digest
from ..unixfs import DataType, Link, decode_data, decode_node
from .records import LayerHeader, decode_layer_header
from .tarstream import iter_tar_stream

__all__ = [
    "ROOTFS_NAME",
    "TAR_STREAM_NAME",
    "LayerRoot",
    "RebuiltTar",
    "read_layer_root",
]

ROOTFS_NAME = b"rootfs"
TAR_STREAM_NAME = b"tar-stream"

Get = Callable[[Cid], bytes]


@dataclass(slots=True)
class LayerRoot:
    """A decoded layer root: its header and its two links."""

    cid: Cid
    header: LayerHeader
    rootfs: Link
    tar_stream: Link

    @property
    def diff_id(self) -> Digest:
        return Digest(self.header.diff_id.hex())


def read_layer_root(get: Get, cid: Cid) -> LayerRoot:
    """Fetch and decode the layer root ``cid``, checking its shape."""
    if cid.codec != DAG_PB:
        raise InvalidArgumentError(
            f"invalid layer root {cid}: codec {cid.codec_name}, expected dag-pb"
        )
    try:
        return _decode_layer_root(cid, get(cid))
    except InvalidArgumentError as error:
        raise InvalidArgumentError(f"invalid layer root {cid}: {error}") from error


def _decode_layer_root(cid: Cid, block: bytes) -> LayerRoot:
    node = decode_node(block)
    names = [link.name for link in node.links]
    if names != [ROOTFS_NAME, TAR_STREAM_NAME]:
        raise InvalidArgumentError(
            f"links are {names!r}, expected {[ROOTFS_NAME, TAR_STREAM_NAME]!r}"
        )
    message = decode_data(node.data or b"")
    if message.type != DataType.DIRECTORY or message.layer_header is None:
        raise InvalidArgumentError("the node is not a directory with a layer header")
    header = decode_layer_header(message.layer_header)
    return LayerRoot(cid, header, node.links[0], node.links[1])


class RebuiltTar:
    """A readable stream of a layer's original tar, verified at its end.

    ``expected_diff_id``, when given, must equal the layer header's diff_id
    (the image config's value, which the header cannot vouch for itself).
    ``max_bytes`` bounds the tar's length whatever the header declares.
    """

    def __init__(
        self,
        get: Get,
        root: LayerRoot,
        *,
        expected_diff_id: Digest | None = None,
        max_bytes: int | None = None,
    ) -> None:
        if expected_diff_id is not None and expected_diff_id != root.diff_id:
            raise DataLossError(
                f"layer {root.cid} records diff_id {root.diff_id}, but the image"
                f" config lists {expected_diff_id}"
            )
        limit = root.header.tar_size
        if max_bytes is not None:
            limit = min(limit, max_bytes)
        self._root = root
        self._pieces: Iterator = iter_tar_stream(
            get, root.tar_stream.cid, max_tar_size=limit
        )
        self._current = memoryview(b"")
        self._sha256 = hashlib.sha256()
        self.size = 0
        self._verified = False

    def read(self, size: int = -1) -> bytes:
        """Return up to ``size`` bytes (all that is left when negative)."""
        if size < 0:
            return b"".join(self._drain())
        while not self._current:
            if not self._next_piece():
                return b""
        data = bytes(self._current[:size])
        self._current = self._current[len(data) :]
        return data

    def readinto(self, buffer) -> int:
        """Fill ``buffer`` with up to its length of bytes; 0 at the end."""
        while not self._current:
            if not self._next_piece():
                return 0
        count = min(len(buffer), len(self._current))
        memoryview(buffer)[:count] = self._current[:count]
        self._current = self._current[count:]
        return count

    def close(self) -> None:
        """Stop reading; nothing is held open, so nothing else happens."""
        self._pieces = iter(())
        self._current = memoryview(b"")

    def verify(self) -> None:
        """Read what is left and check the diff_id; idempotent."""
        for _ in self._drain():
            pass

    def _drain(self):
        while True:
            if self._current:
                yield bytes(self._current)
                self._current = memoryview(b"")
            if not self._next_piece():
                return

    def _next_piece(self) -> bool:
        for piece in self._pieces:
            if piece:
                self._sha256.update(piece)
                self.size += len(piece)
                self._current = memoryview(piece)
                return True
        self._check_end()
        return False

    def _check_end(self) -> None:
        if self._verified:
            return
        actual = Digest(self._sha256.hexdigest())
        if actual != self._root.diff_id or self.size != self._root.header.tar_size:
            raise DataLossError(
                f"layer {self._root.cid} rebuilds a tar of {self.size} bytes with"
                f" diff_id {actual}, but its header records"
                f" {self._root.header.tar_size} bytes with diff_id"
                f" {self._root.diff_id}"
            )
        self._verified = True
