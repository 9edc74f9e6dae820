"""One handler per kind of tar entry, and the dispatcher that picks it.

Terms:

- *written*: the resolved paths this layer has written so far, each with
  whether it is a directory. A whiteout never removes a written path, because
  whiteouts apply only to the layers below.
- *kept*: the written paths and all their ancestors. Hiding the lower children
  of a directory removes every path that is not kept.
- *recorded*: the directories this layer has an entry for. Their modes and
  times are set at the end, deepest first, so that writing their children
  cannot change them.

Every handler writes in the same order: create, then owner (lchown), then
mode (never on a symbolic link), then extended attributes, then times. That
order matters because chown clears the setuid and setgid bits and the
``security.capability`` attribute.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol, TypeVar

from ipcs_fs.apply.paths import (
    WHITEOUT_PREFIX,
    Components,
    WhiteoutKind,
    classify_whiteout,
    clean_link_name,
    clean_name,
    display,
)
from ipcs_fs.apply.targets import (
    OVERLAY_XATTR_PREFIX,
    DirHandle,
    MountedTarget,
    RuleError,
    proc_path,
)
from ipcs_fs.errors import DataLossError, ResourceExhaustedError
from ipcs_fs.tar.entry import EntryKind, TarEntry

__all__ = ["DataSource", "LayerState", "apply_entry"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_BUFFER_SIZE = 1 << 20
_TRUSTED_PREFIX = b"trusted."
_DEVICE_FORMATS = {
    EntryKind.CHAR: stat.S_IFCHR,
    EntryKind.BLOCK: stat.S_IFBLK,
    EntryKind.FIFO: stat.S_IFIFO,
}
# Errors of setxattr that mean "this file system or file type cannot hold
# that attribute", such as user.* on a symbolic link.
_UNSUPPORTED_XATTR = frozenset((errno.ENOTSUP, errno.EPERM))


class DataSource(Protocol):
    """The part of the tar reader that hands out the current entry's data.

    A source that also has :meth:`~ipcs_fs.tar.reader.TarReader.copy_data`
    (as the tar reader does) writes the data into the file itself.
    """

    def readinto_data(self, buffer: bytearray | memoryview) -> int: ...


@dataclass
class LayerState:
    """Everything the handlers share while one layer is applied."""

    target: MountedTarget
    reader: DataSource
    max_bytes: int | None
    bytes_written: int = 0
    whiteouts: int = 0
    xattrs_dropped: int = 0
    xattrs_unsupported: int = 0
    written: dict[Components, bool] = field(default_factory=dict)
    kept: set[Components] = field(default_factory=set)
    recorded: dict[Components, tuple[int, int, int]] = field(default_factory=dict)
    buffer: memoryview = field(
        default_factory=lambda: memoryview(bytearray(_BUFFER_SIZE))
    )

    def mark_written(self, path: Components, is_dir: bool) -> None:
        """Record that this layer wrote ``path``."""
        self.written[path] = is_dir
        self.keep(path)

    def keep(self, path: Components) -> None:
        """Add ``path`` and its ancestors to the kept set."""
        while path and path not in self.kept:
            self.kept.add(path)
            path = path[:-1]

    def charge(self, size: int) -> None:
        """Count ``size`` bytes about to be written against ``max_bytes``."""
        self.bytes_written += size
        if self.max_bytes is not None and self.bytes_written > self.max_bytes:
            raise RuleError(
                f"layer writes more than the limit of {self.max_bytes} bytes",
                ResourceExhaustedError,
            )


# The dispatcher


def apply_entry(state: LayerState, entry: TarEntry) -> None:
    """Apply one entry to the target.

    Raises :class:`RuleError` or :class:`OSError`; the engine adds the layer
    and the entry name to the message.
    """
    components = clean_name(entry.name)
    if not components:
        _apply_root(state, entry)
        return
    # Most names hold no whiteout prefix at all; skip the per-component check.
    if WHITEOUT_PREFIX in entry.name:
        whiteout = classify_whiteout(components[-1])
        if whiteout is not WhiteoutKind.NONE:
            _apply_whiteout(state, whiteout, components)
            return
    if WHITEOUT_PREFIX not in entry.name or _check_parents(components):
        parent = state.target.walk(components[:-1], create=True)
        assert parent is not None
        _HANDLERS[entry.kind](state, entry, parent, components)


def _check_parents(components: Components) -> bool:
    """Reject a whiteout used as a directory; skip aufs metadata directories."""
    for name in components[:-1]:
        kind = classify_whiteout(name)
        if kind is WhiteoutKind.IGNORED:
            return False
        if kind is not WhiteoutKind.NONE:
            raise RuleError(f"whiteout {display(name)} is used as a directory")
    return True


def _apply_root(state: LayerState, entry: TarEntry) -> None:
    if entry.kind is not EntryKind.DIR:
        raise RuleError(f"a {entry.kind.value} entry cannot replace the root")
    _set_dir_metadata(state, entry, state.target.root, existed=True)


# Whiteouts


def _apply_whiteout(
    state: LayerState, kind: WhiteoutKind, components: Components
) -> None:
    if kind is WhiteoutKind.INVALID:
        raise RuleError(f"invalid whiteout name {display(components[-1])}")
    if kind is WhiteoutKind.IGNORED:
        return
    state.whiteouts += 1
    if kind is WhiteoutKind.OPAQUE:
        directory = state.target.walk(components[:-1], create=True)
        assert directory is not None
        state.keep(directory.path)
        state.target.hide_lower_children(directory, state.kept, state.recorded)
        return
    # Like any entry, a whiteout implies its parent directories.
    parent = state.target.walk(components[:-1], create=True)
    assert parent is not None
    name = components[-1][len(WHITEOUT_PREFIX) :]
    _whiteout(state, parent, name)


def _whiteout(state: LayerState, parent: DirHandle, name: bytes) -> None:
    path = parent.path + (name,)
    written = state.written.get(path)
    if written is False:
        return
    directory = state.target.open_resolved(path) if path in state.kept else None
    if directory is not None:
        # This layer wrote below the directory, so only its lower version goes.
        if path not in state.recorded:
            state.target.reset_to_implied(directory)
        state.target.hide_lower_children(directory, state.kept, state.recorded)
    else:
        state.target.whiteout(parent, name)


# Handlers by entry kind


def _apply_file(
    state: LayerState, entry: TarEntry, parent: DirHandle, components: Components
) -> None:
    name = components[-1]
    fd = _replace(state, parent, name, lambda: _create_file(parent, name))
    try:
        _write_data(state, entry, fd)
        os.fchown(fd, entry.uid, entry.gid)
        os.fchmod(fd, entry.mode)
        if entry.xattrs:
            setter = partial(os.setxattr, fd)
            _write_xattrs(state, entry, _xattrs(state, entry), setter)
        os.utime(fd, ns=_times(entry))
    finally:
        os.close(fd)
    state.mark_written(parent.path + (name,), False)


def _create_file(parent: DirHandle, name: bytes) -> int:
    return os.open(name, _CREATE_FLAGS, 0o600, dir_fd=parent.fd)


def _apply_dir(
    state: LayerState, entry: TarEntry, parent: DirHandle, components: Components
) -> None:
    handle, existed = state.target.make_dir(parent, components[-1])
    state.target.alias(components, handle.path)
    _set_dir_metadata(state, entry, handle, existed=existed)


def _set_dir_metadata(
    state: LayerState, entry: TarEntry, handle: DirHandle, *, existed: bool
) -> None:
    """Set owner and xattrs now; mode and times wait for the children."""
    os.fchown(handle.fd, entry.uid, entry.gid)
    xattrs = _xattrs(state, entry)
    if existed:
        _remove_other_xattrs(handle.fd, {key for key, _ in xattrs})
    _write_xattrs(state, entry, xattrs, partial(os.setxattr, handle.fd))
    state.recorded[handle.path] = (entry.mode, *_times(entry))
    state.mark_written(handle.path, True)


def _remove_other_xattrs(fd: int, keep: set[bytes]) -> None:
    """Make a reused directory carry only the attributes its new entry lists.

    ``trusted.overlay.*`` stays: the engine itself set it for this layer.
    """
    for name in os.listxattr(fd):
        raw = os.fsencode(name)
        if raw not in keep and not raw.startswith(OVERLAY_XATTR_PREFIX):
            os.removexattr(fd, name)


def _apply_symlink(
    state: LayerState, entry: TarEntry, parent: DirHandle, components: Components
) -> None:
    if not entry.linkname:
        raise RuleError("symbolic link target is empty")
    name = components[-1]
    _replace(
        state, parent, name, lambda: os.symlink(entry.linkname, name, dir_fd=parent.fd)
    )
    _set_metadata_at(state, entry, parent, name, mode=False)


def _apply_device(
    state: LayerState, entry: TarEntry, parent: DirHandle, components: Components
) -> None:
    name = components[-1]
    kind = _DEVICE_FORMATS[entry.kind] | 0o600
    device = os.makedev(entry.devmajor, entry.devminor)
    _replace(
        state, parent, name, lambda: os.mknod(name, kind, device, dir_fd=parent.fd)
    )
    _set_metadata_at(state, entry, parent, name, mode=True)


def _apply_hardlink(
    state: LayerState, entry: TarEntry, parent: DirHandle, components: Components
) -> None:
    """Link ``components`` to the entry's target, leaving the inode unchanged.

    The link entry's own owner, mode, times and xattrs are not applied, as in
    GNU tar. Applying them as containerd does would chown the shared inode,
    which clears a ``security.capability`` that tar does not repeat on links.
    """
    source, source_name, link = _resolve_link_target(state, entry)
    name = components[-1]
    if source.path + (source_name,) == parent.path + (name,):
        raise RuleError(f"hard link to itself: {display(link)}")
    try:
        _replace(
            state,
            parent,
            name,
            lambda: state.target.link(source, source_name, parent, name),
        )
    except FileNotFoundError as error:
        raise RuleError(f"hard link target {display(link)} not found") from error
    except PermissionError as error:
        # link(2) fails with EPERM for a directory.
        if _is_directory(source, source_name):
            message = f"hard link target {display(link)} is a directory"
            raise RuleError(message) from error
        raise
    state.mark_written(parent.path + (name,), False)


def _resolve_link_target(
    state: LayerState, entry: TarEntry
) -> tuple[DirHandle, bytes, Components]:
    """Return the directory and name of a hard link's target, and its path."""
    link = clean_link_name(entry.linkname)
    if link is None:
        target = display(entry.linkname)
        raise RuleError(f"hard link target {target} is outside the root")
    if not link:
        raise RuleError("hard link target is the root")
    source = state.target.walk(link[:-1], create=False)
    if source is None:
        raise RuleError(f"hard link target {display(link)} not found")
    return source, link[-1], link


