"""Copying files from a lower directory into an overlay upper directory.

*Copy-up* is what overlayfs does before it changes a file that only a lower
layer holds: it copies the file, with owner, mode, extended attributes and
times, into the upper directory. The apply engine does the same for a hard
link whose target only a lower layer holds, because link(2) cannot join two
directories, and for the directories it must enter to write a child.

Lower directories are trusted: the engine or containerd wrote them. Their
``trusted.overlay.*`` attributes are overlay metadata of that lower layer and
are never copied.
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["copy_file_data", "copy_metadata", "copy_up"]

_OVERLAY_XATTR_PREFIX = "trusted.overlay."
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def _read_xattrs(source: bytes) -> list[tuple[str, bytes]]:
    names = os.listxattr(source, follow_symlinks=False)
    return [
        (name, os.getxattr(source, name, follow_symlinks=False))
        for name in names
        if not name.startswith(_OVERLAY_XATTR_PREFIX)
    ]


def copy_metadata(source: bytes, st: os.stat_result, fd: int) -> None:
    """Give the file or directory open as ``fd`` the owner, mode and xattrs of ``source``.

    Times are left to the caller, which sets them after the children.
    """
    os.fchown(fd, st.st_uid, st.st_gid)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))
    for name, value in _read_xattrs(source):
        os.setxattr(fd, name, value)


def copy_file_data(source_fd: int, target_fd: int, size: int) -> int:
    """Copy ``size`` bytes, skipping holes; return the bytes copied."""
    copied = 0
    offset = 0
    while offset < size:
        try:
            start = os.lseek(source_fd, offset, os.SEEK_DATA)
        except OSError as error:
            if error.errno != errno.ENXIO:
                raise
            break
        end = os.lseek(source_fd, start, os.SEEK_HOLE)
        while start < end:
            count = os.copy_file_range(source_fd, target_fd, end - start, start, start)
            if count == 0:
                break
            start += count
            copied += count
        offset = end
    os.ftruncate(target_fd, size)
    return copied


def copy_up(source: bytes, st: os.stat_result, parent_fd: int, name: bytes) -> int:
    """Copy the non-directory ``source`` to ``name`` in ``parent_fd``.

    Owner, mode, xattrs and times are copied; a regular file keeps its holes.
    Returns the bytes of file data copied.
    """
    if stat.S_ISREG(st.st_mode):
        return _copy_up_file(source, st, parent_fd, name)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(source), name, dir_fd=parent_fd)
    else:
        os.mknod(name, st.st_mode, st.st_rdev, dir_fd=parent_fd)
    os.chown(name, st.st_uid, st.st_gid, dir_fd=parent_fd, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        mode = stat.S_IMODE(st.st_mode)
        os.chmod(name, mode, dir_fd=parent_fd, follow_symlinks=False)
    target = b"/proc/self/fd/%d/%s" % (parent_fd, name)
    for key, value in _read_xattrs(source):
        os.setxattr(target, key, value, follow_symlinks=False)
    times = (st.st_atime_ns, st.st_mtime_ns)
    os.utime(name, ns=times, dir_fd=parent_fd, follow_symlinks=False)
    return 0


def _copy_up_file(
    source: bytes, st: os.stat_result, parent_fd: int, name: bytes
) -> int:
    source_fd = os.open(source, _READ_FLAGS)
    try:
        target_fd = os.open(name, _CREATE_FLAGS, 0o600, dir_fd=parent_fd)
        try:
            copied = copy_file_data(source_fd, target_fd, st.st_size)
            copy_metadata(source, st, target_fd)
            os.utime(target_fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(target_fd)
    finally:
        os.close(source_fd)
    return copied
