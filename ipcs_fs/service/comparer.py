"""The Comparer: record the changes between two snapshots as a file-granular layer.

:meth:`Comparer.compare` finds the changes from the lower mounts to the upper
mounts (:mod:`ipcs_fs.service.changes`) and streams them as a tar
(:mod:`ipcs_fs.service.difftar`) into the layer converter. The blocks go to
the block store, with the root pinned, and the root block is written as a
blob into containerd's content store. It returns the layer's descriptor.

Only the file-granular media type is produced. For standard tar media types
it raises UnimplementedError, so containerd's walking differ writes them: a
tar written here would be the same bytes with nothing gained.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import UnimplementedError
from ..layer.convert import ConvertedLayer, convert_layer
from ..oci.descriptor import Descriptor
from ..oci.mediatypes import IPCS_FS_LAYER, OCI_LAYER
from ..operations.convert import (
    ANNOTATION_DIFF_ID,
    ANNOTATION_ORIGINAL_DIGEST,
    ANNOTATION_ORIGINAL_MEDIA_TYPE,
    ANNOTATION_ORIGINAL_SIZE,
    ANNOTATION_ROOT_CID,
)
from ..store import BlockStore
from .changes import (
    Change,
    OverlayMetadataError,
    overlay_upper_changes,
    walk_changes,
)
from .content import ContentWriter
from .difftar import ChangeTar
from .mounts import Mount, bind_source, overlay_layout, temporary_mount
from .streams import CancellableStream

__all__ = ["UNCOMPRESSED_LABEL", "ComparedLayer", "Comparer", "layer_annotations"]

log = logging.getLogger(__name__)

UNCOMPRESSED_LABEL = "containerd.io/uncompressed"
"""The content label through which containerd finds a layer blob's diff_id."""


@dataclass(frozen=True)
class ComparedLayer:
    """The result of one Diff: the new layer's descriptor and how it was found."""

    descriptor: Descriptor
    layer: ConvertedLayer
    changes: int
    overlay_upper: bool


def layer_annotations(layer: ConvertedLayer) -> dict[str, str]:
    """Return the descriptor annotations of a layer made from an uncompressed tar.

    The keys are those ``ipcs-fs convert`` writes; the original layer is the
    uncompressed tar itself (its digest is the diff_id).
    """
    return {
        ANNOTATION_ROOT_CID: str(layer.root_cid),
        ANNOTATION_DIFF_ID: str(layer.diff_id),
        ANNOTATION_ORIGINAL_MEDIA_TYPE: OCI_LAYER,
        ANNOTATION_ORIGINAL_DIGEST: str(layer.diff_id),
        ANNOTATION_ORIGINAL_SIZE: str(layer.tar_size),
    }


class Comparer:
    """Compute file-granular layers from two trees; safe to call from several threads.

    ``store`` receives the layer's blocks, ``writer`` the root blob, and
    ``mount_dir`` the temporary mounts.
    """

    def __init__(
        self, store: BlockStore, writer: ContentWriter, *, mount_dir: Path
    ) -> None:
        self._store = store
        self._writer = writer
        self._mount_dir = mount_dir

    def compare(
        self,
        lower: Sequence[Mount],
        upper: Sequence[Mount],
        *,
        media_type: str,
        namespace: str,
        ref: str = "",
        labels: Mapping[str, str] | None = None,
        source_date_epoch_ns: int | None = None,
        active: Callable[[], bool] = lambda: True,
    ) -> ComparedLayer:
        """Record the changes from ``lower`` to ``upper`` as a layer of ``media_type``.

        ``ref``, ``labels`` and ``namespace`` apply to the blob written into
        containerd's content store. Raises UnimplementedError for any media
        type but the file-granular one, UnavailableError when containerd
        cannot be reached, and FailedPreconditionError when a mount fails or a
        file changes while it is read. ``active`` is polled on every read of
        the tar; once it returns false the diff stops with CallCancelledError.
        """
        if media_type != IPCS_FS_LAYER:
            raise UnimplementedError(
                f"failed to compute diff: media type {media_type or '(none)'} is"
                f" not handled by ipcs-fs; only {IPCS_FS_LAYER} is"
            )
        with self._changes(lower, upper) as (changes, from_upper):
            tar = ChangeTar(changes, source_date_epoch_ns=source_date_epoch_ns)
            stream = CancellableStream(tar, active, what="compute diff")
            converted = self._convert(stream, ref)
        blob_labels = {**(labels or {}), UNCOMPRESSED_LABEL: str(converted.diff_id)}
        self._writer.write_blob(
            converted.root_block,
            converted.digest,
            namespace=namespace,
            labels=blob_labels,
            ref=ref,
        )
        descriptor = Descriptor(
            media_type=IPCS_FS_LAYER,
            digest=converted.digest,
            size=len(converted.root_block),
            annotations=layer_annotations(converted),
        )
        return ComparedLayer(descriptor, converted, len(changes), from_upper)

    def _convert(self, tar: CancellableStream, ref: str) -> ConvertedLayer:
        with self._store.batch() as batch:
            converted = convert_layer(
                tar, batch.put, source=f"diff {ref or '(no ref)'}"
            )
        self._store.pin(converted.root_cid)
        return converted

    @contextmanager
    def _changes(
        self, lower: Sequence[Mount], upper: Sequence[Mount]
    ) -> Iterator[tuple[list[Change], bool]]:
        changes = self._upper_changes(upper)
        if changes is not None:
            yield changes, True
            return
        with ExitStack() as stack:
            lower_root = stack.enter_context(self._read_only(lower))
            upper_root = stack.enter_context(self._read_only(upper))
            yield list(walk_changes(bytes(lower_root), bytes(upper_root))), False

    def _upper_changes(self, upper: Sequence[Mount]) -> list[Change] | None:
        overlay = overlay_layout(upper)
        if overlay is None:
            return None
        try:
            return list(overlay_upper_changes(bytes(overlay.upper)))
        except OverlayMetadataError as error:
            log.info("%s; comparing the mounted trees instead", error)
            return None

    @contextmanager
    def _read_only(self, mounts: Sequence[Mount]) -> Iterator[Path]:
        source = bind_source(mounts, read_only=True)
        if source is not None:
            yield source
            return
        with temporary_mount(mounts, self._mount_dir, read_only=True) as root:
            yield root
