"""The directory tree the apply engine writes into, and its path resolution.

Terms:

- *target*: the directory tree being written, seen through open directory file
  descriptors. :class:`MountedTarget` is a complete tree (a native snapshot or a
  mounted overlay), where whiteouts delete. Its subclass in :mod:`.overlay`
  writes an overlayfs upper directory that is not mounted, and reads the lower
  directories beside it.
- *handle*: an open directory of the target, with its *resolved path*: the
  components of the directory's real location, free of symbolic links.
- *walk*: resolving a cleaned entry path to a handle, one component at a time
  with ``openat(O_NOFOLLOW | O_DIRECTORY)``. A symbolic link met on the way is
  read and its target resolved from the root of the target, so nothing outside
  the root is ever opened, even if the layer plants links to ``/`` or ``..``.
- *saved times*: the access and modification times of a directory that existed
  before this layer and whose children this layer changes. They are put back at
  the end, so that a directory keeps the times its own layer recorded.

Every method raises :class:`RuleError` for input that breaks a rule and lets
:class:`OSError` through; the engine turns both into one error that names the
layer and the entry.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import resource
import stat
from collections import OrderedDict
from collections.abc import Container
from pathlib import Path

from ipcs_fs.apply.paths import ROOT, Components, display, resolve_symlink
from ipcs_fs.errors import InvalidArgumentError, IpcsError

__all__ = [
    "DIR_FLAGS",
    "MAX_SYMLINK_HOPS",
    "OPAQUE_XATTR",
    "OVERLAY_XATTR_PREFIX",
    "DirHandle",
    "MountedTarget",
    "RuleError",
]

logger = logging.getLogger(__name__)

OVERLAY_XATTR_PREFIX = b"trusted.overlay."
OPAQUE_XATTR = b"trusted.overlay.opaque"
MAX_SYMLINK_HOPS = 40
"""Symbolic links followed while resolving one path; Linux also stops at 40."""

_MAX_CACHED_DIRS = 128
"""Directory descriptors kept open, at most a quarter of RLIMIT_NOFILE."""
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
"""Flags that open a directory and fail on anything else, a link included."""


class RuleError(Exception):
    """A layer entry breaks a rule of the apply engine.

    ``kind`` is the :class:`~ipcs_fs.errors.IpcsError` subclass the engine
    raises for it, once it has added the layer and entry to the message.
    """

    def __init__(
        self, message: str, kind: type[IpcsError] = InvalidArgumentError
    ) -> None:
        super().__init__(message)
        self.kind = kind


class DirHandle:
    """An open directory of the target and its resolved path.

    The target owns the descriptor: it stays open at least until the engine
    calls :meth:`MountedTarget.end_entry`.
    """

    __slots__ = ("fd", "path")

    def __init__(self, fd: int, path: Components) -> None:
        self.fd = fd
        self.path = path


def proc_path(dir_fd: int, name: bytes) -> bytes:
    """Return a path that names ``name`` in ``dir_fd`` without a walk.

    The kernel resolves ``/proc/self/fd/N`` to the open directory itself, so
    calls that take no ``dir_fd`` (``lsetxattr``) still cannot be redirected by
    a symbolic link in an earlier component.
    """
    return b"/proc/self/fd/%d/%s" % (dir_fd, name)


def is_whiteout_device(st: os.stat_result) -> bool:
    """Tell whether ``st`` is an overlayfs whiteout: a 0/0 character device."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _reopen(directory: DirHandle, name: bytes, path: Components) -> DirHandle:
    """Open ``name`` in ``directory`` and close ``directory``."""
    fd = os.open(name, DIR_FLAGS, dir_fd=directory.fd)
    os.close(directory.fd)
    return DirHandle(fd, path)