def _is_directory(parent: DirHandle, name: bytes) -> bool:
    try:
        st = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode)


# Shared steps


def _replace(
    state: LayerState, parent: DirHandle, name: bytes, create: Callable[[], _T]
) -> _T:
    """Run ``create``; if something is in the way, remove it and run it again."""
    state.target.note_change(parent)
    try:
        return create()
    except FileExistsError:
        state.target.remove(parent, name)
    return create()


def _write_data(state: LayerState, entry: TarEntry, fd: int) -> None:
    """Write a file's data, only the data regions for a sparse file."""
    if entry.sparse is None:
        state.charge(entry.data_size)
        _copy_region(state, fd, 0, entry.data_size)
        return
    state.charge(sum(length for _, length in entry.sparse))
    for offset, length in entry.sparse:
        _copy_region(state, fd, offset, length)
    # Holes at the end have no region; the size makes them.
    os.ftruncate(fd, entry.size)


def _copy_region(state: LayerState, fd: int, offset: int, length: int) -> None:
    copy = getattr(state.reader, "copy_data", None)
    while length > 0:
        if copy is not None:
            count = copy(fd, offset, length)
        else:
            count = _copy_through_buffer(state, fd, offset, length)
        if count <= 0:
            raise RuleError("archive data ends early", DataLossError)
        offset += count
        length -= count


