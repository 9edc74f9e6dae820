"""Build small tar layers for the apply tests with the standard tarfile module.

Each builder returns a member: a ``TarInfo`` with its data. :func:`layer`
joins members into PAX tar bytes. Times are given in nanoseconds and written
as PAX ``mtime`` records, xattrs as ``SCHILY.xattr.*`` records, so both reach
the engine exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from fixtures.tree import ROOT, Node, NodeType, assert_tree_matches, snapshot
from ipcs_fs.apply import ApplyOptions, ApplyStats, apply_layer

__all__ = [
    "T0_NS",
    "GeneratedLayer",
    "Member",
    "apply",
    "apply_bytes",
    "assert_tree",
    "device",
    "dir_node",
    "directory",
    "fifo",
    "file",
    "file_node",
    "hardlink",
    "layer",
    "pax_time",
    "symlink",
    "symlink_node",
]

T0_NS = 1_700_000_000_123_456_789
"""Default mtime of members: 2023-11-14T22:13:20.123456789Z."""

Member = tuple[tarfile.TarInfo, bytes]


def pax_time(ns: int) -> str:
    """Format nanoseconds since the epoch as a PAX time record value."""
    sign = "-" if ns < 0 else ""
    seconds, fraction = divmod(abs(ns), 1_000_000_000)
    return f"{sign}{seconds}.{fraction:09d}"


def _info(
    name: str | bytes,
    kind: bytes,
    *,
    mode: int,
    uid: int = 0,
    gid: int = 0,
    mtime_ns: int = T0_NS,
    xattrs: Mapping[bytes, bytes] | None = None,
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(os.fsdecode(name))
    info.type = kind
    info.mode = mode
    info.uid = uid
    info.gid = gid
    info.mtime = mtime_ns // 1_000_000_000
    info.pax_headers = {"mtime": pax_time(mtime_ns)}
    for key, value in (xattrs or {}).items():
        record = "SCHILY.xattr." + key.decode()
        info.pax_headers[record] = value.decode("utf-8", "surrogateescape")
    return info


def file(
    name: str | bytes, data: bytes = b"", *, mode: int = 0o644, **fields: object
) -> Member:
    """Return a regular file member."""
    info = _info(name, tarfile.REGTYPE, mode=mode, **fields)  # type: ignore[arg-type]
    info.size = len(data)
    return info, data


def directory(name: str | bytes, *, mode: int = 0o755, **fields: object) -> Member:
    """Return a directory member."""
    return _info(name, tarfile.DIRTYPE, mode=mode, **fields), b""  # type: ignore[arg-type]


def symlink(name: str | bytes, target: str | bytes, **fields: object) -> Member:
    """Return a symbolic link member."""
    info = _info(name, tarfile.SYMTYPE, mode=0o777, **fields)  # type: ignore[arg-type]
    info.linkname = os.fsdecode(target)
    return info, b""


def hardlink(
    name: str | bytes, target: str | bytes, *, mode: int = 0o644, **fields: object
) -> Member:
    """Return a hard link member."""
    info = _info(name, tarfile.LNKTYPE, mode=mode, **fields)  # type: ignore[arg-type]
    info.linkname = os.fsdecode(target)
    return info, b""


def device(
    name: str | bytes, kind: bytes, major: int, minor: int, *, mode: int = 0o600
) -> Member:
    """Return a character (``tarfile.CHRTYPE``) or block device member."""
    info = _info(name, kind, mode=mode)
    info.devmajor = major
    info.devminor = minor
    return info, b""


def fifo(name: str | bytes, *, mode: int = 0o644) -> Member:
    """Return a fifo member."""
    return _info(name, tarfile.FIFOTYPE, mode=mode), b""


def layer(*members: Member) -> bytes:
    """Return the PAX tar bytes of ``members`` in order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buffer.getvalue()


def apply_bytes(
    data: bytes, root: Path, *, source: str = "test-layer", **options: object
) -> ApplyStats:
    """Apply one layer held in memory to ``root``."""
    return apply_layer(
        io.BytesIO(data), root, source=source, options=ApplyOptions(**options)
    )


def apply(root: Path, *members: Member, **options: object) -> ApplyStats:
    """Build a layer of ``members`` and apply it to ``root``."""
    return apply_bytes(layer(*members), root, **options)


class GeneratedLayer(io.RawIOBase):
    """A layer of one large file whose data is generated while it is read.

    The file is ``size`` bytes of a repeating 1 MiB pattern, so a test can
    apply a layer of several GiB without holding it in memory.
    """

    def __init__(self, name: str, size: int) -> None:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = T0_NS // 1_000_000_000
        header = info.tobuf(format=tarfile.PAX_FORMAT)
        padding = -size % 512
        self.pattern = bytes(range(256)) * 4096
        self._parts = self._generate(header, size, padding)
        self._pending = memoryview(b"")

    def _generate(self, header: bytes, size: int, padding: int) -> Iterator[bytes]:
        yield header
        full, rest = divmod(size, len(self.pattern))
        for _ in range(full):
            yield self.pattern
        yield self.pattern[:rest] + bytes(padding) + bytes(1024)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            self._pending = memoryview(next(self._parts, b""))
            if not self._pending:
                return 0
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count


def file_node(
    data: bytes,
    *,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    mtime_ns: int | None = T0_NS,
    xattrs: Mapping[bytes, bytes] | None = None,
    link_group: bytes | None = None,
) -> Node:
    """Return the expected node of a regular file holding ``data``."""
    return Node(
        type=NodeType.FILE,
        mode=mode,
        uid=uid,
        gid=gid,
        mtime_ns=mtime_ns,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        xattrs=dict(xattrs or {}),
        link_group=link_group,
    )


def dir_node(
    *,
    mode: int = 0o755,
    uid: int = 0,
    gid: int = 0,
    mtime_ns: int | None = T0_NS,
    xattrs: Mapping[bytes, bytes] | None = None,
) -> Node:
    """Return the expected node of a directory; ``mtime_ns=None`` skips the time."""
    return Node(
        type=NodeType.DIR,
        mode=mode,
        uid=uid,
        gid=gid,
        mtime_ns=mtime_ns,
        xattrs=dict(xattrs or {}),
    )


def symlink_node(target: bytes, *, mtime_ns: int | None = T0_NS) -> Node:
    """Return the expected node of a symbolic link owned by 0:0."""
    return Node(
        type=NodeType.SYMLINK,
        mode=0o777,
        uid=0,
        gid=0,
        mtime_ns=mtime_ns,
        target=target,
        xattrs={},
    )


def assert_tree(root: Path, expected: Mapping[bytes, Node]) -> None:
    """Assert that ``root`` contains exactly ``expected``, the root unchecked.

    A non-directory without a ``link_group`` must have no other name.
    """
    full = {ROOT: Node(type=NodeType.DIR)}
    for path, node in expected.items():
        if node.type is not NodeType.DIR and node.link_group is None:
            node = dataclasses.replace(node, link_group=path)
        full[path] = node
    assert_tree_matches(full, snapshot(root))
