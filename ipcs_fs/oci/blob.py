"""Reading blobs with their digest and size checked as the bytes pass.

A *blob* is the content that a descriptor points at. Every blob read from an
image source goes through :class:`VerifyingReader`, so a tampered or truncated
blob raises :class:`~ipcs_fs.errors.DataLossError` naming its digest instead of
reaching the converter.
"""

from __future__ import annotations

import hashlib
import io
from typing import TYPE_CHECKING, BinaryIO

from ..errors import DataLossError
from ..ids import Digest

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["MAX_DOCUMENT_SIZE", "READ_SIZE", "VerifyingReader", "read_up_to"]

READ_SIZE = 1 << 20
"""Bytes asked for per read from files and decompressors."""

MAX_DOCUMENT_SIZE = 4 << 20
"""Largest manifest, index or config read into memory: 4 MiB, the limit of
containers/image (``iolimits.MaxManifestBodySize``), which it aligns with
Docker's registry."""


def read_up_to(stream: BinaryIO, size: int) -> bytes:
    """Read ``size`` bytes from ``stream``, fewer only at end of stream.

    Raw streams may return fewer bytes than requested before their end.
    """
    chunks = []
    remaining = size
    while remaining > 0:
        data = stream.read(remaining)
        if not data:
            break
        chunks.append(data)
        remaining -= len(data)
    return b"".join(chunks)


class VerifyingReader(io.RawIOBase):
    """A readable stream of one blob that checks its size and sha256.

    The digest is checked as soon as ``size`` bytes have passed, and both again
    at end of stream. On a mismatch the read that detects it raises
    DataLossError naming the digest and ``location``, and returns no byte beyond
    the declared size. A caller that stops before ``size`` bytes gets no check.
    Closing the reader closes ``raw``.
    """

    def __init__(self, raw: BinaryIO, digest: Digest, size: int, location: str) -> None:
        super().__init__()
        self._raw = raw
        self._digest = digest
        self._size = size
        self._location = location
        self._hash = hashlib.sha256()
        self._count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        limit = min(len(view), self._size - self._count + 1)
        readinto = getattr(self._raw, "readinto", None)
        if readinto is not None:
            count = readinto(view[:limit]) or 0
        else:
            data = self._raw.read(limit)
            count = len(data)
            view[:count] = data
        self._account(view[:count])
        return count

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        data = self._raw.read(min(size, self._size - self._count + 1))
        self._account(data)
        return data

    def readall(self) -> bytes:
        chunks = []
        while chunk := self.read(READ_SIZE):
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()

    def _account(self, data: bytes | memoryview) -> None:
        if not data:
            # End of stream: an empty blob has had no other chance to be checked.
            self._check_size()
            self._check_digest()
            return
        self._count += len(data)
        if self._count > self._size:
            self._check_size()
        self._hash.update(data)
        if self._count == self._size:
            self._check_digest()

    def _check_size(self) -> None:
        if self._count > self._size:
            reason = f"content is longer than the expected {self._size} bytes"
        elif self._count < self._size:
            reason = f"content ends after {self._count} of {self._size} bytes"
        else:
            return
        raise DataLossError(
            f"failed to verify blob {self._digest} in {self._location}: {reason}"
        )

    def _check_digest(self) -> None:
        actual = Digest.from_hash(self._hash)
        if actual != self._digest:
            raise DataLossError(
                f"failed to verify blob {self._digest} in {self._location}:"
                f" content hashes to {actual}"
            )
