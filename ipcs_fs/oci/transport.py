"""Opening image sources and sinks from references.

``open_source`` and ``open_sink`` take a parsed :data:`ImageReference` or its
text, and return the :class:`~ipcs_fs.oci.image.ImageSource` or
:class:`~ipcs_fs.oci.image.ImageSink` of its transport.
"""

from __future__ import annotations

from ..errors import NotFoundError, UnimplementedError
from .archive import ArchiveSink, open_archive_source
from .image import ImageSink, ImageSource
from .layout import DirectoryFiles, LayoutSink, LayoutSource
from .reference import (
    ArchiveReference,
    ContainerdReference,
    ImageReference,
    LayoutReference,
    parse_reference,
)

__all__ = ["open_sink", "open_source"]


def open_source(reference: ImageReference | str) -> ImageSource:
    """Open the image that ``reference`` names for reading.

    Raises InvalidArgumentError for a malformed reference, NotFoundError or
    FailedPreconditionError when there is no layout or archive there, and
    UnimplementedError for ``containerd:`` references, which are not read yet.
    """
    if isinstance(reference, str):
        reference = parse_reference(reference)
    if isinstance(reference, LayoutReference):
        if not reference.path.is_dir():
            raise NotFoundError(
                f"failed to open {reference}: directory {reference.path} not found"
            )
        files = DirectoryFiles(reference.path, f"oci:{reference.path}")
        return LayoutSource(reference, files)
    if isinstance(reference, ArchiveReference):
        return open_archive_source(reference)
    raise _containerd_unsupported(reference)


def open_sink(reference: ImageReference | str) -> ImageSink:
    """Open the place that ``reference`` names for writing an image.

    Raises as :func:`open_source` does, and FailedPreconditionError for a
    non-empty directory that is not an image layout.
    """
    if isinstance(reference, str):
        reference = parse_reference(reference)
    if isinstance(reference, LayoutReference):
        return LayoutSink(reference)
    if isinstance(reference, ArchiveReference):
        return ArchiveSink(reference)
    raise _containerd_unsupported(reference)


def _containerd_unsupported(reference: ContainerdReference) -> UnimplementedError:
    return UnimplementedError(
        f"failed to open {reference}: containerd's image store is not supported yet;"
        " export the image with 'ctr images export' and use oci-archive:FILE"
    )
