"""``ipcs-fs convert``: rewrite an image's layers in the other layer kind.

``--file-granular``: each standard tar layer (plain, gzip or zstd) becomes a
file-granular layer. Its blocks go to the block store, its root block becomes
the layer blob, and the root is pinned. ``--tar``: each file-granular layer
becomes a tar+gzip layer whose uncompressed tar is the original, byte for byte.
The config blob and its diff_ids stay as they are, and every platform of a
multi-platform image is converted. A layer that several manifests share is
converted once.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

from ..errors import NotFoundError
from ..ids import Digest
from ..layer.convert import convert_layer
from ..layer.rebuild import RebuiltTar, read_layer_root
from ..oci.compression import gzip_compress_chunks, open_uncompressed
from ..oci.descriptor import Descriptor, Manifest
from ..oci.image import ImageSink, ImageSource, ManifestRef
from ..oci.mediatypes import (
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    IPCS_FS_LAYER,
    OCI_LAYER_GZIP,
    is_file_granular,
    is_layer,
)
from ..oci.transport import open_sink, open_source
from ..progress import NoProgress, Progress
from ..store import BlockStore
from .layers import (
    MISSING_BLOCKS_HINT,
    diff_ids_of,
    load_root_block,
    root_cid_of,
)

__all__ = [
    "ANNOTATION_DIFF_ID",
    "ANNOTATION_ORIGINAL_DIGEST",
    "ANNOTATION_ORIGINAL_MEDIA_TYPE",
    "ANNOTATION_ORIGINAL_SIZE",
    "ANNOTATION_ROOT_CID",
    "ConvertSummary",
    "LayerSummary",
    "convert_image",
]

log = logging.getLogger(__name__)

ANNOTATION_ROOT_CID = "org.ipcs-fs.layer.root-cid"
ANNOTATION_DIFF_ID = "org.ipcs-fs.layer.diff-id"
ANNOTATION_ORIGINAL_MEDIA_TYPE = "org.ipcs-fs.original.media-type"
ANNOTATION_ORIGINAL_DIGEST = "org.ipcs-fs.original.digest"
ANNOTATION_ORIGINAL_SIZE = "org.ipcs-fs.original.size"
_OUR_ANNOTATIONS = (
    ANNOTATION_ROOT_CID,
    ANNOTATION_DIFF_ID,
    ANNOTATION_ORIGINAL_MEDIA_TYPE,
    ANNOTATION_ORIGINAL_DIGEST,
    ANNOTATION_ORIGINAL_SIZE,
)


@dataclass(slots=True)
class LayerSummary:
    """Summary of one converted layer."""

    original: Descriptor
    converted: Descriptor
    diff_id: Digest
    tar_size: int
    entries: int = 0
    seconds: float = 0.0


@dataclass(slots=True)
class ConvertSummary:
    """Summary of a converted image, which the command line prints."""

    source: str
    destination: str
    to_tar: bool
    layers: list[LayerSummary] = field(default_factory=list)
    unchanged: int = 0
    """Layers already of the wanted kind, copied as they are."""
    blocks_added: int = 0
    bytes_added: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "destination": self.destination,
            "direction": "tar" if self.to_tar else "file-granular",
            "layers": [_layer_json(layer) for layer in self.layers],
            "unchanged_layers": self.unchanged,
            "store": {
                "blocks_added": self.blocks_added,
                "bytes_added": self.bytes_added,
            },
            "seconds": round(self.seconds, 3),
        }

    def to_text(self) -> str:
        lines = [f"converted {self.source} -> {self.destination}"]
        for layer in self.layers:
            lines.append(
                f"  {layer.original.digest} -> {layer.converted.digest}"
                f"  {layer.entries} entries, {layer.tar_size / 1e6:.1f} MB of tar,"
                f" {layer.seconds:.1f}s"
            )
            if is_file_granular(layer.converted.media_type):
                lines.append(f"    layer root {root_cid_of(layer.converted)}")
        if self.unchanged:
            kind = "tar" if self.to_tar else "file-granular"
            lines.append(
                f"  {self.unchanged} layers were {kind} already and are copied"
                " as they are"
            )
        lines.append(
            f"  block store: {self.blocks_added} blocks added,"
            f" {self.bytes_added / 1e6:.1f} MB; total {self.seconds:.1f}s"
        )
        return "\n".join(lines)


def _layer_json(layer: LayerSummary) -> dict:
    return {
        "original": layer.original.to_json(),
        "converted": layer.converted.to_json(),
        "diff_id": str(layer.diff_id),
        "tar_size": layer.tar_size,
        "entries": layer.entries,
        "seconds": round(layer.seconds, 3),
    }


def convert_image(
    source_reference: str,
    destination_reference: str,
    store: BlockStore,
    *,
    to_tar: bool,
    progress: Progress | None = None,
) -> ConvertSummary:
    """Convert every layer of the source image and write the destination image.

    The destination is written only when every layer converted; a failure
    leaves no tagged image behind. Raises the error of the first layer that
    fails, naming its digest.
    """
    started = time.monotonic()
    summary = ConvertSummary(source_reference, destination_reference, to_tar)
    before = store.stat()
    converter = _Converter(store, to_tar, progress or NoProgress(), summary)
    with (
        open_source(source_reference) as source,
        open_sink(destination_reference) as sink,
    ):
        replacements = {
            ref.descriptor.digest: converter.convert_manifest(source, sink, ref)
            for ref in source.manifests()
        }
        sink.write_image(source.image(), source, replacements)
    after = store.stat()
    summary.blocks_added = after.blocks - before.blocks
    summary.bytes_added = after.bytes - before.bytes
    summary.seconds = time.monotonic() - started
    return summary


class _Converter:
    def __init__(
        self, store: BlockStore, to_tar: bool, progress: Progress, summary
    ) -> None:
        self._store = store
        self._to_tar = to_tar
        self._progress = progress
        self._summary = summary
        self._done: dict[Digest, Descriptor] = {}

    def convert_manifest(
        self, source: ImageSource, sink: ImageSink, ref: ManifestRef
    ) -> Manifest:
        diff_ids = diff_ids_of(ref)
        docker = ref.manifest.media_type == DOCKER_MANIFEST
        layers = []
        for layer, diff_id in zip(ref.manifest.layers, diff_ids, strict=True):
            layers.append(self._convert_once(source, sink, layer, diff_id, docker))
        return dataclasses.replace(ref.manifest, layers=tuple(layers))

    def _convert_once(self, source, sink, layer, diff_id, docker) -> Descriptor:
        if layer.digest not in self._done:
            self._done[layer.digest] = self._convert(
                source, sink, layer, diff_id, docker
            )
        return self._done[layer.digest]

    def _convert(
        self,
        source: ImageSource,
        sink: ImageSink,
        layer: Descriptor,
        diff_id: Digest,
        docker: bool,
    ) -> Descriptor:
        if not is_layer(layer.media_type):
            return layer
        if is_file_granular(layer.media_type) != self._to_tar:
            self._summary.unchanged += 1
            return layer
        started = time.monotonic()
        self._progress.task(f"layer {layer.digest.hex[:12]}", layer.size)
        if self._to_tar:
            converted, layer_summary = self._to_tar_layer(
                source, sink, layer, diff_id, docker
            )
        else:
            converted, layer_summary = self._to_file_granular(
                source, sink, layer, diff_id
            )
        self._progress.done()
        layer_summary.seconds = time.monotonic() - started
        self._summary.layers.append(layer_summary)
        log.info("converted layer %s to %s", layer.digest, converted.digest)
        return converted

    def _to_file_granular(self, source, sink, layer, diff_id):
        blob = _ProgressReader(source.open_blob(layer), self._progress)
        # Decompression with the diff_id hash, and store writes, each run in a
        # thread of their own beside parsing and chunk hashing, because ISA-L,
        # zstd, hashlib and sqlite3 release the GIL.
        with (
            open_uncompressed(blob, layer.media_type, source=str(layer.digest)) as tar,
            self._store.batch(background=True) as batch,
        ):
            result = convert_layer(
                tar,
                batch.put,
                source=str(layer.digest),
                expected_diff_id=diff_id,
                read_ahead=True,
            )
        self._store.pin(result.root_cid)
        annotations = {
            **layer.annotations,
            ANNOTATION_ROOT_CID: str(result.root_cid),
            ANNOTATION_DIFF_ID: str(result.diff_id),
            ANNOTATION_ORIGINAL_MEDIA_TYPE: layer.media_type,
            ANNOTATION_ORIGINAL_DIGEST: str(layer.digest),
            ANNOTATION_ORIGINAL_SIZE: str(layer.size),
        }
        converted = sink.put_blob(
            result.root_block, IPCS_FS_LAYER, annotations=annotations
        )
        summary = LayerSummary(
            layer, converted, result.diff_id, result.tar_size, result.entry_count
        )
        return converted, summary

    def _to_tar_layer(self, source, sink, layer, diff_id, docker):
        cid = load_root_block(source, self._store, layer)
        root = read_layer_root(self._store.get, cid)
        tar = RebuiltTar(self._store.get, root, expected_diff_id=diff_id)
        chunks = _progress_chunks(tar, self._progress)
        annotations = {
            key: value
            for key, value in layer.annotations.items()
            if key not in _OUR_ANNOTATIONS
        }
        media_type = DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP
        try:
            converted = sink.put_blob_stream(
                gzip_compress_chunks(chunks), media_type, annotations=annotations
            )
        except NotFoundError as error:
            raise NotFoundError(
                f"failed to rebuild layer {layer.digest}: {error}{MISSING_BLOCKS_HINT}"
            ) from error
        summary = LayerSummary(
            layer, converted, diff_id, tar.size, root.header.entry_count
        )
        return converted, summary


def _progress_chunks(tar: RebuiltTar, progress: Progress):
    while True:
        data = tar.read(1 << 20)
        if not data:
            return
        progress.advance(len(data))
        yield data


class _ProgressReader:
    """Report the compressed bytes read, so progress matches the layer size."""

    def __init__(self, stream, progress: Progress) -> None:
        self._stream = stream
        self._progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._progress.advance(len(data))
        return data

    def readinto(self, buffer) -> int:
        count = self._stream.readinto(buffer)
        self._progress.advance(count)
        return count

    def close(self) -> None:
        self._stream.close()
