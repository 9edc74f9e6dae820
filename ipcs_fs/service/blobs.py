"""Read blobs from containerd's content directory on disk.

containerd's local content store keeps each committed blob in one file named
after its sha256: ``CONTAINERD_ROOT/io.containerd.content.v1.content/blobs/
sha256/HEX``. The plugin reads layer blobs there instead of through the
content service. The service needs the caller's namespace, which containerd
1.7 does not always forward to a proxy plugin, and a file read is faster than
a gRPC stream.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from ..errors import DataLossError, InvalidArgumentError, NotFoundError
from ..ids import Digest

__all__ = ["MAX_ROOT_BLOCK_SIZE", "ContentDirectory"]

MAX_ROOT_BLOCK_SIZE = 1 << 20
"""No block of a file-granular layer, the root included, exceeds 1 MiB."""


class ContentDirectory:
    """The blob files of one containerd content store.

    Blobs are shared by every namespace on disk, so reading needs no namespace.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def path_of(self, digest: Digest) -> Path:
        """Return the file that contains the blob ``digest``."""
        return self.path / digest.hex

    def open(self, digest: Digest) -> BinaryIO:
        """Open the blob ``digest`` for reading; the caller closes it.

        Raises NotFoundError naming the digest and the directory.
        """
        try:
            return open(self.path_of(digest), "rb")
        except FileNotFoundError as error:
            raise NotFoundError(
                f"failed to read blob {digest}: not in containerd's content"
                f" directory {self.path}"
            ) from error

    def read_verified(self, digest: Digest, size: int) -> bytes:
        """Read a small blob whole and check its length and sha256.

        ``size`` is the descriptor's size. Raises InvalidArgumentError when it
        exceeds :data:`MAX_ROOT_BLOCK_SIZE`, NotFoundError for a missing blob
        and DataLossError when the bytes do not match.
        """
        if size > MAX_ROOT_BLOCK_SIZE:
            raise InvalidArgumentError(
                f"invalid layer {digest}: root block of {size} bytes exceeds"
                f" {MAX_ROOT_BLOCK_SIZE}"
            )
        with self.open(digest) as stream:
            data = stream.read(MAX_ROOT_BLOCK_SIZE + 1)
        actual = Digest.of(data)
        if actual != digest or len(data) != size:
            raise DataLossError(
                f"failed to read blob {digest} from {self.path}: found"
                f" {len(data)} bytes with digest {actual}, expected {size} bytes"
            )
        return data
