"""OCI image layouts: reading and writing ``oci:DIR[:TAG]``.

An *image layout* is a directory::

    oci-layout              {"imageLayoutVersion": "1.0.0"}
    index.json              an index; each entry is an image, tagged by its
                            org.opencontainers.image.ref.name annotation
    blobs/sha256/HEX        every blob, named by its digest

:class:`LayoutSource` reads one image of a layout. It reads files through a
:class:`LayoutFiles` object, so that :mod:`ipcs_fs.oci.archive` can read a tar
of a layout in place with the same code.

:class:`LayoutSink` writes one: blobs are written to a temporary file, synced
and renamed into place, so a blob path never has partial content. index.json
is replaced last, after the blob directory is synced, so it never names a blob
that a crash could lose. Entries of index.json with other tags are kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Protocol

from ..errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
)
from ..ids import Digest
from .atomic import (
    TEMP_PREFIX,
    locked_directory,
    publish,
    sync_directory,
    sync_file,
    temporary_file,
    write_file_atomically,
)
from .blob import MAX_DOCUMENT_SIZE, READ_SIZE, VerifyingReader, read_up_to
from .descriptor import (
    ANNOTATION_CONTAINERD_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    Descriptor,
    Index,
    dump_json,
    parse_json_object,
)
from .image import ImageSink, ImageSource
from .mediatypes import OCI_INDEX
from .reference import ArchiveReference, LayoutReference

__all__ = [
    "INDEX_FILE",
    "LAYOUT_FILE",
    "LAYOUT_VERSION",
    "DirectoryFiles",
    "LayoutFiles",
    "LayoutSink",
    "LayoutSource",
    "blob_path",
    "resolve_tag",
]

log = logging.getLogger(__name__)

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
LAYOUT_VERSION = "1.0.0"
_LAYOUT_BYTES = dump_json({"imageLayoutVersion": LAYOUT_VERSION})


def blob_path(digest: Digest) -> str:
    """Return the path of a blob inside a layout, relative to its root."""
    return f"blobs/sha256/{digest.hex}"


class LayoutFiles(Protocol):
    """Read access to the files of a layout, by path relative to its root."""

    location: str
    """A name for the layout in messages, such as ``oci:/images/debian``."""

    def exists(self, path: str) -> bool:
        """Tell whether ``path`` is a regular file of the layout."""
        ...

    def open(self, path: str) -> BinaryIO:
        """Open ``path`` for reading; NotFoundError if it is missing."""
        ...


class DirectoryFiles:
    """The files of a layout directory on disk."""

    def __init__(self, root: Path, location: str) -> None:
        self.root = root
        self.location = location

    def exists(self, path: str) -> bool:
        return (self.root / path).is_file()

    def open(self, path: str) -> BinaryIO:
        try:
            return open(self.root / path, "rb", buffering=0)
        except FileNotFoundError as error:
            raise NotFoundError(
                f"failed to open {path} in {self.location}: not found"
            ) from error


def resolve_tag(index: Index, tag: str | None, location: str) -> Descriptor:
    """Return the index.json entry that ``tag`` names.

    An entry matches on ``org.opencontainers.image.ref.name``, else on
    ``io.containerd.image.name`` (the full name ``ctr images export`` records).
    With no tag, an index of exactly one entry gives that entry. Otherwise
    NotFoundError or InvalidArgumentError lists the tags there are.
    """
    entries = index.manifests
    if tag is None:
        if len(entries) == 1:
            return entries[0]
        raise _untagged_error(entries, location)
    for annotation in (ANNOTATION_REF_NAME, ANNOTATION_CONTAINERD_IMAGE_NAME):
        matches = [e for e in entries if e.annotations.get(annotation) == tag]
        if len(matches) > 1:
            log.warning(
                "tag %s names %d entries in %s; using the first",
                tag,
                len(matches),
                location,
            )
        if matches:
            return matches[0]
    raise NotFoundError(
        f"failed to find tag {tag!r} in {location}: {_describe_tags(entries)}"
    )


def _describe_tags(entries: tuple[Descriptor, ...]) -> str:
    tags = sorted({e.ref_name for e in entries if e.ref_name})
    untagged = sum(1 for e in entries if not e.ref_name)
    text = f"tags are {', '.join(tags)}" if tags else "no tags"
    if untagged:
        text += f" and {untagged} untagged {'entry' if untagged == 1 else 'entries'}"
    return text


def _untagged_error(entries: tuple[Descriptor, ...], location: str) -> Exception:
    if not entries:
        return NotFoundError(f"failed to choose an image in {location}: it is empty")
    return InvalidArgumentError(
        f"failed to choose an image in {location}: index.json lists"
        f" {len(entries)} entries, name one with :TAG ({_describe_tags(entries)})"
    )


class LayoutSource(ImageSource):
    """An image in an OCI image layout, read through ``files``.

    Raises FailedPreconditionError at construction if ``oci-layout`` is missing
    or has a version other than 1.0.0.
    """

    def __init__(
        self,
        reference: LayoutReference | ArchiveReference,
        files: LayoutFiles,
    ) -> None:
        super().__init__(reference)
        self.files = files
        self.tag = reference.tag
        _check_layout_file(files)

    def read_index(self) -> Index:
        """Return the layout's index.json."""
        data = _read_document(self.files, INDEX_FILE)
        return Index.from_bytes(data, f"{INDEX_FILE} of {self.files.location}")

    def root(self) -> Descriptor:
        return resolve_tag(self.read_index(), self.tag, self.files.location)

    def has_blob(self, digest: Digest) -> bool:
        return self.files.exists(blob_path(digest))

    def open_blob(self, descriptor: Descriptor) -> BinaryIO:
        raw = self.files.open(blob_path(descriptor.digest))
        reader = VerifyingReader(
            raw, descriptor.digest, descriptor.size, self.files.location
        )
        return io.BufferedReader(reader, READ_SIZE)


