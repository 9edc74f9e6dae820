"""One test per rule of the apply engine, on a mounted-tree target.

Every test applies layers built with tarfile into an empty temporary root, as
root, and checks the exact tree or the exact error.
"""

from __future__ import annotations

import io
import logging
import os
import resource
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.tree import Node, NodeType, snapshot
from ipcs_fs.apply import apply_entries, apply_layer
from ipcs_fs.errors import (
    InvalidArgumentError,
    ResourceExhaustedError,
)
from ipcs_fs.tar import TarEntry, TarReader
from tests.apply.layers import (
    T0_NS,
    apply,
    apply_bytes,
    assert_tree,
    device,
    dir_node,
    directory,
    fifo,
    file,
    file_node,
    hardlink,
    layer,
    symlink,
    symlink_node,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

CAPABILITY = b"\x01\x00\x00\x02" + b"\x00\x20\x00\x00" + bytes(12)
"""A version 2 security.capability value granting cap_net_raw."""


# Order and names


def test_entries_apply_in_tar_order(tmp_path: Path) -> None:
    apply(tmp_path, file("a", b"first"), file("a", b"second", mode=0o600))

    assert_tree(tmp_path, {b"a": file_node(b"second", mode=0o600)})


def test_names_cleaned_as_if_rooted(tmp_path: Path) -> None:
    apply(
        tmp_path,
        directory("./d/"),
        file("d//x", b"x"),
        file("/d/./y", b"y"),
        file("../../z", b"z"),
        file("d/../w", b"w"),
    )

    assert_tree(
        tmp_path,
        {
            b"d": dir_node(),
            b"d/x": file_node(b"x"),
            b"d/y": file_node(b"y"),
            b"w": file_node(b"w"),
            b"z": file_node(b"z"),
        },
    )


def test_absolute_symlink_parent_stays_inside(tmp_path: Path) -> None:
    apply(
        tmp_path,
        directory("run/"),
        directory("var/"),
        symlink("var/run", "/run"),
        file("var/run/pid", b"1"),
    )

    assert_tree(
        tmp_path,
        {
            b"run": dir_node(),
            b"run/pid": file_node(b"1"),
            b"var": dir_node(),
            b"var/run": symlink_node(b"/run"),
        },
    )


def test_climbing_symlink_parent_clamped(tmp_path: Path) -> None:
    apply(tmp_path, symlink("up", "../../../../x"), file("up/f", b"f"))

    assert_tree(
        tmp_path,
        {
            b"up": symlink_node(b"../../../../x"),
            b"x": dir_node(mtime_ns=None),
            b"x/f": file_node(b"f"),
        },
    )


def test_symlink_loop_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError) as error:
        apply(tmp_path, symlink("a", "b"), symlink("b", "a"), file("a/f", b""))

    assert str(error.value) == (
        "failed to apply file a/f of test-layer: too many symbolic links in a"
    )


def test_parent_is_file_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError) as error:
        apply(tmp_path, file("f", b""), file("f/g", b""))

    assert str(error.value) == (
        "failed to apply file f/g of test-layer: f is not a directory"
    )


def test_empty_symlink_target_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError) as error:
        apply(tmp_path, symlink("s", ""))

    assert str(error.value) == (
        "failed to apply symlink s of test-layer: symbolic link target is empty"
    )


