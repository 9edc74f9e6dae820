"""Compare images: read each distinct layer's DAG once, then count by level.

Each image contributes the layers of one manifest (the platform chosen as
``unpack`` chooses it). Layers are distinct by diff_id across all images, and
each distinct layer is scanned once (see :mod:`ipcs_fs.report.scan`):

- a file-granular layer from the block store, reading only dag-pb nodes;
- a standard tar layer by converting it on the fly, in worker processes when
  several need it, keeping only the dag-pb nodes in memory. With
  ``store_converted``, the converted blocks go to the block store instead, as
  ``convert`` would write them, and the root is pinned.

When two images list the same diff_id, one as a file-granular layer and one as
a tar, the file-granular one is read, because no conversion is needed.
"""

from __future__ import annotations

import logging
import multiprocessing
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack
from dataclasses import dataclass

from ..cpus import available_cpus
from ..errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from ..ids import Cid, Digest
from ..layer.convert import convert_layer
from ..oci.compression import open_uncompressed
from ..oci.descriptor import Descriptor
from ..oci.image import ImageSource, ManifestRef
from ..oci.mediatypes import is_file_granular, is_layer
from ..oci.transport import open_source
from ..operations.layers import diff_ids_of, root_cid_of
from ..operations.unpack import select_manifest
from ..progress import NoProgress, Progress
from ..store import BlockStore
from .model import (
    ComparedImage,
    ComparedLayer,
    CompareReport,
    FileHolding,
    compute_level,
    top_files,
)
from .scan import (
    ConvertedNodes,
    LayerScan,
    check_diff_id,
    convert_to_nodes,
    convert_to_nodes_from,
    scan_layer,
)

__all__ = ["compare_images", "image_labels"]

log = logging.getLogger(__name__)

OpenStore = Callable[[], BlockStore]


@dataclass(frozen=True, slots=True)
class _Layer:
    """One layer of one image, with the config's diff_id for it."""

    image: int
    descriptor: Descriptor
    diff_id: Digest

    @property
    def file_granular(self) -> bool:
        return is_file_granular(self.descriptor.media_type)


def compare_images(
    references: Sequence[str],
    store: OpenStore,
    *,
    labels: Sequence[str] | None = None,
    platform: str | None = None,
    top: int = 10,
    store_converted: bool = False,
    jobs: int | None = None,
    progress: Progress | None = None,
) -> CompareReport:
    """Compare the images ``references`` at the layer, file and block levels.

    ``store`` is called at most once, when a layer needs the block store
    (a file-granular layer, or any layer with ``store_converted``); the
    caller closes what it returns. ``labels`` names the images in the report
    (default: :func:`image_labels`). ``platform`` (``os/arch[/variant]``)
    picks the manifest of multi-platform images. ``top`` bounds the lists of
    largest files. ``jobs`` bounds the worker processes that convert
    standard layers (default: the CPUs available); ``store_converted``
    converts in this process, one layer at a time. Workers start through
    multiprocessing's forkserver, which imports the caller's main module, so
    a script that calls this with several jobs needs the usual
    ``if __name__ == "__main__":`` guard.

    Raises the error of the first image or layer that fails: NotFoundError
    for a missing image or block, DataLossError for a layer that does not
    hash to its diff_id, InvalidArgumentError for malformed input.
    """
    started = time.monotonic()
    _check_counts(top, jobs)
    names = image_labels(references, labels)
    with ExitStack() as stack:
        sources = [stack.enter_context(open_source(ref)) for ref in references]
        manifests = [select_manifest(src.manifests(), platform) for src in sources]
        layers = [_layers_of(index, ref) for index, ref in enumerate(manifests)]
        scanner = _Scanner(
            list(references),
            sources,
            _OnceStore(store),
            store_converted=store_converted,
            jobs=jobs if jobs is not None else available_cpus(),
            progress=progress or NoProgress(),
        )
        scans = scanner.scan(_distinct(layers))
    images = tuple(
        _compared_image(
            names[index], references[index], manifests[index], chosen, scans
        )
        for index, chosen in enumerate(layers)
    )
    report = _build_report(images, layers, scans, top, time.monotonic() - started)
    log.info("compared %d images in %.2fs", len(images), report.seconds)
    return report


