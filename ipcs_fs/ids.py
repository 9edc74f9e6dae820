"""Content identifiers: :class:`Cid` for IPFS blocks, :class:`Digest` for OCI blobs.

The two are distinct types on purpose. A ``Digest`` is ``sha256:HEX`` over the
bytes of a stored blob (an OCI descriptor's digest, or a diff_id over an
uncompressed tar). A ``Cid`` names an IPFS block: version, codec and multihash.
ipcs-fs writes CIDv1 with sha2-256 only; it reads CIDv0 too, since kubo still
prints it for dag-pb blocks.

A layer root block links the two worlds: its descriptor digest is the sha256
of the root block, so ``Cid.from_digest(d, DAG_PB).digest() == d``.
"""

from __future__ import annotations

import base64
import hashlib
import re

from multiformats import CID as _MultiformatsCid

from .errors import InvalidArgumentError

__all__ = ["Cid", "Digest", "RAW", "DAG_PB", "SHA2_256"]

RAW = 0x55
DAG_PB = 0x70
SHA2_256 = 0x12
_SHA256_LENGTH = 32
_CODEC_NAMES = {RAW: "raw", DAG_PB: "dag-pb"}


def _read_varint(data: bytes, offset: int) -> tuple[int, int]:
    """Decode an unsigned LEB128 varint at ``offset``; return (value, next offset)."""
    value = 0
    shift = 0
    while True:
        if offset >= len(data) or shift > 63:
            raise InvalidArgumentError("invalid varint in CID")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, offset
        shift += 7


class Cid:
    """A CID held in its binary form, cheap to hash, compare and copy.

    Only sha2-256 multihashes are accepted, since they are the only ones this
    project can verify. Build one with :meth:`for_block`, :meth:`parse`,
    :meth:`from_bytes` or :meth:`from_digest`.
    """

    __slots__ = ("raw", "codec", "_text")

    def __init__(self, raw: bytes, codec: int) -> None:
        self.raw = raw
        self.codec = codec
        self._text: str | None = None

    @classmethod
    def for_block(cls, codec: int, block: bytes | memoryview) -> Cid:
        """Return the CIDv1 of ``block`` under ``codec`` with a sha2-256 hash."""
        digest = hashlib.sha256(block).digest()
        return cls(bytes((0x01, codec, SHA2_256, _SHA256_LENGTH)) + digest, codec)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Cid:
        """Parse a binary CID (v0 or v1), raising InvalidArgumentError if malformed."""
        raw = bytes(raw)
        if len(raw) == 34 and raw[0] == SHA2_256 and raw[1] == _SHA256_LENGTH:
            return cls(bytes((0x01, DAG_PB)) + raw, DAG_PB)
        version, offset = _read_varint(raw, 0)
        if version != 1:
            raise InvalidArgumentError(f"unsupported CID version {version}")
        codec, offset = _read_varint(raw, offset)
        hash_code, offset = _read_varint(raw, offset)
        length, offset = _read_varint(raw, offset)
        if hash_code != SHA2_256 or length != _SHA256_LENGTH:
            raise InvalidArgumentError(
                f"unsupported multihash 0x{hash_code:x} of {length} bytes in CID;"
                " only sha2-256 is accepted"
            )
        if len(raw) != offset + _SHA256_LENGTH:
            raise InvalidArgumentError("invalid CID: wrong digest length")
        return cls(raw, codec)

    @classmethod
    def parse(cls, text: str) -> Cid:
        """Parse the text form of a CID in any multibase, or a CIDv0 ``Qm...``."""
        try:
            parsed = _MultiformatsCid.decode(text.strip())
        except Exception as error:  # multiformats raises several unrelated types
            raise InvalidArgumentError(f"invalid CID {text!r}: {error}") from error
        return cls.from_bytes(bytes(parsed.set(version=1)))

    @classmethod
    def from_digest(cls, digest: Digest, codec: int) -> Cid:
        """Return the CIDv1 whose sha2-256 multihash carries ``digest``."""
        prefix = bytes((0x01, codec, SHA2_256, _SHA256_LENGTH))
        return cls(prefix + bytes.fromhex(digest.hex), codec)

    @property
    def hash_digest(self) -> bytes:
        """The 32 bytes of the sha2-256 hash."""
        return self.raw[-_SHA256_LENGTH:]

    def digest(self) -> Digest:
        """Return the OCI digest of the block this CID names."""
        return Digest(self.hash_digest.hex())

    def matches(self, block: bytes | memoryview) -> bool:
        """Tell whether ``block`` hashes to this CID."""
        return hashlib.sha256(block).digest() == self.hash_digest

    @property
    def codec_name(self) -> str:
        return _CODEC_NAMES.get(self.codec, f"0x{self.codec:x}")

    def __str__(self) -> str:
        if self._text is None:
            text = base64.b32encode(self.raw).decode("ascii").lower().rstrip("=")
            self._text = "b" + text
        return self._text

    def __repr__(self) -> str:
        return f"Cid({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cid) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __lt__(self, other: Cid) -> bool:
        return self.raw < other.raw


_DIGEST_PATTERN = re.compile(r"sha256:([0-9a-f]{64})")


class Digest:
    """An OCI digest, ``sha256:`` followed by 64 lower-case hex digits."""

    __slots__ = ("hex",)

    def __init__(self, hex_digest: str) -> None:
        self.hex = hex_digest

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``sha256:HEX``, raising InvalidArgumentError for anything else."""
        match = _DIGEST_PATTERN.fullmatch(text)
        if match is None:
            raise InvalidArgumentError(
                f"invalid digest {text!r}: expected sha256: and 64 hex digits"
            )
        return cls(match.group(1))

    @classmethod
    def of(cls, data: bytes | memoryview) -> Digest:
        """Return the digest of ``data``."""
        return cls(hashlib.sha256(data).hexdigest())

    @classmethod
    def from_hash(cls, sha256: hashlib._Hash) -> Digest:
        """Return the digest that a finished ``hashlib.sha256`` object holds."""
        return cls(sha256.hexdigest())

    def __str__(self) -> str:
        return "sha256:" + self.hex

    def __repr__(self) -> str:
        return f"Digest({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Digest) and other.hex == self.hex

    def __hash__(self) -> int:
        return hash(self.hex)
