"""Find the layer roots that a command line target names.

A target is a layer root CID, or an image reference (``oci:DIR[:TAG]``,
``oci-archive:FILE[:TAG]``) whose file-granular layers, over every platform,
give one root each.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidArgumentError
from ..ids import Cid
from ..oci.descriptor import Descriptor
from ..oci.image import ImageSource
from ..oci.mediatypes import is_file_granular, is_layer
from ..oci.transport import open_source
from .layers import root_cid_of

__all__ = ["LayerRootRef", "find_layer_roots"]


@dataclass(frozen=True, slots=True)
class LayerRootRef:
    """A layer root CID, with its block when an image carries it."""

    cid: Cid
    block: bytes | None = None
    """The root block as the image's layer blob holds it; None for a CID."""


def find_layer_roots(target: str) -> list[LayerRootRef]:
    """Return the layer roots of ``target``, each once, in manifest order.

    Raises InvalidArgumentError for a target that is neither a CID nor an
    image reference, and for an image with a standard tar layer, which has no
    root (convert the image with ``ipcs-fs convert --file-granular`` first).
    """
    if ":" not in target:
        return [LayerRootRef(_parse_cid(target))]
    roots: dict[Cid, LayerRootRef] = {}
    with open_source(target) as source:
        for ref in source.manifests():
            for layer in ref.manifest.layers:
                if not is_layer(layer.media_type):
                    continue
                if not is_file_granular(layer.media_type):
                    raise InvalidArgumentError(
                        f"layer {layer.digest} of {target} is a standard layer"
                        f" ({layer.media_type}); convert the image with"
                        " `ipcs-fs convert --file-granular` first"
                    )
                cid = root_cid_of(layer)
                if cid not in roots:
                    roots[cid] = LayerRootRef(cid, _root_block(source, layer))
    return list(roots.values())


def _root_block(source: ImageSource, layer: Descriptor) -> bytes | None:
    # read_blob checks the digest, and the root CID carries that digest.
    if not source.has_blob(layer.digest):
        return None
    return source.read_blob(layer)


def _parse_cid(target: str) -> Cid:
    try:
        return Cid.parse(target)
    except InvalidArgumentError:
        raise InvalidArgumentError(
            f"invalid target {target!r}: expected a layer root CID or an image"
            " reference (oci:DIR[:TAG], oci-archive:FILE[:TAG])"
        ) from None
