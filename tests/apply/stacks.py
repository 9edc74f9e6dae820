"""Apply a stack of layers through either target and return the merged tree.

``mounted`` applies every layer into one directory. ``overlay`` applies each
layer into its own upper directory, with the earlier ones as lowers, then
mounts a read-only overlayfs over all of them, so the tree read back is what a
container would see.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from fixtures.tree import Node, snapshot
from ipcs_fs.apply import ApplyOptions, apply_layer

__all__ = ["apply_mounted", "apply_overlay", "apply_uppers", "overlay_mount"]


def apply_mounted(layers: Sequence[bytes], base: Path) -> dict[bytes, Node]:
    """Apply ``layers`` in order into ``base/root`` and return its snapshot."""
    root = base / "root"
    root.mkdir()
    for index, data in enumerate(layers):
        apply_layer(io.BytesIO(data), root, source=f"layer {index}")
    return snapshot(root)


def apply_uppers(layers: Sequence[bytes], base: Path) -> list[Path]:
    """Apply each layer into its own upper directory; return them lowest first."""
    uppers: list[Path] = []
    for index, data in enumerate(layers):
        upper = base / f"upper{index}"
        upper.mkdir()
        options = ApplyOptions(overlay_upper=True, lowers=list(reversed(uppers)))
        apply_layer(io.BytesIO(data), upper, source=f"layer {index}", options=options)
        uppers.append(upper)
    return uppers


@contextlib.contextmanager
def overlay_mount(uppers: Sequence[Path], base: Path) -> Iterator[Path]:
    """Mount ``uppers`` (lowest first) as a read-only overlayfs; yield the mount."""
    mount = base / "merged"
    mount.mkdir()
    lowers = [str(upper) for upper in reversed(uppers)]
    if len(lowers) == 1:
        # A read-only overlay needs two lower directories.
        empty = base / "empty"
        empty.mkdir()
        lowers.append(str(empty))
    options = "ro,lowerdir=" + ":".join(lowers)
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, str(mount)], check=True
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def apply_overlay(layers: Sequence[bytes], base: Path) -> dict[bytes, Node]:
    """Apply ``layers`` as overlay upper directories; return the mounted tree."""
    uppers = apply_uppers(layers, base)
    with overlay_mount(uppers, base) as mount:
        return snapshot(mount)
