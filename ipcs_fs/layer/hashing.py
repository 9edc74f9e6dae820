"""A stream wrapper that computes a tar's diff_id while it is read."""

from __future__ import annotations

import hashlib

from ..errors import DataLossError
from ..ids import Digest

__all__ = ["HashingReader"]


class HashingReader:
    """Pass reads through from ``stream`` while hashing and counting them.

    With ``expected``, the read that reaches the end of the stream raises
    DataLossError naming ``source`` unless the bytes hash to ``expected``. The
    tar reader reads to the end to collect the trailer, so a layer is checked
    before anyone takes it as complete.
    """

    def __init__(
        self, stream, *, expected: Digest | None = None, source: str = ""
    ) -> None:
        self._stream = stream
        self._expected = expected
        self._source = source
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._account(data)
        return data

    def readinto(self, buffer) -> int:
        count = self._stream.readinto(buffer)
        self._account(memoryview(buffer)[:count])
        return count

    def close(self) -> None:
        self._stream.close()

    @property
    def diff_id(self) -> Digest:
        """The digest of what has been read so far."""
        return Digest(self.sha256.hexdigest())

    def _account(self, data) -> None:
        if data:
            self.sha256.update(data)
            self.size += len(data)
        elif self._expected is not None and self.diff_id != self._expected:
            raise DataLossError(
                f"layer {self._source} hashes to diff_id {self.diff_id}, but the"
                f" image config lists {self._expected}"
            )
