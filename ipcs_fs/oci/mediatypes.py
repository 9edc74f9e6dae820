"""Media types of OCI and Docker images, and the rules that classify them.

A media type names what a blob is. Three questions matter to ipcs-fs:

- Is a manifest entry a layer? (:func:`is_layer`)
- Is it a file-granular layer of ours? (:func:`is_file_granular`)
- How is a tar layer compressed? (:func:`compression_of`)

These functions follow containerd's ``images/mediatypes.go`` (read at release
1.7), because containerd is the consumer that has to agree with them. A media type is
split at its first ``+`` into a base and suffixes; ``+gzip+encrypted`` has the
base ``...layer.v1.tar`` and the suffixes ``encrypted`` and ``gzip``.
"""

from __future__ import annotations

import enum

from ..errors import UnimplementedError

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_FOREIGN_LAYER",
    "DOCKER_FOREIGN_LAYER_GZIP",
    "DOCKER_LAYER",
    "DOCKER_LAYER_GZIP",
    "DOCKER_LAYER_ZSTD",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "IPCS_FS_LAYER",
    "OCI_CONFIG",
    "OCI_DESCRIPTOR",
    "OCI_EMPTY",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_NONDISTRIBUTABLE",
    "OCI_LAYER_NONDISTRIBUTABLE_GZIP",
    "OCI_LAYER_NONDISTRIBUTABLE_ZSTD",
    "OCI_LAYER_PREFIX",
    "OCI_LAYER_ZSTD",
    "OCI_LAYOUT_HEADER",
    "OCI_MANIFEST",
    "Compression",
    "compression_of",
    "is_config",
    "is_file_granular",
    "is_index",
    "is_layer",
    "is_manifest",
    "is_nondistributable",
    "layer_media_type",
]

OCI_LAYOUT_HEADER = "application/vnd.oci.layout.header.v1+json"
OCI_DESCRIPTOR = "application/vnd.oci.descriptor.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = OCI_LAYER + "+gzip"
OCI_LAYER_ZSTD = OCI_LAYER + "+zstd"

# Deprecated by image-spec 1.1, but still found in Windows images.
OCI_LAYER_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDISTRIBUTABLE_GZIP = OCI_LAYER_NONDISTRIBUTABLE + "+gzip"
OCI_LAYER_NONDISTRIBUTABLE_ZSTD = OCI_LAYER_NONDISTRIBUTABLE + "+zstd"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
# Written by BuildKit. containerd 1.7's IsLayerType does not list it, but ipcs-fs
# counts it as a layer so that such layers get converted too.
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar"
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

IPCS_FS_LAYER = "application/vnd.oci.image.layer.ipcs-fs.v1+dag-pb"
"""A file-granular layer: the blob is the root dag-pb block of the layer DAG."""

OCI_LAYER_PREFIX = "application/vnd.oci.image.layer."
"""containerd counts every media type with this prefix as a layer."""


class Compression(enum.Enum):
    """The compression of a tar layer blob."""

    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


_OCI_TAR_BASES = frozenset({OCI_LAYER, OCI_LAYER_NONDISTRIBUTABLE})
_DOCKER_LAYER_BASES = {
    DOCKER_LAYER: None,
    DOCKER_FOREIGN_LAYER: None,
    DOCKER_LAYER_GZIP: Compression.GZIP,
    DOCKER_FOREIGN_LAYER_GZIP: Compression.GZIP,
    DOCKER_LAYER_ZSTD: Compression.ZSTD,
}
_NONDISTRIBUTABLE_PREFIXES = (
    "application/vnd.oci.image.layer.nondistributable.",
    "application/vnd.docker.image.rootfs.foreign.",
)
_SUFFIX_COMPRESSION = {"gzip": Compression.GZIP, "zstd": Compression.ZSTD}


def _split(media_type: str) -> tuple[str, list[str]]:
    """Split ``media_type`` into its base and its sorted ``+`` suffixes."""
    base, _, rest = media_type.partition("+")
    return base, sorted(rest.split("+")) if rest else []


def is_layer(media_type: str) -> bool:
    """Tell whether containerd treats a manifest entry of ``media_type`` as a layer.

    True for every type under ``application/vnd.oci.image.layer.`` (ours
    included) and for Docker's layer types with any ``+`` suffix.
    """
    if media_type.startswith(OCI_LAYER_PREFIX):
        return True
    return _split(media_type)[0] in _DOCKER_LAYER_BASES


def is_file_granular(media_type: str) -> bool:
    """Tell whether ``media_type`` is the ipcs-fs file-granular layer type."""
    return media_type == IPCS_FS_LAYER


def is_manifest(media_type: str) -> bool:
    """Tell whether ``media_type`` is an image manifest (OCI or Docker schema 2)."""
    return media_type in (OCI_MANIFEST, DOCKER_MANIFEST)


def is_index(media_type: str) -> bool:
    """Tell whether ``media_type`` is an image index or a Docker manifest list."""
    return media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST)


def is_config(media_type: str) -> bool:
    """Tell whether ``media_type`` is an image configuration (OCI or Docker)."""
    return media_type in (OCI_CONFIG, DOCKER_CONFIG)


def is_nondistributable(media_type: str) -> bool:
    """Tell whether a layer may not be pushed to a registry (foreign layers)."""
    return media_type.startswith(_NONDISTRIBUTABLE_PREFIXES)


def compression_of(media_type: str) -> Compression | None:
    """Return the compression that a tar layer's media type declares.

    The rule is containerd's (``images.DiffCompression``):

    - OCI ``...layer.v1.tar`` and ``...layer.nondistributable.v1.tar``: the last
      of the sorted ``+`` suffixes decides. ``gzip`` and ``zstd`` name their
      compression, anything else (``+encrypted``, ``+foo``) or no suffix means an
      uncompressed tar.
    - Docker ``...diff.tar.gzip`` and ``...diff.tar.zstd`` are compressed; any
      ``+`` suffix on a Docker type means an uncompressed tar.
    - Docker ``...diff.tar`` and ``...foreign.diff.tar`` return None: tools wrote
      compressed blobs under these types, so the magic bytes decide.

    Raises UnimplementedError for anything that is not a tar layer, including
    :data:`IPCS_FS_LAYER`.
    """
    base, suffixes = _split(media_type)
    if base in _OCI_TAR_BASES:
        if not suffixes:
            return Compression.NONE
        return _SUFFIX_COMPRESSION.get(suffixes[-1], Compression.NONE)
    if base in _DOCKER_LAYER_BASES:
        if suffixes:
            return Compression.NONE
        return _DOCKER_LAYER_BASES[base]
    raise UnimplementedError(
        f"failed to determine compression of media type {media_type!r}: not a tar layer"
    )


def layer_media_type(compression: Compression, *, docker: bool = False) -> str:
    """Return the tar layer media type for ``compression``.

    With ``docker`` set, the Docker schema 2 type is returned, for layers of a
    Docker manifest.
    """
    if docker:
        return {
            Compression.NONE: DOCKER_LAYER,
            Compression.GZIP: DOCKER_LAYER_GZIP,
            Compression.ZSTD: DOCKER_LAYER_ZSTD,
        }[compression]
    return {
        Compression.NONE: OCI_LAYER,
        Compression.GZIP: OCI_LAYER_GZIP,
        Compression.ZSTD: OCI_LAYER_ZSTD,
    }[compression]
