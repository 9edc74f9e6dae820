"""The overlay upper target: whiteout encoding, lower reads and copy-up.

Each test applies a lower layer into one upper directory and a second layer
into another with the first as its lower, checks the exact second upper
directory, and where it matters mounts both and checks the merged tree.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from fixtures.tree import Node, NodeType, snapshot
from ipcs_fs.errors import InvalidArgumentError
from tests.apply.layers import (
    apply,
    assert_tree,
    dir_node,
    directory,
    file,
    file_node,
    hardlink,
    symlink,
    symlink_node,
)
from tests.apply.stacks import overlay_mount

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

WHITEOUT = Node(type=NodeType.CHAR, mode=0, uid=0, gid=0, rdev=(0, 0), xattrs={})
OPAQUE = {b"trusted.overlay.opaque": b"y"}


def _two_uppers(tmp_path: Path, lower: tuple, upper: tuple) -> tuple[Path, Path]:
    first = tmp_path / "upper0"
    second = tmp_path / "upper1"
    first.mkdir()
    second.mkdir()
    apply(first, *lower, overlay_upper=True)
    apply(second, *upper, overlay_upper=True, lowers=[first])
    return first, second


_LOWER = (
    directory("d/", mode=0o750, uid=3, gid=4, mtime_ns=11),
    file("d/a", b"a"),
    file("d/b", b"b", mode=0o600, uid=5),
    directory("run/"),
    directory("var/"),
    symlink("var/run", "/run"),
)


def test_whiteout_becomes_char_device(tmp_path: Path) -> None:
    _, upper = _two_uppers(tmp_path, _LOWER, (file("d/.wh.a"), file("d/.wh.none")))

    assert_tree(
        upper,
        {
            b"d": dir_node(mode=0o750, uid=3, gid=4, mtime_ns=11),
            b"d/a": WHITEOUT,
        },
    )


def test_opaque_marker_sets_xattr(tmp_path: Path) -> None:
    _, upper = _two_uppers(
        tmp_path, _LOWER, (file("d/new", b"n"), file("d/.wh..wh..opq"))
    )

    assert_tree(
        upper,
        {
            b"d": dir_node(mode=0o750, uid=3, gid=4, mtime_ns=11, xattrs=OPAQUE),
            b"d/new": file_node(b"n"),
        },
    )


def test_whiteout_then_directory_is_opaque(tmp_path: Path) -> None:
    _, upper = _two_uppers(
        tmp_path, _LOWER, (file(".wh.d"), directory("d/", mode=0o700))
    )

    assert_tree(upper, {b"d": dir_node(mode=0o700, xattrs=OPAQUE)})


def test_lower_symlink_parent_followed(tmp_path: Path) -> None:
    lower, upper = _two_uppers(tmp_path, _LOWER, (file("var/run/pid", b"1"),))

    # var is copied up on the way, with its lower metadata; var/run is not.
    assert_tree(
        upper,
        {b"run": dir_node(), b"run/pid": file_node(b"1"), b"var": dir_node()},
    )
    with overlay_mount([lower, upper], tmp_path) as merged:
        tree = snapshot(merged)
    assert tree[b"var/run"] == dataclasses.replace(
        symlink_node(b"/run"), link_group=b"var/run"
    )
    assert tree[b"run/pid"] == file_node(b"1", link_group=b"run/pid")


def test_hardlink_to_lower_copies_up(tmp_path: Path) -> None:
    lower, upper = _two_uppers(
        tmp_path, _LOWER, (hardlink("d/c", "d/b", mode=0o600, uid=5),)
    )

    assert_tree(
        upper,
        {
            b"d": dir_node(mode=0o750, uid=3, gid=4, mtime_ns=11),
            b"d/b": file_node(b"b", mode=0o600, uid=5, link_group=b"d/b"),
            b"d/c": file_node(b"b", mode=0o600, uid=5, link_group=b"d/b"),
        },
    )
    with overlay_mount([lower, upper], tmp_path) as merged:
        first = os.lstat(merged / "d" / "b")
        second = os.lstat(merged / "d" / "c")
    assert first.st_ino == second.st_ino
    assert first.st_nlink == 2


def test_hardlink_to_hidden_lower_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError) as error:
        _two_uppers(tmp_path, _LOWER, (file("d/.wh.b"), hardlink("d/c", "d/b")))

    assert str(error.value) == (
        "failed to apply hardlink d/c of test-layer: hard link target d/b not found"
    )


def test_layer_overlay_xattrs_never_reach_upper(tmp_path: Path) -> None:
    forged = {b"trusted.overlay.opaque": b"y", b"trusted.overlay.redirect": b"/x"}
    _, upper = _two_uppers(tmp_path, _LOWER, (directory("d/", xattrs=forged),))

    assert_tree(upper, {b"d": dir_node()})
