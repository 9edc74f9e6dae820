"""OCI image input and output: references, layouts, archives and compression.

Terms used across this package:

- *reference*: where an image lives, in skopeo's syntax (``oci:DIR[:TAG]``,
  ``oci-archive:FILE[:TAG]``, ``containerd:[NAMESPACE/]REF``).
- *blob*: stored content, named by its *digest* (sha256 of its bytes).
- *descriptor*: media type, digest and size of a blob, with annotations.
- *manifest*, *index*, *config*: the JSON documents of an image; an *image*
  is the tree of indexes and manifests under one root descriptor.
- *diff_id*: the digest of a layer's uncompressed tar.

The converter opens a source and a sink, replaces layer descriptors in each
manifest and writes the image back (see :mod:`ipcs_fs.oci.image`).
"""

from __future__ import annotations

from .compression import (
    UncompressedReader,
    gzip_compress_chunks,
    gzip_compress_stream,
    open_uncompressed,
)
from .descriptor import Descriptor, ImageConfig, Index, Manifest, Platform
from .image import Image, ImageSink, ImageSource, ManifestRef
from .mediatypes import (
    IPCS_FS_LAYER,
    Compression,
    compression_of,
    is_file_granular,
    is_layer,
)
from .reference import (
    ArchiveReference,
    ContainerdReference,
    ImageReference,
    LayoutReference,
    parse_reference,
)
from .transport import open_sink, open_source

__all__ = [
    "IPCS_FS_LAYER",
    "ArchiveReference",
    "Compression",
    "ContainerdReference",
    "Descriptor",
    "Image",
    "ImageConfig",
    "ImageReference",
    "ImageSink",
    "ImageSource",
    "Index",
    "LayoutReference",
    "Manifest",
    "ManifestRef",
    "Platform",
    "UncompressedReader",
    "compression_of",
    "gzip_compress_chunks",
    "gzip_compress_stream",
    "is_file_granular",
    "is_layer",
    "open_sink",
    "open_source",
    "open_uncompressed",
    "parse_reference",
]