def _check_counts(top: int, jobs: int | None) -> None:
    if top < 0:
        raise InvalidArgumentError(f"invalid top list length {top}: must be 0 or more")
    if jobs is not None and jobs < 1:
        raise InvalidArgumentError(f"invalid job count {jobs}: must be 1 or more")


def image_labels(
    references: Sequence[str], labels: Sequence[str] | None = None
) -> tuple[str, ...]:
    """Return a short, unique label for each image reference.

    Given ``labels`` are used as they are and must be unique and one per
    reference. Otherwise the transport is dropped, the rest of each reference
    is split at ``/`` and ``:``, and the parts that all references share at
    the start and at the end are dropped. The first part left names the
    image when that keeps the names apart, else all parts left do:
    ``oci:/images/debian-bookworm/oci:latest`` beside
    ``oci-archive:/images/debian-trixie/trixie.tar:latest`` gives
    ``debian-bookworm`` and ``debian-trixie``. When every reference is the
    same, the references are the labels. Labels that still collide get
    `` #N``, N counting images from 1.
    """
    if labels is not None:
        return _given_labels(references, labels)
    parts = [_reference_parts(reference) for reference in references]
    if len(set(references)) < 2 or not all(parts):
        return _numbered(list(references))
    shortest = min(len(item) for item in parts)
    prefix = _common_length(parts, shortest - 1)
    suffix = _common_length([item[::-1] for item in parts], shortest - prefix - 1)
    middles = [item[prefix : len(item) - suffix] for item in parts]
    firsts = [middle[0] for middle in middles]
    if len(set(firsts)) == len(firsts):
        return tuple(firsts)
    return _numbered(["/".join(middle) for middle in middles])


def _reference_parts(reference: str) -> list[str]:
    _, _, location = reference.partition(":")
    return [part for part in re.split(r"[/:]", location) if part]


def _given_labels(references: Sequence[str], labels: Sequence[str]) -> tuple[str, ...]:
    if len(labels) != len(references):
        raise InvalidArgumentError(
            f"invalid labels: {len(labels)} given for {len(references)} images;"
            " give one label per image, in order"
        )
    for label in labels:
        if not label or list(labels).count(label) > 1:
            raise InvalidArgumentError(
                f"invalid label {label!r}: labels must be unique and not empty"
            )
    return tuple(labels)


def _common_length(parts: list[list[str]], limit: int) -> int:
    length = 0
    while length < limit and len({item[length] for item in parts}) == 1:
        length += 1
    return length


def _numbered(labels: list[str]) -> tuple[str, ...]:
    return tuple(
        f"{label} #{index + 1}" if labels.count(label) > 1 else label
        for index, label in enumerate(labels)
    )


def _layers_of(index: int, ref: ManifestRef) -> list[_Layer]:
    return [
        _Layer(index, descriptor, diff_id)
        for descriptor, diff_id in zip(
            ref.manifest.layers, diff_ids_of(ref), strict=True
        )
        if is_layer(descriptor.media_type)
    ]


def _distinct(layers: list[list[_Layer]]) -> list[_Layer]:
    """Pick one layer per diff_id, a file-granular one where there is one."""
    chosen: dict[Digest, _Layer] = {}
    for layer in (layer for image in layers for layer in image):
        current = chosen.get(layer.diff_id)
        if current is None or (layer.file_granular and not current.file_granular):
            chosen[layer.diff_id] = layer
    return list(chosen.values())


