"""The overlayfs upper-directory target of the apply engine.

Terms:

- *upper directory*: the writable directory of an overlay mount. The engine
  writes a layer into it while the overlay is not mounted, so whiteouts and
  opaque directories must be written in overlayfs's own encoding.
- *lower directories*: the read-only directories below it, top first. Each is
  itself the upper directory of an earlier layer.
- *lower stack* of a directory: the lower directories that merge into it under
  overlayfs's lookup rules. A whiteout or a non-directory ends the stack, and
  so does an opaque directory after itself.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Container
from pathlib import Path

from ipcs_fs.apply.copyup import copy_metadata, copy_up
from ipcs_fs.apply.paths import ROOT, Components, display
from ipcs_fs.apply.targets import (
    DIR_FLAGS,
    OPAQUE_XATTR,
    DirHandle,
    MountedTarget,
    RuleError,
    is_whiteout_device,
)

__all__ = ["OverlayUpperTarget"]


class OverlayUpperTarget(MountedTarget):
    """An overlayfs upper directory, written while it is not mounted.

    Whiteouts become 0/0 character devices and opaque directories get
    ``trusted.overlay.opaque=y``, as overlayfs itself writes them. Reads fall
    through to ``lowers`` (top first) with overlayfs's lookup rules, so that:

    - a symbolic link that only a lower layer contains (``var/run -> /run``) is
      followed, not shadowed by a new upper directory;
    - a directory that only a lower layer contains is copied up with its owner,
      mode, xattrs and times before a child is written into it;
    - a hard link whose target only a lower layer contains links to a copy-up of
      that target. The copy keeps the target's content and metadata, but it is
      a new inode: other names of the lower inode, in layers below, are not
      part of the new link's group (overlayfs without ``index=on`` behaves the
      same way).
    """

    def __init__(self, root: Path, lowers: list[Path]) -> None:
        super().__init__(root)
        self._lowers = [os.fsencode(lower) for lower in lowers]
        self._stacks: dict[Components, list[bytes]] = {}
        self._opaque: set[Components] = set()
        self._whited: set[Components] = set()
        self.copied_bytes = 0

    # Lookups in the lower directories

    def _lower_stack(self, path: Components) -> list[bytes]:
        """Return the lower directories that merge into directory ``path``."""
        missing: list[Components] = []
        probe = path
        while probe and probe not in self._stacks:
            missing.append(probe)
            probe = probe[:-1]
        if ROOT not in self._stacks:
            hidden = ROOT in self._opaque
            self._stacks[ROOT] = [] if hidden else list(self._lowers)
        for prefix in reversed(missing):
            self._stacks[prefix] = self._merge(prefix, self._stacks[prefix[:-1]])
        return self._stacks[path]

    def _merge(self, path: Components, parents: list[bytes]) -> list[bytes]:
        if path in self._opaque or path in self._whited:
            return []
        merged: list[bytes] = []
        for parent in parents:
            candidate = parent + b"/" + path[-1]
            try:
                st = os.lstat(candidate)
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                break
            merged.append(candidate)
            if _is_opaque(candidate):
                break
        return merged

    def lower_lookup(self, path: Components) -> tuple[bytes, os.stat_result] | None:
        """Find the topmost lower object at ``path`` that no whiteout hides."""
        for parent in self._lower_stack(path[:-1]):
            candidate = parent + b"/" + path[-1]
            try:
                st = os.lstat(candidate)
            except FileNotFoundError:
                continue
            if is_whiteout_device(st):
                return None
            return candidate, st
        return None

    def _hide_lower(self, path: Components) -> None:
        self._opaque.add(path)
        self._stacks.clear()

    # Resolving paths through the lower directories

    def _missing(
        self, current: DirHandle, name: bytes, create: bool
    ) -> DirHandle | bytes | None:
        found = self.lower_lookup(current.path + (name,))
        if found is None:
            return super()._missing(current, name, create)
        source, st = found
        if stat.S_ISLNK(st.st_mode):
            return os.readlink(source)
        if not stat.S_ISDIR(st.st_mode):
            raise RuleError(f"{display(current.path + (name,))} is not a directory")
        return self._copy_up_dir(current, name, source, st)

    def _copy_up_dir(
        self, parent: DirHandle, name: bytes, source: bytes, st: os.stat_result
    ) -> DirHandle:
        self.note_change(parent)
        os.mkdir(name, 0o700, dir_fd=parent.fd)
        fd = os.open(name, DIR_FLAGS, dir_fd=parent.fd)
        handle = self.cache(DirHandle(fd, parent.path + (name,)))
        copy_metadata(source, st, fd)
        self._saved[handle.path] = (st.st_atime_ns, st.st_mtime_ns)
        return handle

    def _not_directory(
        self, current: DirHandle, name: bytes, create: bool
    ) -> DirHandle | bytes | None:
        st = os.stat(name, dir_fd=current.fd, follow_symlinks=False)
        if not is_whiteout_device(st):
            return super()._not_directory(current, name, create)
        if not create:
            return None
        self.remove(current, name)
        return self.make_implied_dir(current, name)

    # Changing the upper directory

    def _mkdir(self, parent: DirHandle, name: bytes) -> DirHandle:
        handle = super()._mkdir(parent, name)
        if handle.path in self._whited:
            # The layer deleted the lower object here first, so the lower
            # directory of the same name must not show through.
            self.set_opaque(handle)
        return handle

    def set_opaque(self, handle: DirHandle) -> None:
        """Mark ``handle`` opaque so no lower directory merges into it."""
        os.setxattr(handle.fd, OPAQUE_XATTR, b"y")
        self._hide_lower(handle.path)

    def whiteout(self, parent: DirHandle, name: bytes) -> None:
        """Write an overlayfs whiteout for ``name``, replacing what is there.

        Where no lower directory has ``name``, only the upper copy goes: a
        whiteout in a directory that merges with nothing would still be listed
        by readdir on the mounted overlay.
        """
        self.remove(parent, name)
        path = parent.path + (name,)
        if self.lower_lookup(path) is None:
            return
        self.note_change(parent)
        os.mknod(name, stat.S_IFCHR, 0, dir_fd=parent.fd)
        os.chown(name, 0, 0, dir_fd=parent.fd, follow_symlinks=False)
        self._whited.add(path)
        self._stacks.clear()

    def _removed(self, path: Components, st: os.stat_result) -> None:
        if is_whiteout_device(st):
            # Whatever replaces a whiteout must keep the lower object hidden.
            self._whited.add(path)

    def hide_lower_children(
        self,
        handle: DirHandle,
        keep: Container[Components],
        recorded: Container[Components],
    ) -> None:
        """Hide every lower child of ``handle``; this layer's children stay.

        Copies made for hard links or as parents are lower content too, so
        those not in ``keep`` are removed from the upper directory.
        """
        super().hide_lower_children(handle, keep, recorded)
        self.set_opaque(handle)

    def link(
        self, source: DirHandle, source_name: bytes, parent: DirHandle, name: bytes
    ) -> None:
        """Make a hard link, first copying up a target only a lower layer contains.

        A whiteout at the target means the target was deleted, so the result
        is :class:`FileNotFoundError` rather than a link to the whiteout.
        """
        try:
            st = os.stat(source_name, dir_fd=source.fd, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if is_whiteout_device(st):
                raise FileNotFoundError(errno.ENOENT, "whiteout", source_name)
        try:
            super().link(source, source_name, parent, name)
            return
        except FileNotFoundError:
            if not self._copy_up(source, source_name):
                raise
        super().link(source, source_name, parent, name)

    def _copy_up(self, parent: DirHandle, name: bytes) -> bool:
        try:
            os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
            return False
        except FileNotFoundError:
            pass
        found = self.lower_lookup(parent.path + (name,))
        if found is None:
            return False
        source, st = found
        if stat.S_ISDIR(st.st_mode):
            raise RuleError(
                f"hard link target {display(parent.path + (name,))} is a directory"
            )
        self.note_change(parent)
        self.copied_bytes += copy_up(source, st, parent.fd, name)
        return True


def _is_opaque(path: bytes) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError as error:
        if error.errno in (errno.ENODATA, errno.ENOTSUP):
            return False
        raise
