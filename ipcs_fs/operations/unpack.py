"""``ipcs-fs unpack``: apply every layer of an image, in order, into a directory.

Both layer kinds go through the same apply engine; each layer's tar is checked
against the config's diff_id as it is read. A failure leaves the directory
incomplete, and the error message asks the caller to remove it.

A file-granular layer whose tar the embedded store records as verified (by an
earlier unpack from that store) is not hashed again, unless the caller asks
for a recheck; see :class:`~ipcs_fs.layer.rebuild.RebuiltTar`.
"""

from __future__ import annotations

import logging
import platform as host
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, closing, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from ..apply import ApplyOptions, ApplyStats, apply_layer
from ..errors import InvalidArgumentError, IpcsError, NotFoundError
from ..ids import Digest
from ..layer.hashing import HashingReader
from ..layer.rebuild import RebuiltTar
from ..oci.descriptor import Descriptor
from ..oci.image import ImageSource, ManifestRef
from ..oci.transport import open_source
from ..progress import NoProgress, Progress
from ..store import BlockStore, EmbeddedStore
from ..tar.reader import ReadableStream
from .layers import MISSING_BLOCKS_HINT, diff_ids_of, open_layer_tar

__all__ = ["UnpackSummary", "host_platform", "select_manifest", "unpack_image"]

log = logging.getLogger(__name__)

_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}


@dataclass(slots=True)
class UnpackSummary:
    """Summary of an unpacked image: its layers' apply statistics and time."""

    image: str
    directory: Path
    platform: str
    layers: list[tuple[str, ApplyStats]] = field(default_factory=list)
    seconds: float = 0.0

    def to_text(self) -> str:
        entries = sum(stats.entries for _, stats in self.layers)
        written = sum(stats.bytes_written for _, stats in self.layers)
        return (
            f"unpacked {self.image} ({self.platform}) into {self.directory}:"
            f" {len(self.layers)} layers, {entries} entries,"
            f" {written / 1e6:.1f} MB written in {self.seconds:.1f}s"
        )


def host_platform() -> str:
    """Return this machine's platform as ``os/architecture``."""
    machine = host.machine()
    return f"linux/{_ARCHITECTURES.get(machine, machine)}"


def select_manifest(
    manifests: tuple[ManifestRef, ...], platform: str | None
) -> ManifestRef:
    """Pick the manifest for ``platform`` (``os/arch[/variant]``).

    With no platform given, a single-manifest image gives its manifest and a
    multi-platform image the one for this machine.
    """
    if platform is None and len(manifests) == 1:
        return manifests[0]
    wanted = platform or host_platform()
    for ref in manifests:
        if ref.platform is not None and _matches(str(ref.platform), wanted):
            return ref
    available = ", ".join(str(ref.platform) for ref in manifests) or "none"
    raise NotFoundError(
        f"failed to find platform {wanted} in the image; it has: {available}"
    )


def _matches(offered: str, wanted: str) -> bool:
    return offered == wanted or (
        wanted.count("/") == 1 and offered.startswith(wanted + "/")
    )


def unpack_image(
    reference: str,
    directory: Path,
    store: BlockStore,
    *,
    platform: str | None = None,
    progress: Progress | None = None,
    options: ApplyOptions | None = None,
    verify: bool = False,
) -> UnpackSummary:
    """Apply the layers of ``reference`` for ``platform`` into ``directory``.

    ``directory`` must be absent or empty. Raises the error of the first layer
    that fails, naming the layer; the directory is then incomplete.

    With an :class:`EmbeddedStore`, a file-granular layer that the store
    records as verified is not hashed. ``verify`` hashes every layer all the
    same, and drops the record of a layer that fails.
    """
    started = time.monotonic()
    progress = progress or NoProgress()
    with open_source(reference) as source:
        ref = select_manifest(source.manifests(), platform)
        # Only once the image and platform are known, so a wrong reference
        # leaves no empty directory behind.
        _prepare(directory)
        summary = UnpackSummary(reference, directory, str(ref.platform or "unknown"))
        for layer, diff_id in zip(ref.manifest.layers, diff_ids_of(ref), strict=True):
            progress.task(f"layer {layer.digest.hex[:12]}")
            tar = _open_layer(source, store, layer, diff_id, directory, verify)
            with closing(tar), _snapshot(store):
                stats = _apply(tar, layer, directory, options or ApplyOptions())
            progress.advance(stats.bytes_written)
            progress.done()
            summary.layers.append((str(layer.digest), stats))
    summary.seconds = time.monotonic() - started
    return summary


def _open_layer(
    source: ImageSource,
    store: BlockStore,
    layer: Descriptor,
    diff_id: Digest,
    directory: Path,
    verify: bool,
) -> RebuiltTar | HashingReader:
    verified_layers = store if isinstance(store, EmbeddedStore) else None
    with _naming_layer(layer, directory):
        return open_layer_tar(
            source,
            store,
            layer,
            diff_id,
            verified_layers=verified_layers,
            recheck=verify,
        )


def _snapshot(store: BlockStore) -> AbstractContextManager[None]:
    """Read a layer's blocks in one read transaction of the embedded store."""
    return store.snapshot() if isinstance(store, EmbeddedStore) else nullcontext()


def _apply(
    tar: ReadableStream, layer: Descriptor, directory: Path, options: ApplyOptions
) -> ApplyStats:
    with _naming_layer(layer, directory):
        return apply_layer(tar, directory, source=str(layer.digest), options=options)


@contextmanager
def _naming_layer(layer: Descriptor, directory: Path) -> Iterator[None]:
    """Raise errors again with the layer and the state of ``directory``."""
    try:
        yield
    except IpcsError as error:
        hint = MISSING_BLOCKS_HINT if isinstance(error, NotFoundError) else ""
        raise type(error)(
            f"failed to apply layer {layer.digest}: {error}; {directory} is"
            f" incomplete and should be removed{hint}"
        ) from error


def _prepare(directory: Path) -> None:
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise InvalidArgumentError(
            f"failed to unpack into {directory}: it exists and is not an empty"
            " directory"
        )
    directory.mkdir(parents=True, exist_ok=True)
