"""Open any layer of an image as its verified, uncompressed tar stream.

Both layer kinds come out the same way: a standard layer is decompressed, a
file-granular layer is rebuilt from the block store. Either stream raises
DataLossError when it reaches its end unless the bytes hash to the diff_id the
image config lists, so a reader that reads to the end (the tar reader does) never
accepts a layer that is not the one the image names.
"""

from __future__ import annotations

from ..errors import InvalidArgumentError, NotFoundError
from ..ids import DAG_PB, Cid, Digest
from ..layer.hashing import HashingReader
from ..layer.rebuild import RebuiltTar, VerifiedLayers, read_layer_root
from ..oci.compression import open_uncompressed
from ..oci.descriptor import Descriptor
from ..oci.image import ImageSource, ManifestRef
from ..oci.mediatypes import is_file_granular
from ..store import BlockStore

__all__ = [
    "MISSING_BLOCKS_HINT",
    "diff_ids_of",
    "load_root_block",
    "open_layer_tar",
    "root_cid_of",
]

MISSING_BLOCKS_HINT = (
    ". The block store lacks blocks of this layer: convert the image into this"
    " store, or load its blocks with 'ipcs-fs car import'"
)


def root_cid_of(layer: Descriptor) -> Cid:
    """Return the root CID that a file-granular layer's digest names."""
    return Cid.from_digest(layer.digest, DAG_PB)


def load_root_block(source: ImageSource, store: BlockStore, layer: Descriptor) -> Cid:
    """Make sure the store holds the layer's root block; return its CID.

    The root block is the layer's blob, so an image carries it even when the
    store does not. It is copied in after its digest has been checked.
    """
    cid = root_cid_of(layer)
    if store.has(cid):
        return cid
    if not source.has_blob(layer.digest):
        raise NotFoundError(
            f"failed to find layer root {cid}: neither the block store nor the"
            f" image holds blob {layer.digest}"
        )
    store.put(cid, source.read_blob(layer))
    return cid


def open_layer_tar(
    source: ImageSource,
    store: BlockStore,
    layer: Descriptor,
    diff_id: Digest,
    *,
    verified_layers: VerifiedLayers | None = None,
    recheck: bool = False,
):
    """Return the layer's uncompressed tar as a stream verified at its end.

    ``verified_layers`` and ``recheck`` go to :class:`RebuiltTar` for a
    file-granular layer.
    """
    if is_file_granular(layer.media_type):
        cid = load_root_block(source, store, layer)
        root = read_layer_root(store.get, cid)
        return RebuiltTar(
            store.get,
            root,
            expected_diff_id=diff_id,
            verified_layers=verified_layers,
            recheck=recheck,
        )
    blob = source.open_blob(layer)
    tar = open_uncompressed(blob, layer.media_type, source=str(layer.digest))
    return HashingReader(tar, expected=diff_id, source=str(layer.digest))


def diff_ids_of(ref: ManifestRef) -> tuple[Digest, ...]:
    """Return the config's diff_ids, one per layer of the manifest."""
    layers = ref.manifest.layers
    count = len(ref.config.diff_ids) if ref.config else 0
    if ref.config is None or count != len(layers):
        raise InvalidArgumentError(
            f"invalid image: manifest {ref.descriptor.digest} lists {len(layers)}"
            f" layers but its config lists {count} diff_ids"
        )
    return ref.config.diff_ids
