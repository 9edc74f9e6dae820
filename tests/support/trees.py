"""Read a tree that an overlayfs mount shows, and compare two trees field by field.

:func:`fixtures.tree.snapshot` fails when a directory lists a name that
``lstat`` cannot find. An overlayfs mount does exactly that for a whiteout
(a 0/0 character device) in a directory that only one layer has: overlayfs
filters whiteouts only in directories that it merges from several layers.
:func:`snapshot_listed` records such names instead of failing.

Terms:

listed-but-missing name
    A path that ``readdir`` of its parent returns and ``lstat`` reports as
    absent.
unpack window
    The span of wall-clock time in which the compared trees were written. A
    time inside it is a time that an applier gave an entry, not one that a
    layer recorded.
difference
    One path and one aspect in which two trees disagree: a field of
    :class:`fixtures.tree.Node`, one xattr, or the path's presence
    (:class:`Difference`).
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from fixtures.tree import FIELDS, ROOT, Node, read_node

__all__ = [
    "LISTED_BUT_MISSING",
    "ONLY_CONTAINERD",
    "ONLY_OURS",
    "Difference",
    "ListedTree",
    "UnpackWindow",
    "compare_trees",
    "show_path",
    "snapshot_listed",
]

ONLY_OURS = "only ours"
ONLY_CONTAINERD = "only containerd"
LISTED_BUT_MISSING = "listed but missing"


@dataclass(frozen=True)
class ListedTree:
    """A tree as :func:`fixtures.tree.snapshot` records it, plus the paths
    that a directory lists but that do not exist."""

    tree: Mapping[bytes, Node]
    missing: tuple[bytes, ...] = ()


def snapshot_listed(root: Path) -> ListedTree:
    """Record every entry under ``root`` as :func:`fixtures.tree.snapshot` does.

    Each node has the same fields, values and link groups that
    ``snapshot`` gives. A name that its directory lists but that ``lstat``
    cannot find goes to ``missing`` instead of failing the walk. Raises
    ``OSError`` for any other entry that cannot be read.
    """
    base = os.fsencode(root)
    tree: dict[bytes, Node] = {ROOT: read_node(base, os.lstat(base))}
    missing: list[bytes] = []
    inodes: dict[tuple[int, int], list[bytes]] = {}
    for path, st in _walk(base, missing):
        tree[path] = read_node(base + b"/" + path, st)
        if not stat.S_ISDIR(st.st_mode):
            inodes.setdefault((st.st_dev, st.st_ino), []).append(path)

    for paths in inodes.values():
        label = min(paths)
        for path in paths:
            tree[path] = dataclasses.replace(tree[path], link_group=label)
    return ListedTree(dict(sorted(tree.items())), tuple(sorted(missing)))


def _walk(base: bytes, missing: list[bytes]) -> Iterator[tuple[bytes, os.stat_result]]:
    """Yield (path, lstat result) below ``base``; add vanished names to ``missing``."""
    pending = [b""]
    while pending:
        prefix = pending.pop()
        directory = base + b"/" + prefix if prefix else base
        for name in os.listdir(directory):
            path = prefix + b"/" + name if prefix else name
            try:
                st = os.lstat(base + b"/" + path)
            except FileNotFoundError:
                missing.append(path)
                continue
            yield path, st
            if stat.S_ISDIR(st.st_mode):
                pending.append(path)


@dataclass(frozen=True)
class UnpackWindow:
    """Wall-clock times, in ns since the epoch, that bound the compared unpacks."""

    start_ns: int
    end_ns: int

    def contains(self, value: object) -> bool:
        """Tell whether ``value`` is a time inside the window."""
        return isinstance(value, int) and self.start_ns <= value <= self.end_ns


@dataclass(frozen=True)
class Difference:
    """One way in which our tree and containerd's disagree at one path.

    ``aspect`` is a field name of :class:`fixtures.tree.Node`, ``xattr NAME``,
    or one of :data:`ONLY_OURS`, :data:`ONLY_CONTAINERD` and
    :data:`LISTED_BUT_MISSING`. ``key`` (``PATH: ASPECT``) is what tables of
    known differences list.
    """

    path: bytes
    aspect: str
    ours: object = None
    containerd: object = None

    @property
    def key(self) -> str:
        """``PATH: ASPECT``, with bytes that are not UTF-8 as ``\\xNN``."""
        return f"{show_path(self.path)}: {self.aspect}"

    def __str__(self) -> str:
        return f"{self.key}: ours {self.ours!r}, containerd {self.containerd!r}"


def show_path(path: bytes) -> str:
    """Return a path or xattr name as text, escaping bytes that are not UTF-8."""
    return path.decode("utf-8", "backslashreplace")


def compare_trees(
    ours: Mapping[bytes, Node], containerd: ListedTree, window: UnpackWindow
) -> list[Difference]:
    """List every difference between our tree and containerd's, sorted by path.

    Two modification times that both fall inside ``window`` are times of the
    unpacks, not recorded ones, so they count as equal. Where the types of a
    path differ, only ``type`` is reported, since the other fields then
    describe unrelated objects.
    """
    differences = []
    for path in sorted(ours.keys() | containerd.tree.keys()):
        differences += _compare_path(
            path, ours.get(path), containerd.tree.get(path), window
        )
    differences += [Difference(path, LISTED_BUT_MISSING) for path in containerd.missing]
    return sorted(differences, key=lambda difference: difference.path)


def _compare_path(
    path: bytes, ours: Node | None, containerd: Node | None, window: UnpackWindow
) -> list[Difference]:
    if containerd is None:
        return [Difference(path, ONLY_OURS, ours=ours)]
    if ours is None:
        return [Difference(path, ONLY_CONTAINERD, containerd=containerd)]
    if ours.type is not containerd.type:
        return [Difference(path, "type", ours.type.value, containerd.type.value)]

    differences = []
    for name in FIELDS:
        mine, theirs = getattr(ours, name), getattr(containerd, name)
        if name == "xattrs":
            differences += _compare_xattrs(path, mine or {}, theirs or {})
        elif mine != theirs and not (
            name == "mtime_ns" and window.contains(mine) and window.contains(theirs)
        ):
            differences.append(Difference(path, name, mine, theirs))
    return differences


def _compare_xattrs(
    path: bytes, ours: Mapping[bytes, bytes], containerd: Mapping[bytes, bytes]
) -> list[Difference]:
    return [
        Difference(
            path, f"xattr {show_path(name)}", ours.get(name), containerd.get(name)
        )
        for name in sorted(ours.keys() | containerd.keys())
        if ours.get(name) != containerd.get(name)
    ]
