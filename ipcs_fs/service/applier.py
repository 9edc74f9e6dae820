"""The Applier: write one layer into the mounts of a snapshot.

:meth:`Applier.apply` handles two kinds of layer through the shared apply
engine (:func:`ipcs_fs.apply.apply_layer`):

- file-granular layers (``application/vnd.oci.image.layer.ipcs-fs.v1+dag-pb``):
  the root block comes from the block store, else from containerd's content
  directory (checked against the digest), and the tar stream is rebuilt from
  the block store;
- standard tar layers, plain, gzip or zstd, OCI or Docker: the blob is read
  from containerd's content directory and decompressed.

Either way the result is what containerd's walking differ returns: a
descriptor of the uncompressed tar (media type ``...layer.v1.tar``, digest the
diff_id, size the tar's length), produced only after the bytes the engine read
hashed to it. Any other media type raises UnimplementedError before anything
is mounted or written, so containerd tries its next differ.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..apply import ApplyOptions, ApplyStats, apply_layer
from ..errors import FailedPreconditionError, UnimplementedError
from ..ids import DAG_PB, Cid, Digest
from ..layer.hashing import HashingReader
from ..layer.rebuild import RebuiltTar, read_layer_root
from ..oci.compression import open_uncompressed
from ..oci.descriptor import Descriptor
from ..oci.mediatypes import (
    DOCKER_FOREIGN_LAYER,
    DOCKER_FOREIGN_LAYER_GZIP,
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_LAYER_ZSTD,
    IPCS_FS_LAYER,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_NONDISTRIBUTABLE,
    OCI_LAYER_NONDISTRIBUTABLE_GZIP,
    OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
    OCI_LAYER_ZSTD,
)
from ..store import BlockStore
from .blobs import ContentDirectory
from .mounts import Mount, bind_source, overlay_layout, temporary_mount
from .streams import CancellableStream

__all__ = ["STANDARD_LAYER_TYPES", "AppliedLayer", "Applier", "WritePath"]

log = logging.getLogger(__name__)

STANDARD_LAYER_TYPES = frozenset(
    {
        OCI_LAYER,
        OCI_LAYER_GZIP,
        OCI_LAYER_ZSTD,
        OCI_LAYER_NONDISTRIBUTABLE,
        OCI_LAYER_NONDISTRIBUTABLE_GZIP,
        OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
        DOCKER_LAYER,
        DOCKER_LAYER_GZIP,
        DOCKER_LAYER_ZSTD,
        DOCKER_FOREIGN_LAYER,
        DOCKER_FOREIGN_LAYER_GZIP,
    }
)
"""Tar layer media types applied here; encrypted ones (``+encrypted``) are not."""


class WritePath:
    """The way a layer reached the snapshot's files, as logs and tests report it."""

    OVERLAY_UPPER = "overlay-upper"
    BIND_SOURCE = "bind-source"
    MOUNTED = "mounted"


@dataclass(frozen=True)
class AppliedLayer:
    """The result of one Apply: the uncompressed tar's descriptor and the work done."""

    descriptor: Descriptor
    stats: ApplyStats
    write_path: str


class _LayerTar(Protocol):
    def read(self, size: int = -1) -> bytes: ...

    def readinto(self, buffer: bytearray | memoryview) -> int: ...

    def close(self) -> None: ...

    def finish(self) -> tuple[Digest, int]: ...


