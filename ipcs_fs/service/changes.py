"""Find the changes between two directory trees, as a layer records them.

A *change* is one path of the upper tree to record in a layer: an added or
modified entry, a deleted one (recorded as a whiteout), or an opaque directory
(whose lower content is hidden as a whole). Changes come in tar order: depth
first, names sorted as bytes, a directory before its children.

Two ways to find them:

- :func:`walk_changes` compares a lower and an upper tree path by path, as
  containerd's double-walking differ does. A regular file counts as modified
  when its type, mode, owner, size, mtime or xattrs differ. When all of these
  match and the mtime has no fraction of a second (the file system or a tar
  dropped it), the contents are compared too.
- :func:`overlay_upper_changes` reads an overlayfs upper directory alone:
  every entry in it is a change, a 0/0 character device is a whiteout and
  ``trusted.overlay.opaque=y`` marks an opaque directory. It raises
  :class:`OverlayMetadataError` for upper directories that need the lower ones
  to be understood (renamed directories, metadata-only copy-ups).
"""

from __future__ import annotations

import enum
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import FailedPreconditionError

__all__ = [
    "ROOT_PATH",
    "Change",
    "ChangeKind",
    "OverlayMetadataError",
    "list_xattrs",
    "overlay_upper_changes",
    "walk_changes",
]

ROOT_PATH = b""
"""Path of the tree's root in a :class:`Change`."""

_OVERLAY_XATTR_PREFIX = b"trusted.overlay."
_OPAQUE_XATTR = b"trusted.overlay.opaque"
# Upper directories with these need the lowers to be read correctly.
_LOWER_DEPENDENT_XATTRS = (b"trusted.overlay.redirect", b"trusted.overlay.metacopy")
_NS_PER_SECOND = 1_000_000_000
_COMPARE_SIZE = 1 << 20


class ChangeKind(enum.Enum):
    """The record a layer keeps for one path."""

    ENTRY = "entry"
    """The upper tree's entry, added or modified."""
    DELETE = "delete"
    """Removed from the lower tree: a whiteout."""
    OPAQUE = "opaque"
    """A directory whose lower content is hidden as a whole: an opaque marker."""


@dataclass(frozen=True)
class Change:
    """One change: ``path`` relative to the root (``ROOT_PATH`` for the root).

    ``source`` is the entry's full path in the upper tree, for ENTRY changes.
    """

    kind: ChangeKind
    path: bytes
    source: bytes = b""


class OverlayMetadataError(FailedPreconditionError):
    """The upper directory contains overlayfs metadata that needs the lower layers."""


def list_xattrs(path: bytes) -> dict[bytes, bytes]:
    """Return the xattrs of ``path`` (not followed if a symlink), sorted by name.

    ``trusted.overlay.*`` attributes are overlayfs's own bookkeeping and are
    left out.
    """
    names = sorted(os.fsencode(n) for n in os.listxattr(path, follow_symlinks=False))
    return {
        name: os.getxattr(path, name, follow_symlinks=False)
        for name in names
        if not name.startswith(_OVERLAY_XATTR_PREFIX)
    }


def _join(parent: bytes, name: bytes) -> bytes:
    return parent + b"/" + name if parent else name


def _sorted_names(directory: bytes) -> list[bytes]:
    with os.scandir(directory) as entries:
        return sorted(entry.name for entry in entries)


# The double walk ---------------------------------------------------------


def walk_changes(lower: bytes, upper: bytes) -> Iterator[Change]:
    """Yield the changes that turn the tree at ``lower`` into the one at ``upper``.

    The root is yielded first when its own metadata differs. Sockets are left
    out, as containerd leaves them out.
    """
    lower_root, upper_root = os.lstat(lower), os.lstat(upper)
    if _metadata_differs(lower, lower_root, upper, upper_root):
        yield Change(ChangeKind.ENTRY, ROOT_PATH, upper)
    yield from _walk_dir(lower, upper, ROOT_PATH)


def _walk_dir(lower: bytes, upper: bytes, path: bytes) -> Iterator[Change]:
    lower_names = set(_sorted_names(lower))
    upper_names = _sorted_names(upper)
    for name in sorted(lower_names.union(upper_names)):
        child = _join(path, name)
        upper_child = upper + b"/" + name
        if name not in lower_names:
            yield from _added(upper_child, child)
        elif name not in upper_names:
            yield Change(ChangeKind.DELETE, child)
        else:
            yield from _compared(lower + b"/" + name, upper_child, child)