@pytest.fixture
def few_descriptors() -> Iterator[None]:
    """Lower the open-file limit to 100 while the test runs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (100, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_deep_path_bounded_descriptors(tmp_path: Path, few_descriptors: None) -> None:
    deep = "/".join(["d"] * 1000)
    apply(tmp_path, file(deep + "/f", b"f"), file(deep + "/g", b"g"))
    written = (tmp_path / deep / "g").read_bytes()
    # The whiteout removes the tree that pytest's recursive cleanup cannot.
    apply(tmp_path, file(".wh.d"))

    assert written == b"g"
    assert os.listdir(tmp_path) == []


def test_wide_opaque_bounded_descriptors(tmp_path: Path) -> None:
    names = [f"d{index}" for index in range(300)]
    apply(tmp_path, *(file(f"top/{name}/old", b"o") for name in names))
    upper = [file(f"top/{name}/new", b"n") for name in names]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (100, hard))
    try:
        apply(tmp_path, *upper, file("top/.wh..wh..opq"))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    assert sorted(os.listdir(tmp_path / "top" / "d7")) == ["new"]
    assert len(os.listdir(tmp_path / "top")) == 300


# The root


def test_root_entry_sets_root_metadata(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    apply(root, directory("./", mode=0o700, uid=5, gid=6), file("a", b""))

    st = os.lstat(root)
    assert stat.S_IMODE(st.st_mode) == 0o700
    assert (st.st_uid, st.st_gid) == (5, 6)
    assert st.st_mtime_ns == T0_NS


def test_root_entry_of_other_type_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError) as error:
        apply(tmp_path, symlink(".", "/"))

    assert str(error.value) == (
        "failed to apply symlink . of test-layer: a symlink entry cannot replace"
        " the root"
    )


def test_implied_parents_0755_root(tmp_path: Path) -> None:
    apply(tmp_path, file("a/b/c", b"c", uid=3, gid=4))

    assert_tree(
        tmp_path,
        {
            b"a": dir_node(mtime_ns=None),
            b"a/b": dir_node(mtime_ns=None),
            b"a/b/c": file_node(b"c", uid=3, gid=4),
        },
    )


# Whiteouts


def _lower(root: Path) -> None:
    apply(
        root,
        directory("d/"),
        file("d/old", b"old"),
        file("d/keep", b"keep"),
        directory("d/sub/"),
        file("d/sub/x", b"x"),
        file("f", b"f"),
    )


def test_whiteout_removes_lower(tmp_path: Path) -> None:
    _lower(tmp_path)
    stats = apply(tmp_path, file(".wh.f"), file("d/.wh.old"), file("d/.wh.sub"))

    assert stats.whiteouts == 3
    assert_tree(tmp_path, {b"d": dir_node(), b"d/keep": file_node(b"keep")})


def test_whiteout_of_written_file_ignored(tmp_path: Path) -> None:
    _lower(tmp_path)
    apply(tmp_path, file("f", b"new"), file(".wh.f"))

    assert snapshot(tmp_path)[b"f"].size == 3


def test_whiteout_of_written_dir_hides_lower(tmp_path: Path) -> None:
    _lower(tmp_path)
    apply(tmp_path, directory("d/", mode=0o700), file("d/new", b"n"), file(".wh.d"))

    assert_tree(
        tmp_path,
        {b"d": dir_node(mode=0o700), b"d/new": file_node(b"n"), b"f": file_node(b"f")},
    )


def test_opaque_marker_hides_lower_children(tmp_path: Path) -> None:
    _lower(tmp_path)
    apply(tmp_path, file("d/new", b"n"), file("d/.wh..wh..opq"))

    assert_tree(
        tmp_path,
        {b"d": dir_node(), b"d/new": file_node(b"n"), b"f": file_node(b"f")},
    )


def test_whiteout_by_name_any_type(tmp_path: Path) -> None:
    _lower(tmp_path)
    apply(tmp_path, directory(".wh.f/"), symlink("d/.wh.old", "x"))

    assert sorted(snapshot(tmp_path)) == [b".", b"d", b"d/keep", b"d/sub", b"d/sub/x"]


def test_bare_whiteout_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError) as error:
        apply(tmp_path, file("d/.wh."))

    assert str(error.value) == (
        "failed to apply file d/.wh. of test-layer: invalid whiteout name .wh."
    )


def test_aufs_metadata_names_ignored(tmp_path: Path) -> None:
    _lower(tmp_path)
    apply(tmp_path, directory(".wh..wh.plnk/"), file(".wh..wh.plnk/1.2", b"x"))

    assert b".wh..wh.plnk" not in snapshot(tmp_path)


def test_whiteout_through_symlink_inside(tmp_path: Path) -> None:
    apply(tmp_path, directory("etc/"), file("etc/passwd", b"p"), symlink("a", "/etc"))
    apply(tmp_path, file("a/.wh.passwd"))

    assert_tree(tmp_path, {b"a": symlink_node(b"/etc"), b"etc": dir_node()})


# Hard links


def test_hardlink_to_symlink_links_symlink(tmp_path: Path) -> None:
    apply(tmp_path, symlink("s", "/nowhere"), hardlink("h", "s"))

    st_s = os.lstat(tmp_path / "s")
    st_h = os.lstat(tmp_path / "h")
    assert stat.S_ISLNK(st_h.st_mode)
    assert st_h.st_ino == st_s.st_ino


def test_hardlink_absolute_name_root_relative(tmp_path: Path) -> None:
    apply(tmp_path, file("a", b"a"), hardlink("b", "/a"), hardlink("c", "x/../a"))

    inodes = {os.lstat(tmp_path / n).st_ino for n in ("a", "b", "c")}
    assert len(inodes) == 1


def test_hardlink_climbing_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError) as error:
        apply(tmp_path, hardlink("evil", "../../../etc/passwd"))

    assert str(error.value) == (
        "failed to apply hardlink evil of test-layer: hard link target"
        " ../../../etc/passwd is outside the root"
    )


def test_hardlink_missing_target_names_both(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError) as error:
        apply(tmp_path, hardlink("link-first", "target-later"))

    assert str(error.value) == (
        "failed to apply hardlink link-first of test-layer: hard link target"
        " target-later not found"
    )


def test_hardlink_to_directory_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError) as error:
        apply(tmp_path, directory("dir/"), hardlink("l", "dir"))

    assert str(error.value) == (
        "failed to apply hardlink l of test-layer: hard link target dir is a directory"
    )


def test_hardlink_keeps_target_capability(tmp_path: Path) -> None:
    caps = {b"security.capability": CAPABILITY}
    apply(
        tmp_path,
        file("ping", b"p", mode=0o4755, xattrs=caps),
        hardlink("p2", "ping"),
    )

    expected = file_node(b"p", mode=0o4755, xattrs=caps, link_group=b"p2")
    assert_tree(tmp_path, {b"ping": expected, b"p2": expected})


def test_hardlink_entry_metadata_ignored(tmp_path: Path) -> None:
    apply(
        tmp_path,
        file("a", b"a", mode=0o640, uid=1, gid=2),
        hardlink("b", "a", mode=0o750, uid=9, gid=8, mtime_ns=12345),
    )

    expected = file_node(b"a", mode=0o640, uid=1, gid=2, link_group=b"a")
    assert_tree(tmp_path, {b"a": expected, b"b": expected})


# Metadata


def test_setuid_and_capability_survive_chown(tmp_path: Path) -> None:
    caps = {b"security.capability": CAPABILITY}
    apply(tmp_path, file("f", b"f", mode=0o6755, uid=7, gid=8, xattrs=caps))

    assert_tree(
        tmp_path, {b"f": file_node(b"f", mode=0o6755, uid=7, gid=8, xattrs=caps)}
    )


@pytest.mark.parametrize(
    "mtime_ns",
    [-1, -1_500_000_000, 0, 2**31 * 10**9 + 1, 4_102_444_800_999_999_999],
)
def test_times_keep_nanoseconds(tmp_path: Path, mtime_ns: int) -> None:
    apply(
        tmp_path,
        directory("d/", mtime_ns=mtime_ns),
        file("d/f", b"", mtime_ns=mtime_ns),
        symlink("d/s", "f", mtime_ns=mtime_ns),
    )

    tree = snapshot(tmp_path)
    assert tree[b"d"].mtime_ns == mtime_ns
    assert tree[b"d/f"].mtime_ns == mtime_ns
    assert tree[b"d/s"].mtime_ns == mtime_ns


def test_directory_metadata_set_after_children(tmp_path: Path) -> None:
    apply(
        tmp_path,
        directory("ro/", mode=0o555),
        directory("none/", mode=0o000, uid=9),
        file("ro/f", b"f"),
        file("none/g", b"g", mode=0o000),
        directory("ro/sub/", mode=0o500),
        file("ro/sub/h", b"h"),
    )

    assert_tree(
        tmp_path,
        {
            b"none": dir_node(mode=0o000, uid=9),
            b"none/g": file_node(b"g", mode=0o000),
            b"ro": dir_node(mode=0o555),
            b"ro/f": file_node(b"f"),
            b"ro/sub": dir_node(mode=0o500),
            b"ro/sub/h": file_node(b"h"),
        },
    )


def test_locked_lower_does_not_stop_upper(tmp_path: Path) -> None:
    apply(
        tmp_path,
        directory("ro/", mode=0o555),
        directory("none/", mode=0o000),
        file("none/g", b"g", mode=0o000),
    )
    apply(tmp_path, file("ro/new", b"n"), file("none/g", b"G", mode=0o000))

    assert_tree(
        tmp_path,
        {
            b"none": dir_node(mode=0o000),
            b"none/g": file_node(b"G", mode=0o000),
            b"ro": dir_node(mode=0o555),
            b"ro/new": file_node(b"n"),
        },
    )


def test_unlisted_parent_keeps_its_times(tmp_path: Path) -> None:
    apply(tmp_path, directory("d/", mtime_ns=5), file("d/a", b"a"))
    apply(tmp_path, file("d/b", b"b"), file("d/.wh.a"))

    assert snapshot(tmp_path)[b"d"].mtime_ns == 5


def test_redefined_directory_drops_old_xattrs(tmp_path: Path) -> None:
    apply(tmp_path, directory("d/", xattrs={b"user.old": b"1"}))
    apply(tmp_path, directory("d/", mode=0o700, xattrs={b"user.new": b"2"}))

    assert_tree(tmp_path, {b"d": dir_node(mode=0o700, xattrs={b"user.new": b"2"})})


def test_trusted_xattrs_dropped_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    xattrs = {b"trusted.overlay.opaque": b"y", b"user.ok": b"1", b"trusted.x": b"2"}
    with caplog.at_level(logging.WARNING, logger="ipcs_fs.apply.handlers"):
        stats = apply(tmp_path, directory("d/", xattrs=xattrs), file("d/f", b""))

    assert stats.xattrs_dropped == 2
    assert snapshot(tmp_path)[b"d"].xattrs == {b"user.ok": b"1"}
    assert caplog.messages == [
        "dropped trusted xattr trusted.overlay.opaque of d/",
        "dropped trusted xattr trusted.x of d/",
    ]


# Special files


def test_devices_and_fifos(tmp_path: Path) -> None:
    apply(
        tmp_path,
        device("null", tarfile.CHRTYPE, 1, 3, mode=0o666),
        device("sda", tarfile.BLKTYPE, 8, 0, mode=0o660),
        fifo("pipe", mode=0o620),
    )

    tree = snapshot(tmp_path)
    assert (tree[b"null"].type, tree[b"null"].rdev, tree[b"null"].mode) == (
        NodeType.CHAR,
        (1, 3),
        0o666,
    )
    assert (tree[b"sda"].type, tree[b"sda"].rdev, tree[b"sda"].mode) == (
        NodeType.BLOCK,
        (8, 0),
        0o660,
    )
    assert (tree[b"pipe"].type, tree[b"pipe"].mode) == (NodeType.FIFO, 0o620)
    assert tree[b"pipe"].mtime_ns == T0_NS


# Limits and errors


def test_max_bytes_exceeded(tmp_path: Path) -> None:
    with pytest.raises(ResourceExhaustedError) as error:
        apply(tmp_path, file("a", b"12345"), file("b", b"678"), max_bytes=7)

    assert str(error.value) == (
        "failed to apply file b of test-layer: layer writes more than the limit"
        " of 7 bytes"
    )


def test_max_entries_exceeded(tmp_path: Path) -> None:
    with pytest.raises(ResourceExhaustedError) as error:
        apply(tmp_path, file("a"), file("b"), file("c"), max_entries=2)

    assert str(error.value) == ("failed to apply layer test-layer: more than 2 entries")


def test_truncated_layer_names_source(tmp_path: Path) -> None:
    data = layer(file("a", b"x" * 2000))[:1500]

    with pytest.raises(InvalidArgumentError) as error:
        apply_bytes(data, tmp_path, source="sha256:abc")

    assert "sha256:abc" in str(error.value)


def test_stats_count_entries_and_bytes(tmp_path: Path) -> None:
    stats = apply(tmp_path, directory("d/"), file("d/a", b"abc"), symlink("s", "d"))

    assert (stats.entries, stats.bytes_written, stats.whiteouts) == (3, 3, 0)


# Data sources


_BIG = bytes(range(256)) * 2048  # 512 KiB: past the reader's buffer


def _data_layer() -> bytes:
    return layer(
        file("small", b"s" * 1000),
        file("big", _BIG, mode=0o600),
        file("empty"),
        file("after", b"a" * 70_000),
    )


def _data_tree() -> dict[bytes, Node]:
    return {
        b"small": file_node(b"s" * 1000),
        b"big": file_node(_BIG, mode=0o600),
        b"empty": file_node(b""),
        b"after": file_node(b"a" * 70_000),
    }


def test_layer_file_gives_same_tree(tmp_path: Path) -> None:
    (tmp_path / "layer.tar").write_bytes(_data_layer())
    root = tmp_path / "root"
    root.mkdir()

    with open(tmp_path / "layer.tar", "rb") as stream:
        stats = apply_layer(stream, root, source="layer.tar")

    assert_tree(root, _data_tree())
    assert stats.bytes_written == 1000 + len(_BIG) + 70_000


class _ReadintoOnly:
    """A source with the protocol's methods alone, without copy_data."""

    def __init__(self, data: bytes) -> None:
        self._reader = TarReader(io.BytesIO(data))

    def __iter__(self) -> Iterator[TarEntry]:
        return iter(self._reader)

    def readinto_data(self, buffer: bytearray | memoryview) -> int:
        return self._reader.readinto_data(buffer)


def test_source_without_copy_data(tmp_path: Path) -> None:
    source = _ReadintoOnly(_data_layer())

    stats = apply_entries(source, tmp_path, source="readinto-only")

    assert_tree(tmp_path, _data_tree())
    assert stats.entries == 4