class Applier:
    """Apply layers to containerd's mounts; safe to call from several threads.

    ``store`` contains the blocks of file-granular layers, and ``content`` is
    containerd's content directory. Temporary mounts go under ``mount_dir``.
    ``max_layer_bytes`` bounds the file data one layer may write (None: no
    bound).
    """

    def __init__(
        self,
        store: BlockStore,
        content: ContentDirectory,
        *,
        mount_dir: Path,
        max_layer_bytes: int | None,
    ) -> None:
        self._store = store
        self._content = content
        self._mount_dir = mount_dir
        self._max_layer_bytes = max_layer_bytes

    def apply(
        self,
        layer: Descriptor,
        mounts: Sequence[Mount],
        *,
        sync_fs: bool = False,
        active: Callable[[], bool] = lambda: True,
    ) -> AppliedLayer:
        """Apply ``layer`` to the tree that ``mounts`` describe.

        ``active`` is polled on every read of the layer's tar; once it returns
        false the apply stops with CallCancelledError.

        Raises UnimplementedError for a media type handled elsewhere,
        NotFoundError for a missing blob or block, DataLossError when the tar
        does not hash to the layer's diff_id, and the apply engine's errors.
        A failed apply leaves the snapshot half-written; containerd removes it.
        """
        tar = self._open_tar(layer)
        source = str(layer.digest)
        stream = CancellableStream(tar, active, what=f"apply layer {source}")
        with closing(tar), self._root(mounts) as (root, options, write_path):
            stats = apply_layer(stream, root, source=source, options=options)
            diff_id, size = tar.finish()
            if sync_fs:
                _sync_fs(root)
        applied = Descriptor(media_type=OCI_LAYER, digest=diff_id, size=size)
        return AppliedLayer(applied, stats, write_path)

    def _open_tar(self, layer: Descriptor) -> _LayerTar:
        if layer.media_type == IPCS_FS_LAYER:
            return self._rebuild(layer)
        if layer.media_type in STANDARD_LAYER_TYPES:
            blob = self._content.open(layer.digest)
            tar = open_uncompressed(blob, layer.media_type, source=str(layer.digest))
            return _StandardLayerTar(HashingReader(tar, source=str(layer.digest)))
        raise UnimplementedError(
            f"failed to apply layer {layer.digest}: media type {layer.media_type}"
            " is not handled by ipcs-fs"
        )

    def _rebuild(self, layer: Descriptor) -> _RebuiltLayerTar:
        cid = Cid.from_digest(layer.digest, DAG_PB)
        if not self._store.has(cid):
            block = self._content.read_verified(layer.digest, layer.size)
            self._store.put(cid, block)
        root = read_layer_root(self._store.get, cid)
        return _RebuiltLayerTar(RebuiltTar(self._store.get, root), root.diff_id)

    @contextmanager
    def _root(
        self, mounts: Sequence[Mount]
    ) -> Iterator[tuple[Path, ApplyOptions, str]]:
        limit = ApplyOptions(max_bytes=self._max_layer_bytes)
        overlay = overlay_layout(mounts)
        if overlay is not None:
            options = ApplyOptions(
                overlay_upper=True,
                lowers=overlay.lowers,
                max_bytes=self._max_layer_bytes,
            )
            yield overlay.upper, options, WritePath.OVERLAY_UPPER
            return
        source = bind_source(mounts)
        if source is not None:
            yield source, limit, WritePath.BIND_SOURCE
            return
        with temporary_mount(mounts, self._mount_dir) as root:
            yield root, limit, WritePath.MOUNTED


class _RebuiltLayerTar:
    """A file-granular layer's tar; :meth:`finish` checks the diff_id it records."""

    def __init__(self, tar: RebuiltTar, diff_id: Digest) -> None:
        self._tar = tar
        self._diff_id = diff_id
        self.read = tar.read
        self.readinto = tar.readinto
        self.close = tar.close

    def finish(self) -> tuple[Digest, int]:
        self._tar.verify()
        return self._diff_id, self._tar.size


class _StandardLayerTar:
    """A standard layer's decompressed tar; :meth:`finish` returns its hash."""

    def __init__(self, tar: HashingReader) -> None:
        self._tar = tar
        self.read = tar.read
        self.readinto = tar.readinto
        self.close = tar.close

    def finish(self) -> tuple[Digest, int]:
        # Bytes after the end-of-archive blocks count toward the diff_id too,
        # as they do in containerd's applier.
        while self._tar.read(1 << 20):
            pass
        return self._tar.diff_id, self._tar.size


_libc = ctypes.CDLL(None, use_errno=True)


def _sync_fs(root: Path) -> None:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _libc.syncfs(fd) != 0:
            error = ctypes.get_errno()
            raise FailedPreconditionError(
                f"failed to sync the file system of {root}: {os.strerror(error)}"
            )
    finally:
        os.close(fd)