def _added(source: bytes, path: bytes) -> Iterator[Change]:
    st = os.lstat(source)
    if stat.S_ISSOCK(st.st_mode):
        return
    yield Change(ChangeKind.ENTRY, path, source)
    if stat.S_ISDIR(st.st_mode):
        for name in _sorted_names(source):
            yield from _added(source + b"/" + name, _join(path, name))


def _compared(lower: bytes, upper: bytes, path: bytes) -> Iterator[Change]:
    lower_st, upper_st = os.lstat(lower), os.lstat(upper)
    if stat.S_ISSOCK(upper_st.st_mode):
        if not stat.S_ISSOCK(lower_st.st_mode):
            yield Change(ChangeKind.DELETE, path)
        return
    both_dirs = stat.S_ISDIR(lower_st.st_mode) and stat.S_ISDIR(upper_st.st_mode)
    if not both_dirs:
        if _entry_differs(lower, lower_st, upper, upper_st):
            yield from _added(upper, path)
        return
    if _metadata_differs(lower, lower_st, upper, upper_st):
        yield Change(ChangeKind.ENTRY, path, upper)
    yield from _walk_dir(lower, upper, path)


def _metadata_differs(
    lower: bytes, lower_st: os.stat_result, upper: bytes, upper_st: os.stat_result
) -> bool:
    fields = ("st_mode", "st_uid", "st_gid", "st_mtime_ns")
    if any(getattr(lower_st, f) != getattr(upper_st, f) for f in fields):
        return True
    return list_xattrs(lower) != list_xattrs(upper)


def _entry_differs(
    lower: bytes, lower_st: os.stat_result, upper: bytes, upper_st: os.stat_result
) -> bool:
    if _metadata_differs(lower, lower_st, upper, upper_st):
        return True
    if (lower_st.st_dev, lower_st.st_ino) == (upper_st.st_dev, upper_st.st_ino):
        return False
    mode = upper_st.st_mode
    if stat.S_ISLNK(mode):
        return os.readlink(lower) != os.readlink(upper)
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return lower_st.st_rdev != upper_st.st_rdev
    if not stat.S_ISREG(mode):
        return False
    if lower_st.st_size != upper_st.st_size:
        return True
    # An mtime without nanoseconds may hide a change made within the same
    # second, so only then are the bytes compared (containerd does the same).
    return upper_st.st_mtime_ns % _NS_PER_SECOND == 0 and not _same_content(
        lower, upper
    )


def _same_content(first: bytes, second: bytes) -> bool:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    with (
        open(os.open(first, flags), "rb") as a,
        open(os.open(second, flags), "rb") as b,
    ):
        while True:
            left, right = a.read(_COMPARE_SIZE), b.read(_COMPARE_SIZE)
            if left != right:
                return False
            if not left:
                return True


# The overlay upper directory ----------------------------------------------


def overlay_upper_changes(upper: bytes) -> Iterator[Change]:
    """Yield the changes that an overlayfs upper directory holds.

    The root is always yielded first: the merged tree's root takes its
    metadata from the upper directory. Raises OverlayMetadataError on a
    ``trusted.overlay.redirect`` or ``trusted.overlay.metacopy`` attribute.
    """
    yield Change(ChangeKind.ENTRY, ROOT_PATH, upper)
    yield from _upper_dir(upper, ROOT_PATH)


def _upper_dir(directory: bytes, path: bytes) -> Iterator[Change]:
    _check_overlay_xattrs(directory)
    if _is_opaque(directory) and path != ROOT_PATH:
        yield Change(ChangeKind.OPAQUE, path)
    for name in _sorted_names(directory):
        source = directory + b"/" + name
        child = _join(path, name)
        st = os.lstat(source)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            yield Change(ChangeKind.DELETE, child)
        elif stat.S_ISDIR(st.st_mode):
            yield Change(ChangeKind.ENTRY, child, source)
            yield from _upper_dir(source, child)
        elif not stat.S_ISSOCK(st.st_mode):
            _check_overlay_xattrs(source)
            yield Change(ChangeKind.ENTRY, child, source)


def _is_opaque(directory: bytes) -> bool:
    try:
        return os.getxattr(directory, _OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _check_overlay_xattrs(path: bytes) -> None:
    names = os.listxattr(path, follow_symlinks=False)
    for name in map(os.fsencode, names):
        if name.startswith(_LOWER_DEPENDENT_XATTRS):
            raise OverlayMetadataError(
                f"failed to read changes from overlay upper {os.fsdecode(path)}:"
                f" it carries {os.fsdecode(name)}, which needs the lower layers"
            )
