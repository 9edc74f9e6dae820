"""Unpack images with containerd's walking differ and read the trees it leaves.

:class:`WalkingUnpacker` drives one started :class:`support.containerd.Containerd`
whose diff order should be ``walking`` alone. ``ctr images import`` unpacks
each image into the daemon's snapshotter; :meth:`WalkingUnpacker.read_tree`
then reads the image's top snapshot:

- overlayfs: through ``ctr images mount``, a read-only overlay mount of the
  image's layers, so the tree is what a container sees;
- native: in the snapshot's own directory. A mount of a native image is a
  fresh copy of that directory, which would add the copy's own directory
  times, so it is not used.

A native snapshot's directory is named by a number that containerd assigns,
and ``ctr`` does not show it. Layers are unpacked bottom to top, each into a
snapshot with a higher number, so the highest number that appears during an
import is the snapshot of the image's top layer. An image whose top chain was
unpacked before creates no snapshot and reuses the earlier one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ipcs_fs.ids import Digest

from .containerd import Containerd
from .layer_images import chain_ids
from .trees import ListedTree, snapshot_listed

__all__ = ["WalkingUnpacker"]


class WalkingUnpacker:
    """Imports images into one containerd and reads each image's unpacked tree.

    ``base_name`` prefixes image names: an archive tagged ``TAG`` becomes the
    image ``BASE_NAME:TAG``. Imports must run one at a time, because the
    native snapshot of an image is found by the numbers its import adds.
    """

    def __init__(self, daemon: Containerd, *, base_name: str) -> None:
        self.daemon = daemon
        self.base_name = base_name
        self._top_chains: dict[str, Digest] = {}
        self._native_dirs: dict[Digest, Path] = {}

    def unpack(self, archive: Path, tag: str, layer_diff_ids: Sequence[Digest]) -> str:
        """Import and unpack the image tagged ``tag`` in ``archive``; return its name.

        ``layer_diff_ids`` are the diff_ids the image's config lists. Raises
        :class:`support.containerd.CtrCommandError` with containerd's message
        when the import or the unpack fails.
        """
        image = f"{self.base_name}:{tag}"
        top_chain = chain_ids(layer_diff_ids)[-1]
        before = self._native_numbers()

        self.daemon.ctr("images", "import", "--base-name", self.base_name, archive)

        self._top_chains[image] = top_chain
        if self.daemon.snapshotter == "native":
            self._record_native_top(top_chain, self._native_numbers() - before)
        return image

    def read_tree(self, image: str) -> ListedTree:
        """Read the tree of an image that :meth:`unpack` unpacked."""
        if self.daemon.snapshotter == "native":
            return snapshot_listed(self._native_dirs[self._top_chains[image]])
        target = Path(tempfile.mkdtemp(prefix="ipcs-fs-walking-"))
        try:
            self.daemon.ctr("images", "mount", image, target)
            try:
                return snapshot_listed(target)
            finally:
                self.daemon.ctr("images", "unmount", "--rm", target)
        finally:
            target.rmdir()

    def _native_numbers(self) -> set[int]:
        directory = self.daemon.snapshot_dir("native")
        if not directory.is_dir():
            return set()
        return {int(name) for name in os.listdir(directory) if name.isdigit()}

    def _record_native_top(self, top_chain: Digest, added: set[int]) -> None:
        if added:
            snapshots = self.daemon.snapshot_dir("native")
            self._native_dirs[top_chain] = snapshots / str(max(added))
        elif top_chain not in self._native_dirs:
            raise RuntimeError(
                f"failed to find the native snapshot of chain {top_chain}: the"
                " import added no snapshot and no earlier import unpacked it"
            )
