"""Read a whole tar with TarReader and check that its pieces rebuild it."""

from __future__ import annotations

import hashlib
import io
from typing import BinaryIO

from ipcs_fs.tar import TarEntry, TarReader

__all__ = ["read_all", "read_file_checked"]


def read_all(data: bytes, **options: int) -> tuple[list[TarEntry], list[bytes], bytes]:
    """Return the entries, their data and the trailer of ``data``.

    Fails the test unless raw headers, data and trailer concatenate back to
    ``data`` exactly.
    """
    reader = TarReader(io.BytesIO(data), source="test.tar", **options)
    entries = []
    contents = []
    for entry in reader:
        entries.append(entry)
        contents.append(reader.read_data())
    assert reader.trailer is not None
    rebuilt = b"".join(e.raw_header + c for e, c in zip(entries, contents))
    assert rebuilt + reader.trailer == data
    return entries, contents, reader.trailer


def read_file_checked(
    stream: BinaryIO, source: str, keep_limit: int = 64 << 20
) -> tuple[list[TarEntry], list[bytes | None], str]:
    """Read a tar file in 1 MiB pieces; return entries, small contents and the
    sha256 of the rebuilt stream (raw headers, data, trailer), for comparing
    with the file's own sha256."""
    reader = TarReader(stream, source=source)
    digest = hashlib.sha256()
    entries: list[TarEntry] = []
    contents: list[bytes | None] = []
    buffer = bytearray(1 << 20)
    for entry in reader:
        entries.append(entry)
        digest.update(entry.raw_header)
        kept: list[bytes] | None = [] if entry.data_size <= keep_limit else None
        while count := reader.readinto_data(buffer):
            digest.update(buffer[:count])
            if kept is not None:
                kept.append(bytes(buffer[:count]))
        contents.append(None if kept is None else b"".join(kept))
    assert reader.trailer is not None
    digest.update(reader.trailer)
    return entries, contents, digest.hexdigest()