def remove_tree(parent_fd: int, name: bytes) -> None:
    """Remove the directory ``name`` with everything below it, following no link.

    Unlike ``shutil.rmtree`` this neither recurses in Python nor keeps a
    descriptor open per level, so a layer's deepest tree can still be removed.
    """
    directory = DirHandle(os.open(name, DIR_FLAGS, dir_fd=parent_fd), ROOT)
    pending = [_unlink_files(directory.fd)]
    try:
        while pending:
            if pending[-1]:
                child = pending[-1].pop()
                directory = _reopen(directory, child, directory.path + (child,))
                pending.append(_unlink_files(directory.fd))
                continue
            pending.pop()
            if pending:
                done = directory.path[-1]
                directory = _reopen(directory, b"..", directory.path[:-1])
                os.rmdir(done, dir_fd=directory.fd)
    finally:
        os.close(directory.fd)
    os.rmdir(name, dir_fd=parent_fd)


def _unlink_files(fd: int) -> list[bytes]:
    """Unlink every non-directory in ``fd``; return the subdirectory names."""
    subdirectories = []
    for child in list(os.scandir(fd)):
        name = os.fsencode(child.name)
        if child.is_dir(follow_symlinks=False):
            subdirectories.append(name)
        else:
            os.unlink(name, dir_fd=fd)
    return subdirectories


