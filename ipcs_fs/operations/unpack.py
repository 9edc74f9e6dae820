"""``ipcs-fs unpack``: apply every layer of an image, in order, into a directory.

Both layer kinds go through the same apply engine; each layer's tar is checked
against the config's diff_id as it is read. A failure leaves the directory
incomplete, and the error message asks the caller to remove it.
"""

from __future__ import annotations

import logging
import platform as host
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from ..apply import ApplyOptions, ApplyStats, apply_layer
from ..errors import InvalidArgumentError, IpcsError, NotFoundError
from ..oci.image import ManifestRef
from ..oci.transport import open_source
from ..progress import NoProgress, Progress
from ..store import BlockStore
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
) -> UnpackSummary:
    """Apply the layers of ``reference`` for ``platform`` into ``directory``.

    ``directory`` must be absent or empty. Raises the error of the first layer
    that fails, naming the layer; the directory is then incomplete.
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
            try:
                with closing(open_layer_tar(source, store, layer, diff_id)) as tar:
                    stats = apply_layer(
                        tar,
                        directory,
                        source=str(layer.digest),
                        options=options or ApplyOptions(),
                    )
            except IpcsError as error:
                hint = MISSING_BLOCKS_HINT if isinstance(error, NotFoundError) else ""
                raise type(error)(
                    f"failed to apply layer {layer.digest}: {error}; {directory} is"
                    f" incomplete and should be removed{hint}"
                ) from error
            progress.advance(stats.bytes_written)
            progress.done()
            summary.layers.append((str(layer.digest), stats))
    summary.seconds = time.monotonic() - started
    return summary


def _prepare(directory: Path) -> None:
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise InvalidArgumentError(
            f"failed to unpack into {directory}: it exists and is not an empty"
            " directory"
        )
    directory.mkdir(parents=True, exist_ok=True)
