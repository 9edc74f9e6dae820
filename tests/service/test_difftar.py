"""The tar stream that records changes: entries, whiteouts, links, times."""

from __future__ import annotations

import io
import os
from pathlib import Path

from ipcs_fs.service.changes import ROOT_PATH, Change, ChangeKind
from ipcs_fs.service.difftar import ChangeTar
from ipcs_fs.tar.entry import EntryKind
from ipcs_fs.tar.reader import TarReader

T_NS = 1_600_000_000_123_456_789


def _read_all(tar: ChangeTar) -> bytes:
    pieces = []
    buffer = bytearray(1000)
    while count := tar.readinto(buffer):
        pieces.append(bytes(buffer[:count]))
    return b"".join(pieces)


def _entries(data: bytes):
    reader = TarReader(io.BytesIO(data), source="test")
    entries = []
    for entry in reader:
        entries.append((entry, reader.read_data(entry.data_size)))
    return entries


def test_change_tar_records_every_kind(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir/file").write_bytes(b"x" * 1500)
    os.link(tmp_path / "dir/file", tmp_path / "dir/second")
    os.symlink("file", tmp_path / "dir/link")
    os.setxattr(tmp_path / "dir/file", "user.note", b"\x00\xff")
    for path in (tmp_path / "dir/file", tmp_path / "dir", tmp_path):
        os.utime(path, ns=(T_NS, T_NS))
    root = bytes(tmp_path)
    changes = [
        Change(ChangeKind.ENTRY, ROOT_PATH, root),
        Change(ChangeKind.ENTRY, b"dir", root + b"/dir"),
        Change(ChangeKind.DELETE, b"dir/deleted"),
        Change(ChangeKind.ENTRY, b"dir/file", root + b"/dir/file"),
        Change(ChangeKind.ENTRY, b"dir/link", root + b"/dir/link"),
        Change(ChangeKind.ENTRY, b"dir/second", root + b"/dir/second"),
        Change(ChangeKind.OPAQUE, b"dir"),
        Change(ChangeKind.DELETE, b"top"),
    ]

    entries = _entries(_read_all(ChangeTar(changes)))

    names = [(entry.name, entry.kind) for entry, _ in entries]
    assert names == [
        (b"./", EntryKind.DIR),
        (b"dir/", EntryKind.DIR),
        (b"dir/.wh.deleted", EntryKind.FILE),
        (b"dir/file", EntryKind.FILE),
        (b"dir/link", EntryKind.SYMLINK),
        (b"dir/second", EntryKind.HARDLINK),
        (b"dir/.wh..wh..opq", EntryKind.FILE),
        (b".wh.top", EntryKind.FILE),
    ]
    file_entry, data = entries[3]
    assert data == b"x" * 1500
    assert file_entry.mtime_ns == T_NS
    assert file_entry.xattrs == {b"user.note": b"\x00\xff"}
    assert entries[4][0].linkname == b"file"
    assert entries[5][0].linkname == b"dir/file"
    whiteout = entries[2][0]
    assert (whiteout.mode, whiteout.uid, whiteout.mtime_ns, whiteout.size) == (
        0,
        0,
        0,
        0,
    )


def test_change_tar_clamps_to_source_date_epoch(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"f")
    os.utime(tmp_path / "f", ns=(T_NS, T_NS))
    epoch = 1_000_000_000_000_000_000
    changes = [
        Change(ChangeKind.ENTRY, b"f", bytes(tmp_path / "f")),
        Change(ChangeKind.DELETE, b"g"),
    ]

    entries = _entries(ChangeTar(changes, source_date_epoch_ns=epoch).read())

    assert [entry.mtime_ns for entry, _ in entries] == [epoch, epoch]


def test_change_tar_read_sizes_concatenate(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(os.urandom(5000))
    changes = [Change(ChangeKind.ENTRY, b"f", bytes(tmp_path / "f"))]
    whole = ChangeTar(changes).read()
    pieces = ChangeTar(changes)

    joined = b"".join(iter(lambda: pieces.read(333), b""))

    assert joined == whole
    assert len(whole) % 512 == 0
    assert whole.endswith(bytes(1024))
