"""The image model and the source and sink interfaces that the converter uses.

An *image* is the tree under one *root* descriptor (an entry of a layout's
``index.json``)::

    root ──> index ──> manifest (linux/amd64) ──> config, layers
                  ├──> manifest (linux/arm64) ──> config, layers
                  └──> index (nested) ──> ...

A single-platform image has a manifest as its root. :class:`Image` contains every
index and every manifest of the tree, each manifest as a :class:`ManifestRef`
with its parsed config.

An :class:`ImageSource` reads an image and its blobs, verified. An
:class:`ImageSink` stores blobs and then writes the image with some manifests
replaced::

    with open_source(src) as source, open_sink(dst) as sink:
        replacements = {}
        for ref in source.manifests():
            layers = [convert(source, sink, layer) for layer in ref.manifest.layers]
            replacements[ref.descriptor.digest] = replace(ref.manifest, layers=layers)
        sink.write_image(source.image(), source, replacements)

``write_image`` copies from the source every blob that the new manifests still
reference: the unchanged config, layers left as they were, and manifests of
other platforms. It rewrites each index whose entries changed, keeping every
platform, annotation and unknown field, and tags the new root with the sink's
tag. The sink publishes the image only when its ``with`` block ends without an
error.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO, Self

from ..errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    ResourceExhaustedError,
    UnimplementedError,
)
from ..ids import Digest
from .blob import MAX_DOCUMENT_SIZE, READ_SIZE
from .descriptor import (
    ANNOTATION_CONTAINERD_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    parse_json_object,
)
from .mediatypes import is_config, is_index, is_manifest
from .reference import ImageReference

__all__ = [
    "MAX_INDEX_DEPTH",
    "Image",
    "ImageSink",
    "ImageSource",
    "ManifestRef",
    "load_image",
]

log = logging.getLogger(__name__)

MAX_INDEX_DEPTH = 8
"""Deepest nesting of indexes accepted under an image root."""


@dataclass(frozen=True)
class ManifestRef:
    """One manifest of an image, with the descriptor its parent lists it under.

    ``config`` is None when the config is not an image configuration (an
    artifact's empty config, for example). ``parent`` is the digest of the index
    that lists the manifest, None when the manifest is the image root.
    """

    descriptor: Descriptor
    manifest: Manifest
    config: ImageConfig | None
    parent: Digest | None

    @property
    def platform(self) -> Platform | None:
        """The platform of the index entry, else the one the config states."""
        if self.descriptor.platform is not None:
            return self.descriptor.platform
        return self.config.platform if self.config else None


@dataclass(frozen=True)
class Image:
    """The tree of indexes and manifests under one root descriptor.

    ``others`` are index entries that are neither manifests nor indexes; they
    are carried over unchanged.
    """

    root: Descriptor
    indexes: Mapping[Digest, Index]
    manifests: tuple[ManifestRef, ...]
    others: tuple[Descriptor, ...] = ()


ReadBlob = Callable[[Descriptor], bytes]


def load_image(root: Descriptor, read_blob: ReadBlob) -> Image:
    """Read the tree under ``root`` with ``read_blob`` (which must verify blobs).

    Raises UnimplementedError when the root is neither a manifest nor an index,
    InvalidArgumentError for malformed or ambiguous documents, and
    ResourceExhaustedError past :data:`MAX_INDEX_DEPTH` nested indexes.
    """
    if not (is_index(root.media_type) or is_manifest(root.media_type)):
        raise UnimplementedError(
            f"failed to load image {root.digest}: media type {root.media_type!r}"
            " is neither a manifest nor an index"
        )
    loader = _Loader(read_blob)
    loader.visit(root, None, 0)
    return Image(root, loader.indexes, tuple(loader.manifests), tuple(loader.others))


class _Loader:
    def __init__(self, read_blob: ReadBlob) -> None:
        self._read_blob = read_blob
        self.indexes: dict[Digest, Index] = {}
        self.manifests: list[ManifestRef] = []
        self.others: list[Descriptor] = []

    def visit(self, descriptor: Descriptor, parent: Digest | None, depth: int) -> None:
        if is_index(descriptor.media_type):
            self._visit_index(descriptor, depth)
        elif is_manifest(descriptor.media_type):
            self._visit_manifest(descriptor, parent)
        else:
            self.others.append(descriptor)

    def _visit_index(self, descriptor: Descriptor, depth: int) -> None:
        if depth > MAX_INDEX_DEPTH:
            raise ResourceExhaustedError(
                f"failed to load index {descriptor.digest}: nested deeper than"
                f" {MAX_INDEX_DEPTH} indexes"
            )
        if descriptor.digest in self.indexes:
            return
        data = self._read_blob(descriptor)
        _check_document_kind(data, descriptor, "index")
        index = Index.from_bytes(data)
        self.indexes[descriptor.digest] = index
        for entry in index.manifests:
            self.visit(entry, descriptor.digest, depth + 1)

    def _visit_manifest(self, descriptor: Descriptor, parent: Digest | None) -> None:
        data = self._read_blob(descriptor)
        _check_document_kind(data, descriptor, "manifest")
        manifest = Manifest.from_bytes(data)
        config = None
        if is_config(manifest.config.media_type):
            config = ImageConfig.from_bytes(self._read_blob(manifest.config))
        self.manifests.append(ManifestRef(descriptor, manifest, config, parent))


# Fields of the other kinds of document (schema 1 manifests included). A
# document that has them could be read as another kind by another tool, so it
# is rejected, as containers/image's ValidateUnambiguousManifestFormat does. Go
# decodes JSON keys case-insensitively, hence the lower().
_FOREIGN_FIELDS = {
    "index": frozenset({"config", "layers", "fslayers", "history"}),
    "manifest": frozenset({"manifests", "fslayers", "history"}),
}


def _check_document_kind(data: bytes, descriptor: Descriptor, kind: str) -> None:
    document = parse_json_object(data, f"{kind} {descriptor.digest}")
    foreign = sorted(
        key
        for key, value in document.items()
        if key.lower() in _FOREIGN_FIELDS[kind] and value is not None
    )
    declared = document.get("mediaType")
    if foreign or (declared is not None and declared != descriptor.media_type):
        raise InvalidArgumentError(
            f"failed to load {kind} {descriptor.digest}: the document does not match"
            f" its media type {descriptor.media_type!r} (mediaType {declared!r},"
            f" fields {foreign})"
        )


class ImageSource(abc.ABC):
    """An image to read: its tree, and its blobs verified against their digests.

    Use as a context manager, or call :meth:`close`.
    """

    reference: ImageReference

    def __init__(self, reference: ImageReference) -> None:
        self.reference = reference
        self._image: Image | None = None

    @abc.abstractmethod
    def root(self) -> Descriptor:
        """Return the descriptor of the image that the reference names."""

    @abc.abstractmethod
    def has_blob(self, digest: Digest) -> bool:
        """Tell whether the source has the blob ``digest``."""

    @abc.abstractmethod
    def open_blob(self, descriptor: Descriptor) -> BinaryIO:
        """Open the blob of ``descriptor`` as a stream that the caller closes.

        Reading to the end verifies the size and digest: a mismatch raises
        DataLossError naming the digest. NotFoundError if the blob is missing.
        """

    def read_blob(
        self, descriptor: Descriptor, *, max_size: int | None = MAX_DOCUMENT_SIZE
    ) -> bytes:
        """Return the verified bytes of a blob of at most ``max_size`` bytes.

        ResourceExhaustedError when the descriptor declares more than
        ``max_size``; None lifts the limit.
        """
        if max_size is not None and descriptor.size > max_size:
            raise ResourceExhaustedError(
                f"failed to read blob {descriptor.digest}: {descriptor.size} bytes"
                f" exceed the limit of {max_size}"
            )
        with self.open_blob(descriptor) as stream:
            return stream.read()

    def image(self) -> Image:
        """Return the image tree, read once and then cached."""
        if self._image is None:
            self._image = load_image(self.root(), self.read_blob)
        return self._image

    def manifests(self) -> tuple[ManifestRef, ...]:
        """Return every manifest of the image, every platform, in index order."""
        return self.image().manifests

    def close(self) -> None:
        """Release open files and connections; the default has none."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ImageSink(abc.ABC):
    """A place to write an image: blobs first, then :meth:`write_image`.

    Use as a context manager: a block that ends normally commits the image, one
    that raises aborts it. Blobs may be visible before the commit.
    """

    reference: ImageReference

    def __init__(self, reference: ImageReference, tag: str | None) -> None:
        self.reference = reference
        self.tag = tag
        self._root: Descriptor | None = None

    @abc.abstractmethod
    def has_blob(self, digest: Digest) -> bool:
        """Tell whether the sink has the blob ``digest``."""

    @abc.abstractmethod
    def _store_blob(self, chunks: Iterable[bytes | memoryview]) -> tuple[Digest, int]:
        """Store the concatenated ``chunks`` as a blob; return its digest and size.

        An exception from ``chunks`` leaves nothing stored.
        """

    @abc.abstractmethod
    def _store_root(self, root: Descriptor) -> None:
        """Record ``root`` (annotated with the tag, if any) as the image."""

    def put_blob(
        self,
        data: bytes,
        media_type: str,
        *,
        annotations: Mapping[str, str] | None = None,
    ) -> Descriptor:
        """Store ``data`` and return its descriptor."""
        digest = Digest.of(data)
        if not self.has_blob(digest):
            digest, _ = self._store_blob([data])
        return Descriptor(media_type, digest, len(data), dict(annotations or {}))

    def put_blob_stream(
        self,
        chunks: Iterable[bytes | memoryview],
        media_type: str,
        *,
        annotations: Mapping[str, str] | None = None,
    ) -> Descriptor:
        """Store the concatenation of ``chunks``, hashing while writing.

        Returns the descriptor with the digest and size of what was written.
        """
        digest, size = self._store_blob(chunks)
        return Descriptor(media_type, digest, size, dict(annotations or {}))

    def copy_blob(self, source: ImageSource, descriptor: Descriptor) -> None:
        """Copy a blob from ``source`` unless the sink has it already.

        The blob is verified while it is copied; on DataLossError nothing is kept.
        """
        if self.has_blob(descriptor.digest):
            return
        with source.open_blob(descriptor) as stream:
            self._store_blob(iter(lambda: stream.read(READ_SIZE), b""))

    def write_image(
        self,
        image: Image,
        source: ImageSource,
        replacements: Mapping[Digest, Manifest] | None = None,
    ) -> Descriptor:
        """Write ``image`` with manifests replaced, and tag its new root.

        ``replacements`` maps the digest of an original manifest to the manifest
        that takes its place; the index entry keeps its platform and annotations.
        Blobs that the sink lacks are copied from ``source``. A blob found in
        neither raises FailedPreconditionError, except a foreign layer (one with
        ``urls``), which is referenced without its blob.

        Returns the new root descriptor.
        """
        replacements = dict(replacements or {})
        known = {ref.descriptor.digest for ref in image.manifests}
        unknown = [str(digest) for digest in replacements if digest not in known]
        if unknown:
            raise InvalidArgumentError(
                f"failed to write image: replacements for manifests not in it: {unknown}"
            )

        root = _ImageWriter(self, source, image, replacements).write(image.root)
        root = _tagged(root, self.tag)
        self._store_root(root)
        self._root = root
        return root

    def commit(self) -> None:
        """Publish the written image; FailedPreconditionError if none was written."""
        if self._root is None:
            raise FailedPreconditionError(
                f"failed to commit {self.reference}: no image was written"
            )

    def abort(self) -> None:
        """Drop what can be dropped after a failure; the default drops nothing."""

    def close(self) -> None:
        """Release open files and temporary data; the default has none."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self.commit()
            else:
                self.abort()
        finally:
            self.close()


def _tagged(root: Descriptor, tag: str | None) -> Descriptor:
    """Return ``root`` with the source's names replaced by the sink's tag."""
    annotations = {
        key: value
        for key, value in root.annotations.items()
        if key not in (ANNOTATION_REF_NAME, ANNOTATION_CONTAINERD_IMAGE_NAME)
    }
    if tag:
        annotations[ANNOTATION_REF_NAME] = tag
    return dataclasses.replace(root, annotations=annotations)


class _ImageWriter:
    """Writes an image tree bottom-up, mapping old descriptors to new ones."""

    def __init__(
        self,
        sink: ImageSink,
        source: ImageSource,
        image: Image,
        replacements: Mapping[Digest, Manifest],
    ) -> None:
        self._sink = sink
        self._source = source
        self._image = image
        self._replacements = replacements
        self._manifests = {
            ref.descriptor.digest: ref.manifest for ref in image.manifests
        }
        self._written: dict[Digest, tuple[Digest, int, str]] = {}

    def write(self, descriptor: Descriptor) -> Descriptor:
        """Write the subtree under ``descriptor``; return its new descriptor."""
        old = descriptor.digest
        if old not in self._written:
            if old in self._image.indexes:
                self._written[old] = self._write_index(old, descriptor)
            elif old in self._manifests:
                self._written[old] = self._write_manifest(old, descriptor)
            else:
                self._ensure_blob(descriptor)
                self._written[old] = (old, descriptor.size, descriptor.media_type)
        digest, size, media_type = self._written[old]
        return dataclasses.replace(
            descriptor, digest=digest, size=size, media_type=media_type
        )

    def _write_index(
        self, old: Digest, descriptor: Descriptor
    ) -> tuple[Digest, int, str]:
        index = self._image.indexes[old]
        entries = tuple(self.write(entry) for entry in index.manifests)
        # Only a changed index is copied: a copy made by replace() drops the
        # parsed bytes, and an unchanged index must keep its digest.
        if entries != index.manifests:
            index = dataclasses.replace(index, manifests=entries)
        return self._put(index.to_bytes(), index.media_type or descriptor.media_type)

    def _write_manifest(
        self, old: Digest, descriptor: Descriptor
    ) -> tuple[Digest, int, str]:
        manifest = self._replacements.get(old, self._manifests[old])
        for blob in (manifest.config, *manifest.layers):
            self._ensure_blob(blob)
        media_type = manifest.media_type or descriptor.media_type
        return self._put(manifest.to_bytes(), media_type)

    def _put(self, data: bytes, media_type: str) -> tuple[Digest, int, str]:
        stored = self._sink.put_blob(data, media_type)
        return stored.digest, stored.size, media_type

    def _ensure_blob(self, descriptor: Descriptor) -> None:
        if self._sink.has_blob(descriptor.digest):
            return
        if self._source.has_blob(descriptor.digest):
            self._sink.copy_blob(self._source, descriptor)
        elif descriptor.urls:
            log.debug(
                "foreign blob %s not copied, referenced by urls %s",
                descriptor.digest,
                list(descriptor.urls),
            )
        else:
            raise FailedPreconditionError(
                f"failed to write image: blob {descriptor.digest}"
                f" ({descriptor.media_type}) is in neither the destination nor"
                f" {self._source.reference}"
            )
