"""containerd's mounts: recognising the fast paths, and mounting the rest.

A snapshotter describes a snapshot as a list of mounts (what mount(8) would be
given, with no target). The plugin writes a layer, or reads two trees, through
them in one of three ways:

- *overlay upper*: a single ``overlay`` mount with ``upperdir=``. The layer is
  written straight into the upper directory, with the ``lowerdir=``
  directories (top first) read where the upper one lacks a path, as
  containerd's own applier does; nothing is mounted.
- *bind source*: a single read-write ``bind`` mount. Its source directory is
  the tree, so it is used as it is.
- *temporary mount*: anything else is mounted with mount(8) on a new directory
  under the plugin's *mount directory*, and unmounted afterwards. Leftovers of
  a plugin that was killed are removed at start by :func:`clean_mount_dir`.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FailedPreconditionError, InvalidArgumentError

__all__ = [
    "Mount",
    "OverlayLayout",
    "bind_source",
    "clean_mount_dir",
    "overlay_layout",
    "temporary_mount",
]

log = logging.getLogger(__name__)

_UPPER = "upperdir="
_LOWER = "lowerdir="
# With userxattr, overlayfs reads user.overlay.* instead of trusted.overlay.*,
# which the overlay-upper writer does not produce; such mounts are mounted.
_FAST_PATH_BLOCKERS = frozenset({"userxattr"})
_MOUNT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Mount:
    """One mount of a snapshot: ``mount -t TYPE -o OPTIONS SOURCE TARGET``."""

    type: str
    source: str
    options: tuple[str, ...] = field(default=())
    target: str = ""


@dataclass(frozen=True)
class OverlayLayout:
    """The directories of an overlay mount: the upper one and the lowers, top first."""

    upper: Path
    lowers: tuple[Path, ...]


def overlay_layout(mounts: Sequence[Mount]) -> OverlayLayout | None:
    """Return the upper and lower directories when ``mounts`` is one overlay mount.

    Returns None for any other shape, and for an overlay mount without
    ``upperdir=`` (a read-only view) or with options that change where
    overlayfs keeps its metadata.
    """
    if len(mounts) != 1 or mounts[0].type != "overlay":
        return None
    options = mounts[0].options
    if _FAST_PATH_BLOCKERS.intersection(options):
        return None
    upper = _option_value(options, _UPPER)
    if not upper:
        return None
    lower = _option_value(options, _LOWER)
    lowers = tuple(Path(path) for path in lower.split(":")) if lower else ()
    return OverlayLayout(Path(upper), lowers)


def bind_source(mounts: Sequence[Mount], *, read_only: bool = False) -> Path | None:
    """Return the source directory when ``mounts`` is one bind mount.

    A bind mount marked ``ro`` qualifies only when ``read_only`` access is
    enough. Returns None for any other shape.
    """
    if len(mounts) != 1 or mounts[0].type != "bind":
        return None
    if "ro" in mounts[0].options and not read_only:
        return None
    return Path(mounts[0].source)


def _option_value(options: Sequence[str], prefix: str) -> str:
    values = [option[len(prefix) :] for option in options if option.startswith(prefix)]
    return values[-1] if values else ""


@contextmanager
def temporary_mount(
    mounts: Sequence[Mount], mount_dir: Path, *, read_only: bool = False
) -> Iterator[Path]:
    """Mount ``mounts`` in order on a new directory under ``mount_dir``; yield it.

    As containerd does, every mount goes on the same target, so later ones
    stack on earlier ones. ``read_only`` adds ``ro`` to each mount. On leaving,
    the mounts are removed (lazily when busy) and the directory deleted.
    Raises InvalidArgumentError for an empty list and FailedPreconditionError
    when mount(8) fails, with its message.
    """
    if not mounts:
        raise InvalidArgumentError("invalid mounts: the list is empty")
    mount_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = Path(tempfile.mkdtemp(prefix="m-", dir=mount_dir))
    mounted = 0
    try:
        for item in mounts:
            _mount(item, target, read_only)
            mounted += 1
        yield target
    finally:
        for _ in range(mounted):
            _unmount(target)
        _remove_dir(target)


def _mount(item: Mount, target: Path, read_only: bool) -> None:
    options = list(item.options)
    if read_only and "ro" not in options:
        options.append("ro")
    command = [_mount_program(), *_type_arguments(item.type)]
    if options:
        command += ["-o", ",".join(options)]
    command += ["--", item.source, str(target)]
    result = _run(command)
    if result.returncode != 0:
        raise FailedPreconditionError(
            f"failed to mount {item.type} {item.source} on {target}:"
            f" {result.stderr.strip() or f'mount exited with {result.returncode}'}"
        )


def _type_arguments(mount_type: str) -> list[str]:
    # containerd passes "bind" as the type with "rbind" or "bind" among the
    # options; mount(8) takes the bind from the options and needs no type.
    if mount_type in ("bind", "rbind", "none", ""):
        return []
    return ["-t", mount_type]


def _unmount(target: Path) -> None:
    result = _run(["umount", "--", str(target)])
    if result.returncode == 0:
        return
    log.warning(
        "failed to unmount %s (%s), detaching it", target, result.stderr.strip()
    )
    _run(["umount", "--lazy", "--", str(target)])


def _remove_dir(path: Path) -> None:
    try:
        path.rmdir()
    except OSError as error:
        log.warning("failed to remove mount directory %s: %s", path, error.strerror)


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=_MOUNT_TIMEOUT,
        check=False,
    )


def _mount_program() -> str:
    return shutil.which("mount") or "/bin/mount"


def clean_mount_dir(mount_dir: Path) -> int:
    """Unmount and remove every temporary mount left under ``mount_dir``.

    Called at start and at exit, so a plugin that was killed leaves nothing
    behind once it runs again. Returns how many directories were removed.
    """
    if not mount_dir.is_dir():
        return 0
    for point in sorted(_mount_points_below(mount_dir), key=len, reverse=True):
        _unmount(Path(point))
    removed = 0
    for entry in mount_dir.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            _remove_dir(entry)
            removed += 1
    return removed


def _mount_points_below(directory: Path) -> list[str]:
    prefix = str(directory).rstrip("/") + "/"
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as info:
        for line in info:
            point = _unescape(line.split()[4])
            if point.startswith(prefix):
                points.append(point)
    return points


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes.
    return os.fsdecode(field.encode().decode("unicode_escape").encode("latin-1"))
