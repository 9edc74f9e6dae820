"""Write a layer's changeset into a root directory.

This is the one place that turns tar entries into files. ``ipcs-fs unpack``
and the containerd diff plugin both call :func:`apply_layer`, for standard OCI
tar layers and for file-granular layers. A file-granular layer re-emits its
original tar stream byte for byte, so the engine always reads a tar stream.

The rules are the OCI image spec's changeset rules as containerd's walking
differ applies them, with these differences:

- whiteouts and opaque markers remove only lower content, wherever they stand
  in the tar, and a directory whose lower version they hide keeps only what
  this layer wrote, with implied-directory metadata unless the layer records
  it; names under ``.wh..wh.*`` (aufs metadata) are skipped;
- every directory the layer records gets the mode and times the layer gives
  it, set after all its children. A directory the layer does not record but
  whose children it changes keeps the times it had before;
- in an overlay upper directory, lower layers are read through, so a symbolic
  link of a lower layer is followed and a hard link to a lower file works;
- ``trusted.*`` attributes in a layer are dropped with a warning, so a layer
  cannot forge overlayfs whiteouts, opaque directories or redirects
  (``trusted.overlay.*``) nor other metadata reserved for the host;
- a hard link entry's own owner, mode, times and xattrs are not applied: the
  new name shares its target's inode unchanged, as in GNU tar.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ipcs_fs.apply.handlers import LayerState, apply_entry
from ipcs_fs.apply.overlay import OverlayUpperTarget
from ipcs_fs.apply.paths import display
from ipcs_fs.apply.targets import MountedTarget, RuleError
from ipcs_fs.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    IpcsError,
    NotFoundError,
    ResourceExhaustedError,
)
from ipcs_fs.tar.entry import TarEntry
from ipcs_fs.tar.reader import ReadableStream, TarReader

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ENTRIES",
    "ApplyOptions",
    "ApplyStats",
    "EntrySource",
    "apply_entries",
    "apply_layer",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 1 << 40
"""Default bound of file data one layer may write: 1 TiB.

It stops a compression bomb from filling the disk while leaving room for
layers of many GiB; lower it where disks are small.
"""
DEFAULT_MAX_ENTRIES = 1 << 24
"""Default bound of entries in one layer, about 16.7 million."""

_RESOURCE_ERRNOS = frozenset((errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE))
_INPUT_ERRNOS = frozenset(
    (errno.ENAMETOOLONG, errno.EINVAL, errno.ENOTDIR, errno.EISDIR, errno.ELOOP)
)


@dataclass(frozen=True, kw_only=True)
class ApplyOptions:
    """Options of :func:`apply_layer`: the kind of target and the limits.

    ``overlay_upper`` makes the root an overlayfs upper directory that is not
    mounted: whiteouts become 0/0 character devices, opaque directories get
    ``trusted.overlay.opaque=y``, and ``lowers`` (the lower directories of the
    mount, top first) are read where the upper directory lacks a path. Without
    ``lowers`` the layer is the bottom one.

    A hard link to a file that only a lower directory has cannot be made
    across directories, so the file is first copied up (content with holes,
    owner, mode, xattrs, times) and the link joins the copy. The merged view
    is the same, except that names of the file in layers below stay with the
    old inode. A lower directory that an entry must enter is copied up with
    its metadata in the same way. A lower symbolic link on the way is followed.

    ``max_bytes`` bounds the file data written and ``max_entries`` the entries
    read. ``None`` means no bound.
    """

    overlay_upper: bool = False
    lowers: Sequence[Path] = ()
    max_bytes: int | None = DEFAULT_MAX_BYTES
    max_entries: int | None = DEFAULT_MAX_ENTRIES


@dataclass(frozen=True)
class ApplyStats:
    """Counts and duration of one layer's apply."""

    entries: int
    bytes_written: int
    """File data written from the layer, holes of sparse files excluded."""
    whiteouts: int
    """Whiteouts and opaque markers applied."""
    xattrs_dropped: int
    """``trusted.*`` attributes that the layer carried and that were dropped."""
    xattrs_unsupported: int
    """Attributes the file system rejected for their file type, skipped."""
    copied_bytes: int
    """File data copied up from lower directories for hard links."""
    seconds: float


class EntrySource(Protocol):
    """Tar entries with their data: what :class:`TarReader` provides.

    A source that also has ``copy_data(fd, offset, size) -> int``, as
    :class:`TarReader` does, writes each file's data into the file itself.
    """

    def __iter__(self) -> Iterator[TarEntry]: ...

    def readinto_data(self, buffer: bytearray | memoryview) -> int: ...


