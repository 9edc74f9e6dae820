"""Write CARv1 streams: a header naming the roots, then one section per block."""

from __future__ import annotations

from collections.abc import Sequence
from typing import BinaryIO

from ..errors import InvalidArgumentError
from ..ids import Cid
from ..unixfs.wire import encode_varint
from . import cbor

__all__ = ["CarWriter", "encode_header"]


def encode_header(roots: Sequence[Cid]) -> bytes:
    """Return the varint-prefixed DAG-CBOR header ``{"roots": [...], "version": 1}``.

    Raises InvalidArgumentError when ``roots`` is empty: go-car and kubo's
    ``ipfs dag import`` reject a CARv1 without roots.
    """
    if not roots:
        raise InvalidArgumentError("failed to write CAR header: no root CID given")
    header = cbor.encode({"roots": list(roots), "version": 1})
    return encode_varint(len(header)) + header


class CarWriter:
    """Write a CARv1 stream to ``stream``: the header at once, then sections.

    The writer trusts its caller: it neither hashes blocks nor skips repeats.
    It does not close ``stream``. ``size`` counts the bytes written so far.
    """

    def __init__(self, stream: BinaryIO, roots: Sequence[Cid]) -> None:
        self._stream = stream
        self.roots = tuple(roots)
        header = encode_header(self.roots)
        stream.write(header)
        self.size = len(header)
        self.blocks = 0

    def write(self, cid: Cid, block: bytes) -> None:
        """Append the section of ``block``: its length, binary CID and bytes."""
        prefix = encode_varint(len(cid.raw) + len(block)) + cid.raw
        self._stream.write(prefix)
        self._stream.write(block)
        self.size += len(prefix) + len(block)
        self.blocks += 1