class _OnceStore:
    """Open the block store on first use only, so that comparing standard
    images never creates a store."""

    def __init__(self, open_store: OpenStore) -> None:
        self._open = open_store
        self._store: BlockStore | None = None

    def __call__(self) -> BlockStore:
        if self._store is None:
            self._store = self._open()
        return self._store


class _Scanner:
    """Scan each distinct layer once, converting standard layers as needed."""

    def __init__(
        self,
        references: list[str],
        sources: list[ImageSource],
        store: _OnceStore,
        *,
        store_converted: bool,
        jobs: int,
        progress: Progress,
    ) -> None:
        self._references = references
        self._sources = sources
        self._store = store
        self._store_converted = store_converted
        self._jobs = jobs
        self._progress = progress

    def scan(self, layers: list[_Layer]) -> dict[Digest, tuple[LayerScan, bool]]:
        """Return each layer's scan by diff_id, and whether it was converted."""
        self._progress.task(
            f"reading {len(layers)} layers",
            sum(layer.descriptor.size for layer in layers),
        )
        in_workers = [layer for layer in layers if self._in_worker(layer)]
        results: dict[Digest, tuple[LayerScan, bool]] = {}
        with self._pool(len(in_workers)) as pool:
            futures = self._submit(pool, in_workers)
            for layer in layers:
                if layer not in futures.values():
                    results[layer.diff_id] = self._scan_here(layer)
                    self._progress.advance(layer.descriptor.size)
            results.update(self._collect(futures))
        self._progress.done()
        return results

    def _in_worker(self, layer: _Layer) -> bool:
        return self._jobs > 1 and not layer.file_granular and not self._store_converted

    def _pool(self, count: int) -> ProcessPoolExecutor | ExitStack:
        if count < 2:
            return ExitStack()
        # forkserver rather than fork: the parent may hold SQLite connections
        # and threads, which a forked child must not inherit.
        context = multiprocessing.get_context("forkserver")
        return ProcessPoolExecutor(min(self._jobs, count), mp_context=context)

    def _submit(
        self, pool: ProcessPoolExecutor | ExitStack, layers: list[_Layer]
    ) -> dict[Future[ConvertedNodes], _Layer]:
        if not isinstance(pool, ProcessPoolExecutor):
            return {}
        # Largest first, so that the last layer to finish is a small one.
        ordered = sorted(layers, key=lambda layer: -layer.descriptor.size)
        return {
            pool.submit(
                convert_to_nodes,
                self._references[layer.image],
                layer.descriptor,
                layer.diff_id,
            ): layer
            for layer in ordered
        }

    def _collect(
        self, futures: dict[Future[ConvertedNodes], _Layer]
    ) -> dict[Digest, tuple[LayerScan, bool]]:
        results = {}
        try:
            for future in as_completed(futures):
                layer = futures[future]
                nodes = future.result()
                results[layer.diff_id] = (scan_layer(nodes.get, nodes.root_cid), True)
                self._progress.advance(layer.descriptor.size)
        except BrokenProcessPool as error:
            raise FailedPreconditionError(
                f"failed to convert layers for comparison: a worker process ended"
                f" unexpectedly ({error}); retry with --jobs 1"
            ) from error
        finally:
            for future in futures:
                future.cancel()
        return results

    def _scan_here(self, layer: _Layer) -> tuple[LayerScan, bool]:
        source = self._sources[layer.image]
        if layer.file_granular:
            return self._scan_stored(source, layer), False
        if self._store_converted:
            return self._convert_into_store(source, layer), True
        nodes = convert_to_nodes_from(source, layer.descriptor, layer.diff_id)
        return scan_layer(nodes.get, nodes.root_cid), True

    def _scan_stored(self, source: ImageSource, layer: _Layer) -> LayerScan:
        store = self._store()
        cid = root_cid_of(layer.descriptor)
        get = _RootFirst(cid, source, layer.descriptor, store)
        try:
            scan = scan_layer(get, cid)
        except NotFoundError as error:
            raise NotFoundError(
                f"failed to read layer {layer.descriptor.digest} of"
                f" {self._references[layer.image]}: {error}; compare with the"
                " --store that the image was converted into"
            ) from error
        check_diff_id(scan.root, layer.diff_id)
        return scan

    def _convert_into_store(self, source: ImageSource, layer: _Layer) -> LayerScan:
        store = self._store()
        descriptor = layer.descriptor
        with (
            source.open_blob(descriptor) as blob,
            open_uncompressed(
                blob, descriptor.media_type, source=str(descriptor.digest)
            ) as tar,
            store.batch() as batch,
        ):
            result = convert_layer(
                tar,
                batch.put,
                source=str(descriptor.digest),
                expected_diff_id=layer.diff_id,
            )
        store.pin(result.root_cid)
        return scan_layer(store.get, result.root_cid)


