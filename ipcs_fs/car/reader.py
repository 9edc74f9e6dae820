"""Read CARv1 streams, checking every block against its CID.

A CARv1 stream is a header and then sections, each framed by an unsigned
varint (LEB128, at most 9 bytes, shortest form) giving its length::

    varint(len(header)) header            DAG-CBOR {"roots": [CID...], "version": 1}
    varint(len(cid) + len(block)) cid block
    ...                                   until the end of the stream

A section's CID is binary: CIDv0 (34 bytes, 0x12 0x20 and a sha2-256 digest)
or CIDv1 (varints for version, codec, multihash code and length, then the
digest). Every error names the byte offset where the problem starts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import BinaryIO

from ..errors import DataLossError, InvalidArgumentError
from ..ids import Cid
from ..unixfs.wire import decode_varint
from . import cbor

__all__ = ["MAX_BLOCK_SIZE", "MAX_HEADER_SIZE", "CarReader"]

MAX_BLOCK_SIZE = 2 * 1024 * 1024
"""Largest block accepted, the limit of kubo 0.40 and later. ipcs-fs itself
writes no block over 1 MiB, but a CAR of other IPFS data may hold larger ones."""

MAX_HEADER_SIZE = 1024 * 1024
"""Largest header accepted: room for about 27,000 root CIDs."""

# A CID of a supported kind (CIDv1, sha2-256, any codec up to 2**63) is at
# most 9 + 9 + 1 + 1 + 32 bytes. More room costs nothing.
_MAX_CID_SIZE = 128
_MAX_VARINT_BYTES = 9


class CarReader:
    """Read the CARv1 stream ``stream``; iterate to get ``(cid, block)`` pairs.

    The constructor reads and checks the header, so ``roots`` is known at
    once. Iteration yields each section's block after checking that its
    sha2-256 digest matches the CID. ``source`` names the stream in errors.
    ``offset`` is the number of bytes consumed so far.

    Raises InvalidArgumentError naming the offset for a malformed header or
    section (a CARv2 stream included), and DataLossError naming the CID and
    offset for a block that does not match its CID. The reader does not
    close ``stream``.
    """

    def __init__(self, stream: BinaryIO, *, source: str) -> None:
        self._stream = stream
        self.source = source
        self.offset = 0
        self.roots = self._read_header()

    def __iter__(self) -> Iterator[tuple[Cid, bytes]]:
        while True:
            start = self.offset
            length = self._read_varint(allow_end=True)
            if length is None:
                return
            yield self._read_section(start, length)

    def _read_header(self) -> tuple[Cid, ...]:
        length = self._read_varint(allow_end=False)
        assert length is not None
        if length == 0 or length > MAX_HEADER_SIZE:
            raise self._invalid(
                0, f"header length {length} is not between 1 and {MAX_HEADER_SIZE}"
            )
        start = self.offset
        encoded = self._read_exactly(length, start)
        try:
            header = cbor.decode(encoded)
        except InvalidArgumentError as error:
            raise self._invalid(
                start, f"header is not valid DAG-CBOR: {error}"
            ) from None
        return self._check_header(header, start)

    def _check_header(self, header: object, start: int) -> tuple[Cid, ...]:
        if not isinstance(header, dict):
            raise self._invalid(start, "header is not a map")
        version = header.get("version")
        if version != 1:
            raise self._invalid(
                start,
                f"version {version!r}; only CARv1 is read (unpack a CARv2 with"
                " `car extract` or export CARv1 with `ipfs dag export`)",
            )
        if set(header) != {"roots", "version"}:
            raise self._invalid(
                start, f"header keys {sorted(header)}, expected roots and version"
            )
        roots = header["roots"]
        if not isinstance(roots, list) or not roots:
            raise self._invalid(start, "roots is not a non-empty list")
        if not all(isinstance(root, Cid) for root in roots):
            raise self._invalid(start, "roots contains a value that is not a CID")
        return tuple(roots)

    def _read_section(self, start: int, length: int) -> tuple[Cid, bytes]:
        if length == 0 or length > MAX_BLOCK_SIZE + _MAX_CID_SIZE:
            raise self._invalid(
                start,
                f"section length {length} is not between 1 and"
                f" {MAX_BLOCK_SIZE + _MAX_CID_SIZE}",
            )
        body_start = self.offset
        section = self._read_exactly(length, body_start)
        cid, cid_length = self._parse_cid(section, body_start)
        block = section[cid_length:]
        if len(block) > MAX_BLOCK_SIZE:
            raise self._invalid(
                start, f"block {cid} of {len(block)} bytes exceeds {MAX_BLOCK_SIZE}"
            )
        if not cid.matches(block):
            actual = hashlib.sha256(block).hexdigest()
            raise DataLossError(
                f"failed to read block {cid} from CAR {self.source} at byte {start}:"
                f" content does not match its CID (sha256 of the {len(block)} bytes"
                f" is {actual})"
            )
        return cid, block

    def _parse_cid(self, section: bytes, start: int) -> tuple[Cid, int]:
        try:
            length = _cid_length(section)
            if length > len(section):
                raise InvalidArgumentError("the CID runs past the end of the section")
            return Cid.from_bytes(section[:length]), length
        except InvalidArgumentError as error:
            raise self._invalid(start, f"invalid CID: {error}") from None

    def _read_varint(self, *, allow_end: bool) -> int | None:
        start = self.offset
        value = 0
        for index in range(_MAX_VARINT_BYTES):
            byte = self._stream.read(1)
            if not byte:
                if index == 0 and allow_end:
                    return None
                raise self._invalid(start, "the stream ends inside a length varint")
            self.offset += 1
            value |= (byte[0] & 0x7F) << (7 * index)
            if byte[0] < 0x80:
                if byte[0] == 0 and index > 0:
                    raise self._invalid(start, "length varint not in shortest form")
                return value
        raise self._invalid(start, f"length varint longer than {_MAX_VARINT_BYTES}")

    def _read_exactly(self, count: int, start: int) -> bytes:
        data = self._stream.read(count)
        while len(data) < count:
            more = self._stream.read(count - len(data))
            if not more:
                raise self._invalid(
                    start,
                    f"the stream ends after {len(data)} of the {count} bytes announced",
                )
            data += more
        self.offset += count
        return data

    def _invalid(self, offset: int, problem: str) -> InvalidArgumentError:
        return InvalidArgumentError(
            f"invalid CAR {self.source} at byte {offset}: {problem}"
        )


def _cid_length(section: bytes) -> int:
    """Return the length of the binary CID at the start of ``section``."""
    if section[:2] == b"\x12\x20":
        return 34
    offset = 0
    for _ in range(3):  # version, codec, multihash code
        _, offset = decode_varint(section, offset)
    digest_length, offset = decode_varint(section, offset)
    return offset + digest_length
