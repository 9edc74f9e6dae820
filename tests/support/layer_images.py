"""OCI image archives made of given uncompressed tar layers, for ``ctr images import``.

Each archive contains one image for this machine's platform:

- a config whose ``rootfs.diff_ids`` are the sha256 of the layers;
- the layers as blobs of media type ``application/vnd.oci.image.layer.v1.tar``;
- a manifest;
- an ``index.json`` whose only entry carries the tag as its
  ``org.opencontainers.image.ref.name``.

``ctr images import --base-name BASE`` names that image ``BASE:TAG``.

The chain ID of a layer (``chain_ids``) is the key under which containerd
stores the snapshot of the image's layers up to and including it, as the OCI
image spec defines it: the diff_id of the first layer, then
``sha256(CHAIN_ID_OF_PARENT + " " + DIFF_ID)`` for each next one.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ipcs_fs.ids import Digest
from ipcs_fs.oci.archive import write_layout_tar
from ipcs_fs.oci.descriptor import ANNOTATION_REF_NAME, Index, Manifest
from ipcs_fs.oci.layout import INDEX_FILE, LayoutSink
from ipcs_fs.oci.mediatypes import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST
from ipcs_fs.oci.reference import LayoutReference
from ipcs_fs.operations.unpack import host_platform

__all__ = ["chain_ids", "diff_ids", "write_layers_archive"]


def diff_ids(layers: Sequence[bytes]) -> list[Digest]:
    """Return the diff_id of each uncompressed layer, lowest first."""
    return [Digest.of(data) for data in layers]


def chain_ids(layer_diff_ids: Sequence[Digest]) -> list[Digest]:
    """Return the chain ID of each layer, lowest first."""
    chain: list[Digest] = []
    for diff_id in layer_diff_ids:
        if not chain:
            chain.append(diff_id)
        else:
            chain.append(Digest.of(f"{chain[-1]} {diff_id}".encode()))
    return chain


def write_layers_archive(archive: Path, layers: Sequence[bytes], *, tag: str) -> None:
    """Write an oci-archive at ``archive`` with one image of ``layers``, tagged ``tag``.

    The layers are stored as they are, uncompressed, lowest first; an existing
    file at ``archive`` is replaced.
    """
    with tempfile.TemporaryDirectory(dir=archive.parent) as work:
        layout = Path(work) / "layout"
        sink = LayoutSink(LayoutReference(layout, tag), durable=False)

        layer_descriptors = tuple(sink.put_blob(data, OCI_LAYER) for data in layers)
        config = sink.put_blob(_config(layers), OCI_CONFIG)
        manifest = Manifest(config, layer_descriptors, media_type=OCI_MANIFEST)
        root = sink.put_blob(
            manifest.to_bytes(), OCI_MANIFEST, annotations={ANNOTATION_REF_NAME: tag}
        )
        index = Index(manifests=(root,), media_type=OCI_INDEX)
        (layout / INDEX_FILE).write_bytes(index.to_bytes())

        write_layout_tar(layout, archive)


def _config(layers: Sequence[bytes]) -> bytes:
    system, architecture = host_platform().split("/")
    document = {
        "architecture": architecture,
        "os": system,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [str(d) for d in diff_ids(layers)]},
    }
    return json.dumps(document, sort_keys=True).encode()