class _RootFirst:
    """Read blocks from the store, and the layer root from the image when the
    store lacks it: the root block is the layer's blob. Nothing is written."""

    def __init__(
        self, root: Cid, source: ImageSource, layer: Descriptor, store: BlockStore
    ) -> None:
        self._root = root
        self._source = source
        self._layer = layer
        self._store = store

    def __call__(self, cid: Cid) -> bytes:
        if cid == self._root and not self._store.has(cid):
            return self._source.read_blob(self._layer)
        return self._store.get(cid)


def _compared_image(
    label: str,
    reference: str,
    manifest: ManifestRef,
    layers: list[_Layer],
    scans: dict[Digest, tuple[LayerScan, bool]],
) -> ComparedImage:
    compared = []
    for layer in layers:
        scan, converted = scans[layer.diff_id]
        compared.append(
            ComparedLayer(
                diff_id=layer.diff_id,
                digest=layer.descriptor.digest,
                media_type=layer.descriptor.media_type,
                tar_size=scan.tar_size,
                root_cid=scan.root.cid,
                converted=converted,
            )
        )
    platform = manifest.platform
    return ComparedImage(
        label=label,
        reference=reference,
        platform=str(platform) if platform else None,
        manifest=manifest.descriptor.digest,
        layers=tuple(compared),
    )


def _build_report(
    images: tuple[ComparedImage, ...],
    layers: list[list[_Layer]],
    scans: dict[Digest, tuple[LayerScan, bool]],
    top: int,
    seconds: float,
) -> CompareReport:
    image_scans = [[scans[layer.diff_id][0] for layer in chosen] for chosen in layers]
    files = [_file_holding(chosen) for chosen in image_scans]
    shared, unique = top_files(files, top)
    levels = (
        compute_level("layer", [_layer_holding(chosen) for chosen in image_scans]),
        compute_level("file", [_sizes(holding) for holding in files]),
        compute_level("block", [_block_holding(chosen) for chosen in image_scans]),
    )
    return CompareReport(images, levels, shared, unique, top, seconds)


def _layer_holding(scans: list[LayerScan]) -> dict[Digest, int]:
    return {scan.diff_id: scan.tar_size for scan in scans}


def _file_holding(scans: list[LayerScan]) -> dict[Cid, FileHolding]:
    """Gather every regular file of every layer by content, with its paths."""
    sizes: dict[Cid, int] = {}
    paths: dict[Cid, set[bytes]] = {}
    for scan in scans:
        for file in scan.files:
            sizes.setdefault(file.cid, file.size)
            paths.setdefault(file.cid, set()).add(file.path)
    return {cid: FileHolding(sizes[cid], tuple(paths[cid])) for cid in sizes}


def _sizes(holding: dict[Cid, FileHolding]) -> dict[Cid, int]:
    return {cid: item.size for cid, item in holding.items()}


def _block_holding(scans: list[LayerScan]) -> dict[Cid, int]:
    blocks: dict[Cid, int] = {}
    for scan in scans:
        blocks.update(scan.blocks)
    return blocks