class MountedTarget:
    """A complete directory tree, where whiteouts delete.

    Contract: the caller owns ``root`` and discards it if applying fails; the
    target never changes anything outside it. Call :meth:`close` when done.
    """

    def __init__(self, root: Path) -> None:
        fd = os.open(root, DIR_FLAGS)
        self.root = DirHandle(fd, ROOT)
        self._fds: OrderedDict[Components, int] = OrderedDict()
        self._aliases: dict[Components, Components] = {}
        self._closing: list[int] = []
        self._pinned: set[int] = set()
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft_limit == resource.RLIM_INFINITY:
            soft_limit = 4 * _MAX_CACHED_DIRS
        self._cache_size = min(_MAX_CACHED_DIRS, max(soft_limit // 4, 8))
        self._created: set[Components] = set()
        self._saved: dict[Components, tuple[int, int]] = {}

    def close(self) -> None:
        """Close every descriptor the target has open."""
        self.end_entry()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        os.close(self.root.fd)

    def end_entry(self) -> None:
        """Release descriptors that no handle of the current entry still needs."""
        for fd in self._closing:
            os.close(fd)
        self._closing.clear()
        self._pinned.clear()
        self._evict()

    def _evict(self) -> None:
        """Close the least recently used descriptors past the cache size.

        Descriptors handed out for the current entry stay open, so no handle
        in use by a handler is closed under it.
        """
        excess = len(self._fds) - self._cache_size
        if excess <= 0:
            return
        candidates = list(itertools.islice(self._fds, excess + len(self._pinned)))
        for path in candidates:
            fd = self._fds[path]
            if fd in self._pinned:
                continue
            del self._fds[path]
            os.close(fd)
            excess -= 1
            if excess == 0:
                return

    # Resolving paths

    def walk(self, components: Components, *, create: bool) -> DirHandle | None:
        """Resolve ``components`` to a directory inside the root.

        Missing directories are created 0755 root:root when ``create`` is true;
        otherwise the result is ``None``. Raises :class:`RuleError` when a
        component is not a directory or links loop.
        """
        if not components:
            return self.root
        resolved = self._aliases.get(components)
        if resolved is not None:
            fd = self._fds.get(resolved)
            if fd is not None:
                self._fds.move_to_end(resolved)
                return self._pin(DirHandle(fd, resolved))
        handle = self._walk_from_root(components, create)
        if handle is None:
            return None
        self._aliases[components] = handle.path
        return self._pin(handle)

    def _pin(self, handle: DirHandle) -> DirHandle:
        self._pinned.add(handle.fd)
        return handle

    def _walk_from_root(self, components: Components, create: bool) -> DirHandle | None:
        current = self.root
        pending = list(reversed(components))
        hops = 0
        while pending:
            step = self._step(current, pending.pop(), create)
            if step is None:
                return None
            if isinstance(step, DirHandle):
                current = step
                continue
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise RuleError(f"too many symbolic links in {display(components)}")
            pending.extend(reversed(resolve_symlink(current.path, step)))
            current = self.root
        return current

    def _step(
        self, current: DirHandle, name: bytes, create: bool
    ) -> DirHandle | bytes | None:
        """Open ``name`` in ``current``: a handle, a link target, or ``None``."""
        path = current.path + (name,)
        fd = self._fds.get(path)
        if fd is not None:
            self._fds.move_to_end(path)
            return DirHandle(fd, path)
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=current.fd)
        except FileNotFoundError:
            return self._missing(current, name, create)
        except NotADirectoryError:
            return self._not_directory(current, name, create)
        return self.cache(DirHandle(fd, path))

    def _missing(
        self, current: DirHandle, name: bytes, create: bool
    ) -> DirHandle | bytes | None:
        if not create:
            return None
        return self.make_implied_dir(current, name)

    def _not_directory(
        self, current: DirHandle, name: bytes, create: bool
    ) -> DirHandle | bytes | None:
        try:
            return os.readlink(name, dir_fd=current.fd)
        except OSError as error:
            if error.errno != errno.EINVAL:
                raise
        raise RuleError(f"{display(current.path + (name,))} is not a directory")

    def alias(self, components: Components, path: Components) -> None:
        """Remember that the entry path ``components`` resolves to ``path``."""
        self._aliases[components] = path

    def cache(self, handle: DirHandle) -> DirHandle:
        """Keep ``handle`` open for later entries in the same directory."""
        self._fds[handle.path] = handle.fd
        self._evict()
        return handle

    def open_resolved(self, path: Components) -> DirHandle | None:
        """Open a resolved path again without following any link, or ``None``."""
        current = self.root
        for index, name in enumerate(path):
            prefix = path[: index + 1]
            fd = self._fds.get(prefix)
            if fd is None:
                try:
                    fd = os.open(name, DIR_FLAGS, dir_fd=current.fd)
                except (FileNotFoundError, NotADirectoryError):
                    return None
                self.cache(DirHandle(fd, prefix))
            current = DirHandle(fd, prefix)
        return self._pin(current)

    # Changing the tree

    def note_change(self, parent: DirHandle) -> None:
        """Save a directory's times before this layer first changes its children."""
        if parent.path in self._saved or parent.path in self._created:
            return
        st = os.fstat(parent.fd)
        self._saved[parent.path] = (st.st_atime_ns, st.st_mtime_ns)

    def make_implied_dir(self, parent: DirHandle, name: bytes) -> DirHandle:
        """Create a directory that an entry needs but the layer does not record."""
        handle = self._mkdir(parent, name)
        os.fchown(handle.fd, 0, 0)
        os.fchmod(handle.fd, 0o755)
        return handle

    def _mkdir(self, parent: DirHandle, name: bytes) -> DirHandle:
        self.note_change(parent)
        os.mkdir(name, 0o700, dir_fd=parent.fd)
        fd = os.open(name, DIR_FLAGS, dir_fd=parent.fd)
        path = parent.path + (name,)
        self._created.add(path)
        # A directory that was removed and made again must not get back the
        # times saved for the old one.
        self._saved.pop(path, None)
        return self.cache(DirHandle(fd, path))

    def make_dir(self, parent: DirHandle, name: bytes) -> tuple[DirHandle, bool]:
        """Create a recorded directory, or reuse the one there.

        Returns the handle and whether the directory existed. Anything else in
        the way is removed first, as a tar entry replaces what it names.
        """
        try:
            return self._pin(self._mkdir(parent, name)), False
        except FileExistsError:
            pass
        path = parent.path + (name,)
        cached = self._fds.get(path)
        if cached is not None:
            return self._pin(DirHandle(cached, path)), True
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=parent.fd)
        except NotADirectoryError:
            self.remove(parent, name)
            return self._pin(self._mkdir(parent, name)), False
        return self._pin(self.cache(DirHandle(fd, path))), True

    def remove(self, parent: DirHandle, name: bytes) -> bool:
        """Remove ``name`` from ``parent`` without following it; return if it was there."""
        try:
            st = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        self.note_change(parent)
        if stat.S_ISDIR(st.st_mode):
            remove_tree(parent.fd, name)
            self.forget(parent.path + (name,))
        else:
            os.unlink(name, dir_fd=parent.fd)
            if stat.S_ISLNK(st.st_mode):
                self._aliases.clear()
        self._removed(parent.path + (name,), st)
        return True

    def _removed(self, path: Components, st: os.stat_result) -> None:
        """Hook for targets that must remember what a removal took away."""

    def forget(self, path: Components) -> None:
        """Drop cached resolutions that a removed directory ``path`` invalidates."""
        self._aliases.clear()
        size = len(path)
        for cached in [p for p in self._fds if p[:size] == path]:
            self._closing.append(self._fds.pop(cached))

    def whiteout(self, parent: DirHandle, name: bytes) -> None:
        """Delete ``name``, which only lower layers wrote."""
        self.remove(parent, name)

    def hide_lower_children(
        self,
        handle: DirHandle,
        keep: Container[Components],
        recorded: Container[Components],
    ) -> None:
        """Remove everything under ``handle`` whose path is not in ``keep``.

        ``keep`` contains the paths this layer wrote and their ancestors. A kept
        directory that came from a lower layer and that this layer does not
        record becomes an implied directory, since its lower version is hidden.
        """
        # One descriptor at a time, climbing back with "..": each level keeps
        # only the names of the kept subdirectories still to visit, so neither
        # a deep nor a wide tree can exhaust the descriptor table.
        directory = DirHandle(os.dup(handle.fd), handle.path)
        pending = [self._prune_level(directory, keep)]
        try:
            while pending:
                if not pending[-1]:
                    pending.pop()
                    if pending:
                        directory = _reopen(directory, b"..", directory.path[:-1])
                    continue
                name = pending[-1].pop()
                directory = _reopen(directory, name, directory.path + (name,))
                if directory.path not in recorded:
                    self.reset_to_implied(directory)
                pending.append(self._prune_level(directory, keep))
        finally:
            os.close(directory.fd)

    def _prune_level(
        self, directory: DirHandle, keep: Container[Components]
    ) -> list[bytes]:
        """Remove the children not in ``keep``; return the kept subdirectories."""
        subdirectories = []
        # Listed first: removing entries while readdir runs may skip some.
        for child in list(os.scandir(directory.fd)):
            name = os.fsencode(child.name)
            if directory.path + (name,) not in keep:
                self.remove(directory, name)
            elif child.is_dir(follow_symlinks=False):
                subdirectories.append(name)
        return subdirectories

    def reset_to_implied(self, handle: DirHandle) -> None:
        """Give a directory from a lower layer the metadata of an implied one."""
        if handle.path in self._created:
            return
        os.fchown(handle.fd, 0, 0)
        os.fchmod(handle.fd, 0o755)
        for name in os.listxattr(handle.fd):
            if not os.fsencode(name).startswith(OVERLAY_XATTR_PREFIX):
                os.removexattr(handle.fd, name)
        self._saved.pop(handle.path, None)
        self._created.add(handle.path)

    def link(
        self, source: DirHandle, source_name: bytes, parent: DirHandle, name: bytes
    ) -> None:
        """Make ``name`` a hard link of ``source_name`` without following links.

        Raises :class:`FileNotFoundError` when the source does not exist.
        """
        self.note_change(parent)
        os.link(
            source_name,
            name,
            src_dir_fd=source.fd,
            dst_dir_fd=parent.fd,
            follow_symlinks=False,
        )

    # Finishing

    def finish(self, recorded: dict[Components, tuple[int, int, int]]) -> None:
        """Set directory modes and times, deepest first, after every child.

        ``recorded`` maps each directory the layer recorded to its mode, atime
        and mtime in ns; other directories whose children changed get their
        saved times back.
        """
        paths = set(recorded) | set(self._saved)
        for path in sorted(paths, key=len, reverse=True):
            handle = self.open_resolved(path)
            if handle is None:
                logger.debug("directory %s is gone before its times are set", path)
                continue
            record = recorded.get(path)
            if record is None:
                os.utime(handle.fd, ns=self._saved[path])
            else:
                mode, atime_ns, mtime_ns = record
                os.fchmod(handle.fd, mode)
                os.utime(handle.fd, ns=(atime_ns, mtime_ns))
            self.end_entry()
