"""TarReader on tars written by GNU tar, Python's tarfile and libarchive.

Each tar must come back byte for byte from the reader's pieces, and every
decoded field must equal libarchive's reading of the same tar, entry by entry.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import subprocess
import tarfile
from pathlib import Path

import libarchive  # type: ignore[import-untyped]
import pytest

from ipcs_fs.tar import EntryKind, TarEntry, TarReader

from .libarchive_oracle import expected_from_reader, read_with_libarchive
from .roundtrip import read_file_checked

GIB = 1 << 30
_NEW_MTIME_NS = 4_102_444_800_123_456_789  # 2100-01-01, past 2038
_OLD_MTIME_NS = -315_619_199_500_000_000  # 1960, with half a second
_XATTR_VALUE = b"two\nlines\x00and a NUL"
_IS_ROOT = os.geteuid() == 0


def _check_against_libarchive(path: Path) -> list[TarEntry]:
    """Read ``path`` with both readers; assert the round trip and every field."""
    with open(path, "rb") as stream:
        entries, contents, rebuilt_sha256 = read_file_checked(stream, str(path))
    oracle = read_with_libarchive(str(path))

    assert rebuilt_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(entries) == len(oracle)
    for entry, content, expected in zip(entries, contents, oracle):
        actual = expected_from_reader(
            entry, content if expected.content_sha256 else None
        )
        assert actual == expected, entry.name
    return entries


def _by_name(entries: list[TarEntry]) -> dict[bytes, TarEntry]:
    return {entry.name.removeprefix(b"./").rstrip(b"/"): entry for entry in entries}


# A tree of every kind of file, for GNU tar and libarchive to archive


def _build_tree(
    root: Path,
    *,
    long_names: bool = True,
    special_files: bool = True,
    big_ids: bool = True,
    old_time: bool = True,
    sparse: bool = True,
    xattrs: bool = True,
    non_utf8_name: bool = True,
) -> None:
    root.mkdir()
    (root / "hello.txt").write_bytes(b"hello\n")
    (root / "empty").write_bytes(b"")
    (root / "random.bin").write_bytes(random.Random(7).randbytes(300_000))
    (root / "setuid").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "setuid", 0o4755)
    (root / "sticky" / "nested").mkdir(parents=True)
    os.chmod(root / "sticky", 0o1777)
    (root / "sticky" / "nested" / "file").write_bytes(b"nested")
    os.link(root / "hello.txt", root / "hardlink")
    os.symlink("hello.txt", root / "symlink")
    os.symlink("no/such/target", root / "dangling")
    if non_utf8_name:
        name = os.fsencode(root) + b"/caf\xe9-\xff"
        os.close(os.open(name, os.O_CREAT | os.O_WRONLY))
    medium = root / ("p" * 90) / ("q" * 60)
    medium.mkdir(parents=True)
    (medium / "file").write_bytes(b"medium")
    if long_names:
        deep = root / ("L" * 100) / ("M" * 100)
        deep.mkdir(parents=True)
        (deep / ("file_" + "N" * 150)).write_bytes(b"deep")
        os.symlink("t" * 150, root / "long-target")
    if special_files:
        os.mkfifo(root / "fifo")
        os.mknod(root / "char", 0o620 | 0o020000, os.makedev(1, 3))
        os.mknod(root / "block", 0o640 | 0o060000, os.makedev(7, 200))
    if big_ids:
        (root / "big-ids").write_bytes(b"ids")
        os.chown(root / "big-ids", 3_000_000, 2_500_000)
        (root / "small-ids").write_bytes(b"ids")
        os.chown(root / "small-ids", 1000, 1000)
    if sparse:
        with open(root / "sparse.img", "wb") as file:
            file.truncate(3 << 20)
            file.seek(1 << 20)
            file.write(b"middle")
            file.seek((3 << 20) - 3)
            file.write(b"end")
    if xattrs:
        (root / "xattrs").write_bytes(b"x")
        os.setxattr(root / "xattrs", "user.lines", _XATTR_VALUE)
        os.setxattr(root / "xattrs", "user.empty", b"")
        os.setxattr(root / "xattrs", "trusted.overlay.opaque", b"y")
    os.utime(root / "hello.txt", ns=(_NEW_MTIME_NS, _NEW_MTIME_NS))
    if old_time:
        (root / "old").write_bytes(b"old")
        os.utime(root / "old", ns=(_OLD_MTIME_NS, _OLD_MTIME_NS))


def _gnu_tar(tree: Path, output: Path, *options: str) -> Path:
    subprocess.run(
        ["tar", *options, "-cf", str(output), "-C", str(tree), "."],
        check=True,
        capture_output=True,
    )
    return output


_GNU_TAR_CASES = {
    "gnu": (["--format=gnu", "--sparse"], {}),
    "oldgnu": (["--format=oldgnu", "--sparse"], {}),
    "posix": (["--format=posix", "--xattrs", "--xattrs-include=*"], {}),
    "posix-sparse-0.0": (["--format=posix", "--sparse", "--sparse-version=0.0"], {}),
    "posix-sparse-0.1": (["--format=posix", "--sparse", "--sparse-version=0.1"], {}),
    "posix-sparse-1.0": (["--format=posix", "--sparse", "--sparse-version=1.0"], {}),
    "ustar": (
        ["--format=ustar"],
        {"long_names": False, "big_ids": False, "old_time": False},
    ),
    "v7": (
        ["--format=v7"],
        {
            "long_names": False,
            "special_files": False,
            "big_ids": False,
            "old_time": False,
        },
    ),
}


@pytest.mark.integration
@pytest.mark.skipif(not _IS_ROOT, reason="mknod and chown need root")
@pytest.mark.parametrize("case", list(_GNU_TAR_CASES))
def test_gnu_tar_formats(tmp_path: Path, case: str) -> None:
    options, tree_options = _GNU_TAR_CASES[case]
    _build_tree(tmp_path / "tree", xattrs="xattrs" in " ".join(options), **tree_options)
    if case == "v7":
        shutil.rmtree(tmp_path / "tree" / ("p" * 90))
    archive = _gnu_tar(tmp_path / "tree", tmp_path / "out.tar", *options)

    entries = _by_name(_check_against_libarchive(archive))

    assert entries[b"hello.txt"].mtime_ns // 10**9 == _NEW_MTIME_NS // 10**9
    links = {entries[b"hardlink"].kind, entries[b"hello.txt"].kind}
    assert links == {EntryKind.FILE, EntryKind.HARDLINK}
    assert entries[b"caf\xe9-\xff"].kind is EntryKind.FILE
    assert entries[b"sticky"].mode == 0o1777
    assert entries[b"setuid"].mode == 0o4755


@pytest.mark.integration
@pytest.mark.skipif(not _IS_ROOT, reason="mknod and chown need root")
def test_gnu_tar_posix_fields(tmp_path: Path) -> None:
    _build_tree(tmp_path / "tree")
    options = ["--format=posix", "--xattrs", "--xattrs-include=*", "--sparse"]
    archive = _gnu_tar(tmp_path / "tree", tmp_path / "out.tar", *options)

    entries = _by_name(_check_against_libarchive(archive))

    assert entries[b"hello.txt"].mtime_ns == _NEW_MTIME_NS
    assert entries[b"old"].mtime_ns == _OLD_MTIME_NS
    assert entries[b"xattrs"].xattrs == {
        b"user.lines": _XATTR_VALUE,
        b"user.empty": b"",
        b"trusted.overlay.opaque": b"y",
    }
    assert (entries[b"big-ids"].uid, entries[b"big-ids"].gid) == (3_000_000, 2_500_000)
    assert (entries[b"block"].devmajor, entries[b"block"].devminor) == (7, 200)
    assert entries[b"long-target"].linkname == b"t" * 150
    deep = b"L" * 100 + b"/" + b"M" * 100 + b"/file_" + b"N" * 150
    assert entries[deep].data_size == 4
    assert entries[b"sparse.img"].size == 3 << 20


@pytest.mark.integration
@pytest.mark.skipif(not _IS_ROOT, reason="chown needs root")
def test_gnu_tar_gnu_fields(tmp_path: Path) -> None:
    _build_tree(tmp_path / "tree", special_files=False, xattrs=False)
    archive = _gnu_tar(tmp_path / "tree", tmp_path / "out.tar", "--format=gnu")

    entries = _by_name(_check_against_libarchive(archive))

    assert entries[b"old"].mtime_ns == -315_619_200 * 10**9
    assert entries[b"big-ids"].uid == 3_000_000
    assert b"L" * 100 + b"/" + b"M" * 100 + b"/file_" + b"N" * 150 in entries


# Sparse files of 8 GiB apparent size


def _make_8gib_sparse(path: Path) -> dict[int, bytes]:
    written = {0: b"begin", 4 * GIB: b"middle", 8 * GIB - 3: b"end"}
    with open(path, "wb") as file:
        file.truncate(8 * GIB)
        for offset, data in written.items():
            file.seek(offset)
            file.write(data)
    return written


def _data_regions(path: Path) -> list[tuple[int, int]]:
    regions = []
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        position = 0
        while position < size:
            try:
                start = os.lseek(file.fileno(), position, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(file.fileno(), start, os.SEEK_HOLE)
            regions.append((start, end - start))
            position = end
    return regions


@pytest.mark.integration
@pytest.mark.parametrize(
    "options",
    [
        ["--format=gnu"],
        ["--format=posix", "--sparse-version=0.0"],
        ["--format=posix", "--sparse-version=0.1"],
        ["--format=posix", "--sparse-version=1.0"],
    ],
    ids=["gnu", "pax-0.0", "pax-0.1", "pax-1.0"],
)
def test_sparse_8gib(tmp_path: Path, options: list[str]) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    written = _make_8gib_sparse(tree / "big.img")
    regions = _data_regions(tree / "big.img")
    archive = tmp_path / "out.tar"
    subprocess.run(
        ["tar", *options, "--sparse", "-cf", str(archive), "-C", str(tree), "big.img"],
        check=True,
    )

    with open(archive, "rb") as stream:
        reader = TarReader(stream, source=str(archive))
        entry = next(reader)
        content = reader.read_data()
        assert list(reader) == []
    oracle = read_with_libarchive(str(archive), hash_limit=0)

    assert entry.name == b"big.img"
    assert entry.size == 8 * GIB
    assert entry.sparse == regions
    assert entry.sparse == oracle[0].sparse
    assert entry.data_size == sum(length for _, length in regions)
    assert len(content) == entry.data_size
    stored_at = {}
    position = 0
    for offset, length in regions:
        stored_at[offset] = position
        position += length
    for offset, data in written.items():
        region_start = max(start for start in stored_at if start <= offset)
        at = stored_at[region_start] + offset - region_start
        assert content[at : at + len(data)] == data


# Python's tarfile


def _tarfile_members(tar_format: int) -> list[tuple[tarfile.TarInfo, bytes]]:
    def info(name: str, kind: bytes = tarfile.REGTYPE, **fields: object):
        member = tarfile.TarInfo(name)
        member.type = kind
        member.mtime = 1_700_000_000
        for field, value in fields.items():
            setattr(member, field, value)
        return member

    long_part = (
        "d" * 90 + "/" + "e" * 60 if tar_format == tarfile.USTAR_FORMAT else "l" * 300
    )
    members = [
        (info("dir", tarfile.DIRTYPE, mode=0o1755), b""),
        (info("dir/file", size=5, uid=1000, gid=1000, uname="u", gname="g"), b"hello"),
        (info("link", tarfile.SYMTYPE, linkname="dir/file"), b""),
        (info("hard", tarfile.LNKTYPE, linkname="dir/file"), b""),
        (info("char", tarfile.CHRTYPE, devmajor=1, devminor=3), b""),
        (info("block", tarfile.BLKTYPE, devmajor=8, devminor=1), b""),
        (info("fifo", tarfile.FIFOTYPE), b""),
        (info(long_part, size=4, mode=0o4711), b"long"),
        (info("caf\udce9", size=1), b"x"),
        (info("future", mtime=_NEW_MTIME_NS // 10**9), b""),
    ]
    if tar_format != tarfile.USTAR_FORMAT:
        members.append((info("old", mtime=-100, uid=3_000_000), b""))
        members.append((info("s" * 120, tarfile.SYMTYPE, linkname="t" * 200), b""))
    if tar_format == tarfile.PAX_FORMAT:
        xattrs = {"SCHILY.xattr.user.nl": "a\nb\x00c", "comment": "note\n"}
        members.append((info("xattrs", pax_headers=xattrs), b""))
        members.append((info("fraction", mtime=1.5), b""))
    return members


@pytest.mark.parametrize(
    "tar_format",
    [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT],
    ids=["ustar", "gnu", "pax"],
)
def test_tarfile_formats(tmp_path: Path, tar_format: int) -> None:
    archive = tmp_path / "out.tar"
    with tarfile.open(
        archive, "w", format=tar_format, encoding="utf-8", errors="surrogateescape"
    ) as writer:
        for member, data in _tarfile_members(tar_format):
            writer.addfile(member, io.BytesIO(data) if data else None)

    entries = _by_name(_check_against_libarchive(archive))

    assert entries[b"caf\xe9"].data_size == 1
    assert entries[b"char"].kind is EntryKind.CHAR
    assert entries[b"future"].mtime_ns == _NEW_MTIME_NS // 10**9 * 10**9
    if tar_format == tarfile.PAX_FORMAT:
        assert entries[b"xattrs"].xattrs == {b"user.nl": b"a\nb\x00c"}
        assert entries[b"xattrs"].pax[b"comment"] == b"note\n"
        assert entries[b"fraction"].mtime_ns == 1_500_000_000
        assert entries[b"caf\xe9"].pax[b"hdrcharset"] == b"BINARY"
    if tar_format != tarfile.USTAR_FORMAT:
        assert entries[b"old"].mtime_ns == -100 * 10**9
        assert entries[b"old"].uid == 3_000_000
        assert entries[b"l" * 300].data_size == 4


# libarchive's writers


# libarchive-c's add_files() fails on a name that is not UTF-8, so these trees
# have none; the tarfile and GNU tar cases cover such names.
_LIBARCHIVE_CASES = {
    "pax": {"non_utf8_name": False},
    "pax_restricted": {"non_utf8_name": False},
    "gnutar": {"xattrs": False, "non_utf8_name": False},
    "ustar": {
        "long_names": False,
        "big_ids": False,
        "old_time": False,
        "xattrs": False,
        "non_utf8_name": False,
    },
    "v7tar": {
        "long_names": False,
        "special_files": False,
        "big_ids": False,
        "old_time": False,
        "xattrs": False,
        "non_utf8_name": False,
    },
}


@pytest.mark.skipif(not _IS_ROOT, reason="mknod and chown need root")
@pytest.mark.parametrize("case", list(_LIBARCHIVE_CASES))
def test_libarchive_writers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    _build_tree(tmp_path / "tree", **_LIBARCHIVE_CASES[case])
    if case == "v7tar":
        shutil.rmtree(tmp_path / "tree" / ("p" * 90))
    archive = tmp_path / "out.tar"
    monkeypatch.chdir(tmp_path / "tree")
    with libarchive.file_writer(str(archive), case) as writer:
        writer.add_files(".")

    entries = _by_name(_check_against_libarchive(archive))

    assert entries[b"hello.txt"].data_size == 6
    if case.startswith("pax"):
        assert entries[b"xattrs"].xattrs[b"user.lines"] == _XATTR_VALUE
        assert entries[b"hello.txt"].mtime_ns == _NEW_MTIME_NS


def test_libarchive_pax_xattr_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_bytes(b"f")
    os.setxattr(tree / "f", "user.a b", _XATTR_VALUE)
    archive = tmp_path / "out.tar"
    monkeypatch.chdir(tree)
    with libarchive.file_writer(str(archive), "pax") as writer:
        writer.add_files("f")

    entries = _check_against_libarchive(archive)

    # libarchive 3.6 percent-encodes the name in its SCHILY record too, so
    # any reader that takes SCHILY names as raw bytes (GNU tar, libarchive
    # itself) sees a second xattr.
    assert entries[0].pax[b"LIBARCHIVE.xattr.user.a%20b"] != _XATTR_VALUE
    assert entries[0].pax[b"SCHILY.xattr.user.a%20b"] == _XATTR_VALUE
    assert entries[0].xattrs == {b"user.a b": _XATTR_VALUE, b"user.a%20b": _XATTR_VALUE}