def _copy_through_buffer(state: LayerState, fd: int, offset: int, length: int) -> int:
    buffer = state.buffer
    count = state.reader.readinto_data(buffer[: min(len(buffer), length)])
    done = 0
    while done < count:
        done += os.pwrite(fd, buffer[done:count], offset + done)
    return count


def _set_metadata_at(
    state: LayerState, entry: TarEntry, parent: DirHandle, name: bytes, *, mode: bool
) -> None:
    """Set metadata of a node that cannot be opened: a link, device or fifo."""
    os.chown(name, entry.uid, entry.gid, dir_fd=parent.fd, follow_symlinks=False)
    if mode:
        os.chmod(name, entry.mode, dir_fd=parent.fd, follow_symlinks=False)
    path = proc_path(parent.fd, name)
    setter = partial(os.setxattr, path, follow_symlinks=False)
    _write_xattrs(state, entry, _xattrs(state, entry), setter)
    os.utime(name, ns=_times(entry), dir_fd=parent.fd, follow_symlinks=False)


def _xattrs(state: LayerState, entry: TarEntry) -> list[tuple[bytes, bytes]]:
    """Return the entry's xattrs without the ``trusted.*`` namespace.

    ``trusted.overlay.*`` would make overlayfs treat the file as a whiteout, an
    opaque directory or a redirect. Other ``trusted.*`` names are reserved for
    privileged host software in the same way, so a layer sets none of them.
    """
    kept = []
    for key, value in entry.xattrs.items():
        if key.startswith(_TRUSTED_PREFIX):
            state.xattrs_dropped += 1
            logger.warning(
                "dropped trusted xattr %s of %s", display(key), display(entry.name)
            )
        else:
            kept.append((key, value))
    return kept


def _write_xattrs(
    state: LayerState,
    entry: TarEntry,
    xattrs: list[tuple[bytes, bytes]],
    setter: Callable[[bytes, bytes], None],
) -> None:
    """Set each attribute; skip with a warning those the file cannot hold."""
    for key, value in xattrs:
        try:
            setter(key, value)
        except OSError as error:
            if error.errno not in _UNSUPPORTED_XATTR:
                raise
            state.xattrs_unsupported += 1
            logger.warning(
                "skipped xattr %s of %s: %s",
                display(key),
                display(entry.name),
                error.strerror,
            )


def _times(entry: TarEntry) -> tuple[int, int]:
    atime = entry.mtime_ns if entry.atime_ns is None else entry.atime_ns
    return atime, entry.mtime_ns


_Handler = Callable[[LayerState, TarEntry, DirHandle, Components], None]
_HANDLERS: dict[EntryKind, _Handler] = {
    EntryKind.FILE: _apply_file,
    EntryKind.DIR: _apply_dir,
    EntryKind.SYMLINK: _apply_symlink,
    EntryKind.HARDLINK: _apply_hardlink,
    EntryKind.CHAR: _apply_device,
    EntryKind.BLOCK: _apply_device,
    EntryKind.FIFO: _apply_device,
}