def apply_layer(
    stream: ReadableStream,
    root: Path,
    *,
    source: str,
    options: ApplyOptions = ApplyOptions(),
) -> ApplyStats:
    """Apply the uncompressed tar layer read from ``stream`` to ``root``.

    Entries apply in tar order. Nothing is written, changed or followed outside
    ``root``: every path component is resolved inside it, with symbolic links
    interpreted relative to it. ``source`` names the layer (a digest or a file
    name) in errors and logs. The stream is read to its end and not closed.

    Raises one :class:`~ipcs_fs.errors.IpcsError` naming ``source``, the entry
    and the rule broken: InvalidArgumentError for a malformed tar or an entry
    that breaks a rule, NotFoundError for a missing hard link target,
    ResourceExhaustedError past a limit or when the disk is full. On error the
    root is left half-written, with no rollback: the caller discards it.

    The engine runs as root. It relies on root's permission to write into
    directories of mode 0555 or 000 and files of mode 000 that lower layers
    left, and never changes a mode to gain access, so it has none to restore.
    """
    reader = TarReader(stream, source=source)
    return apply_entries(reader, root, source=source, options=options)


def apply_entries(
    entries: EntrySource,
    root: Path,
    *,
    source: str,
    options: ApplyOptions = ApplyOptions(),
) -> ApplyStats:
    """Apply entries that a :class:`TarReader` yields; see :func:`apply_layer`."""
    started = time.monotonic()
    target = _open_target(root, options)
    try:
        state = LayerState(target=target, reader=entries, max_bytes=options.max_bytes)
        count = _apply_all(state, entries, source, options.max_entries)
        try:
            target.finish(state.recorded)
        except OSError as error:
            raise _os_error(source, "directory modes and times", error) from error
    finally:
        target.close()
    copied = target.copied_bytes if isinstance(target, OverlayUpperTarget) else 0
    return ApplyStats(
        entries=count,
        bytes_written=state.bytes_written,
        whiteouts=state.whiteouts,
        xattrs_dropped=state.xattrs_dropped,
        xattrs_unsupported=state.xattrs_unsupported,
        copied_bytes=copied,
        seconds=time.monotonic() - started,
    )


def _open_target(root: Path, options: ApplyOptions) -> MountedTarget:
    try:
        if options.overlay_upper:
            return OverlayUpperTarget(root, list(options.lowers))
        if options.lowers:
            raise InvalidArgumentError(
                "invalid apply options: lowers need overlay_upper"
            )
        return MountedTarget(root)
    except OSError as error:
        raise FailedPreconditionError(
            f"failed to open apply root {root}: {error.strerror}"
        ) from error


def _apply_all(
    state: LayerState, entries: EntrySource, source: str, max_entries: int | None
) -> int:
    count = 0
    for entry in entries:
        count += 1
        if max_entries is not None and count > max_entries:
            raise ResourceExhaustedError(
                f"failed to apply layer {source}: more than {max_entries} entries"
            )
        _apply_one(state, entry, source)
    return count


def _apply_one(state: LayerState, entry: TarEntry, source: str) -> None:
    try:
        apply_entry(state, entry)
    except RuleError as error:
        raise error.kind(
            f"failed to apply {_label(entry)} of {source}: {error}"
        ) from error
    except OSError as error:
        raise _os_error(source, _label(entry), error) from error
    except ValueError as error:
        # os functions raise ValueError for names with a NUL byte.
        raise InvalidArgumentError(
            f"failed to apply {_label(entry)} of {source}: {error}"
        ) from error
    finally:
        state.target.end_entry()


def _label(entry: TarEntry) -> str:
    """Name the entry for a message; built only on error, to spare the loop."""
    return f"{entry.kind.value} {display(entry.name)}"


def _os_error(source: str, label: str, error: OSError) -> IpcsError:
    kind: type[IpcsError] = FailedPreconditionError
    if error.errno in _RESOURCE_ERRNOS:
        kind = ResourceExhaustedError
    elif error.errno in _INPUT_ERRNOS:
        kind = InvalidArgumentError
    elif error.errno == errno.ENOENT:
        kind = NotFoundError
    cause = error.strerror or str(error)
    return kind(f"failed to apply {label} of {source}: {cause}")