def _read_document(files: LayoutFiles, path: str) -> bytes:
    """Read a JSON file of the layout; ResourceExhaustedError past 4 MiB."""
    with files.open(path) as stream:
        data = read_up_to(stream, MAX_DOCUMENT_SIZE + 1)
    if len(data) > MAX_DOCUMENT_SIZE:
        raise ResourceExhaustedError(
            f"failed to read {path} of {files.location}: larger than the limit"
            f" of {MAX_DOCUMENT_SIZE} bytes"
        )
    return data


def _check_layout_file(files: LayoutFiles) -> None:
    try:
        data = _read_document(files, LAYOUT_FILE)
    except NotFoundError as error:
        raise FailedPreconditionError(
            f"failed to open {files.location}: not an OCI image layout"
            f" ({LAYOUT_FILE} is missing)"
        ) from error
    version = parse_json_object(data, LAYOUT_FILE).get("imageLayoutVersion")
    if version != LAYOUT_VERSION:
        raise FailedPreconditionError(
            f"failed to open {files.location}: image layout version {version!r}"
            f" is not supported, expected {LAYOUT_VERSION}"
        )


class LayoutSink(ImageSink):
    """Writes an image into an OCI image layout directory.

    ``root`` defaults to the reference's path. The directory is created if
    missing. An existing directory must be empty or a layout already; its blobs
    and other tags are kept. index.json is updated under an exclusive ``flock``
    on the directory, so concurrent writers of different tags keep each other's
    entries. ``durable=False`` skips every fsync, for throw-away layouts.
    Blobs stored before a failure stay in the directory, unreferenced.
    """

    def __init__(
        self,
        reference: LayoutReference | ArchiveReference,
        root: Path | None = None,
        *,
        durable: bool = True,
    ) -> None:
        super().__init__(reference, reference.tag)
        self.root = root if root is not None else reference.path
        self._durable = durable
        _prepare_layout(self.root, durable)
        self._blobs = self.root / "blobs" / "sha256"

    def has_blob(self, digest: Digest) -> bool:
        return (self.root / blob_path(digest)).is_file()

    def _store_blob(self, chunks: Iterable[bytes | memoryview]) -> tuple[Digest, int]:
        sha256 = hashlib.sha256()
        size = 0
        with temporary_file(self.root) as (file, temp_path):
            for chunk in chunks:
                sha256.update(chunk)
                size += len(chunk)
                file.write(chunk)
            if self._durable:
                sync_file(file)
            digest = Digest.from_hash(sha256)
            target = self.root / blob_path(digest)
            if not target.exists():
                publish(temp_path, target)
        log.debug("stored blob %s of %d bytes in %s", digest, size, self.root)
        return digest, size

    def _store_root(self, root: Descriptor) -> None:
        # The blob directory entries must be durable before index.json names them.
        if self._durable:
            sync_directory(self._blobs)
        with locked_directory(self.root):
            index = self._read_index()
            index = dataclasses.replace(
                index,
                manifests=_merge_entry(index.manifests, root, self.tag),
                media_type=index.media_type or OCI_INDEX,
            )
            write_file_atomically(
                self.root / INDEX_FILE,
                dump_json(index.to_json()),
                durable=self._durable,
            )

    def _read_index(self) -> Index:
        path = self.root / INDEX_FILE
        if not path.exists():
            return Index(manifests=())
        return Index.from_bytes(path.read_bytes(), f"{INDEX_FILE} of {self.root}")


def _merge_entry(
    entries: tuple[Descriptor, ...], root: Descriptor, tag: str | None
) -> tuple[Descriptor, ...]:
    """Return index.json entries with ``root`` added under ``tag``.

    An entry with the same tag is replaced, and so is an untagged entry of the
    same digest. Every other entry is kept in its place.
    """
    kept = [entry for entry in entries if not _is_replaced(entry, root, tag)]
    return (*kept, root)


def _is_replaced(entry: Descriptor, root: Descriptor, tag: str | None) -> bool:
    if entry.ref_name:
        return entry.ref_name == tag
    return entry.digest == root.digest


def _prepare_layout(root: Path, durable: bool) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError as error:
        raise FailedPreconditionError(
            f"failed to create an image layout in {root}: not a directory"
        ) from error
    layout_file = root / LAYOUT_FILE
    if layout_file.exists():
        _check_layout_file(DirectoryFiles(root, str(root)))
    elif any(not p.name.startswith(TEMP_PREFIX) for p in root.iterdir()):
        raise FailedPreconditionError(
            f"failed to create an image layout in {root}: the directory is not"
            f" empty and has no {LAYOUT_FILE}"
        )
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    if not layout_file.exists():
        write_file_atomically(layout_file, _LAYOUT_BYTES, durable=durable)
