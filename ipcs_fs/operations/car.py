"""``ipcs-fs car export`` and ``car import``: layer DAGs to and from CARv1 files.

Export writes one root per layer and every block of the layers once, in the
depth-first order in which a walk from the roots first meets them (the order
of ``ipfs dag export``), so ``ipfs dag import`` loads the file and pins the
layers. Import reads any CARv1, such as one from ``ipfs dag export``, checks
every block against its CID, stores the blocks and pins the roots.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..car import CarReader, CarWriter
from ..errors import NotFoundError
from ..ids import DAG_PB, Cid
from ..oci.atomic import publish, sync_file, temporary_file
from ..progress import NoProgress, Progress
from ..store import BlockStore
from ..store.kubo import KuboStore
from ..store.walk import iter_dag_blocks, iter_dag_cids
from ..unixfs import decode_node
from .roots import LayerRootRef, find_layer_roots

__all__ = ["CarSummary", "export_car", "import_car"]

_WRITE_BUFFER = 1 << 20


@dataclass(slots=True)
class CarSummary:
    """The summary of an export or import, printed by the command line."""

    action: str
    path: Path
    roots: list[Cid] = field(default_factory=list)
    blocks: int = 0
    block_bytes: int = 0
    file_bytes: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "path": str(self.path),
            "roots": [str(root) for root in self.roots],
            "blocks": self.blocks,
            "block_bytes": self.block_bytes,
            "file_bytes": self.file_bytes,
            "seconds": round(self.seconds, 3),
        }

    def to_text(self) -> str:
        first = (
            f"{self.action} {self.path}: {len(self.roots)} roots, {self.blocks}"
            f" blocks, {self.block_bytes / 1e6:.1f} MB of blocks,"
            f" {self.file_bytes / 1e6:.1f} MB of CAR in {self.seconds:.1f}s"
        )
        lines = [first]
        lines.extend(f"  root {root}" for root in self.roots)
        return "\n".join(lines)


def export_car(
    target: str,
    path: Path,
    store: BlockStore,
    *,
    progress: Progress | None = None,
) -> CarSummary:
    """Write the DAG of the layer root CID ``target``, or of every layer of the
    image ``target``, to the CARv1 file ``path``.

    The file appears only once complete: it is written under a temporary name
    beside ``path`` and renamed. Root blocks that the store lacks are taken
    from the image. Raises NotFoundError naming the CID of a block that the
    store does not hold.
    """
    started = time.monotonic()
    progress = progress or NoProgress()
    layers = find_layer_roots(target)
    roots = [layer.cid for layer in layers]
    summary = CarSummary("exported", path, roots)
    progress.task(f"export {path.name}")
    with temporary_file(path.parent) as (file, temp_path):
        buffered = io.BufferedWriter(file, _WRITE_BUFFER)
        writer = CarWriter(buffered, roots)
        for cid, block in _walk_blocks(layers, store):
            writer.write(cid, block)
            summary.blocks += 1
            summary.block_bytes += len(block)
            progress.advance(len(block))
        buffered.flush()
        sync_file(file)
        publish(temp_path, path)
    progress.done()
    summary.file_bytes = writer.size
    summary.seconds = time.monotonic() - started
    return summary


def _walk_blocks(
    layers: list[LayerRootRef], store: BlockStore
) -> Iterator[tuple[Cid, bytes]]:
    roots = [layer.cid for layer in layers]
    if isinstance(store, KuboStore) and all(store.has(root) for root in roots):
        return _export_from_kubo(store, roots)
    return iter_dag_blocks(_RootsFirst(layers, store).get, roots)


def _export_from_kubo(
    store: KuboStore, roots: list[Cid]
) -> Iterator[tuple[Cid, bytes]]:
    """Yield the blocks of ``roots`` in walk order from kubo's ``dag/export``.

    One request per root instead of one per block. kubo's export order is a
    depth-first walk in link order, so keeping each block's first appearance
    gives the order of :func:`iter_dag_blocks`. Every link is checked to be
    yielded by the end, because a block that kubo lacks only cuts its stream
    short.
    """
    seen: set[Cid] = set()
    linked: set[Cid] = set()
    for root in roots:
        store.fetch_dag(root)
        linked.add(root)
        for cid, block in store.export_dag(root):
            if cid in seen:
                continue
            seen.add(cid)
            if cid.codec == DAG_PB:
                linked.update(link.cid for link in decode_node(block).links)
            yield cid, block
    missing = linked - seen
    if missing:
        raise NotFoundError(
            f"failed to export block {min(missing)}: kubo at {store.api} did not"
            " send it"
        )


class _RootsFirst:
    """Reads root blocks from the image when the store lacks them."""

    def __init__(self, layers: list[LayerRootRef], store: BlockStore) -> None:
        self._blocks = {layer.cid: layer.block for layer in layers if layer.block}
        self._store = store

    def get(self, cid: Cid) -> bytes:
        block = self._blocks.get(cid)
        return block if block is not None else self._store.get(cid)


def import_car(
    path: Path, store: BlockStore, *, progress: Progress | None = None
) -> CarSummary:
    """Store every block of the CARv1 file ``path`` and pin each root.

    Every block is checked against its CID before it is stored. A root is
    pinned only once the whole DAG under it is in the store; otherwise
    NotFoundError names the first missing block. Raises InvalidArgumentError
    naming the byte offset of a malformed header or section, and
    DataLossError naming the CID and offset of a block that does not match.
    Blocks stored before an error stay, unpinned.
    """
    started = time.monotonic()
    progress = progress or NoProgress()
    summary = CarSummary("imported", path)
    progress.task(f"import {path.name}", path.stat().st_size)
    with open(path, "rb") as file:
        reader = CarReader(file, source=str(path))
        summary.roots = list(reader.roots)
        with store.batch() as batch:
            for cid, block in reader:
                batch.put(cid, block)
                summary.blocks += 1
                summary.block_bytes += len(block)
                progress.advance(reader.offset - summary.file_bytes)
                summary.file_bytes = reader.offset
        summary.file_bytes = reader.offset
    progress.done()
    for root in summary.roots:
        _check_complete(store, root, path)
        store.pin(root)
    summary.seconds = time.monotonic() - started
    return summary


def _check_complete(store: BlockStore, root: Cid, path: Path) -> None:
    try:
        for cid in iter_dag_cids(store.get, [root]):
            if not store.has(cid):
                raise NotFoundError(f"block {cid} is missing")
    except NotFoundError as error:
        raise NotFoundError(
            f"failed to pin root {root} of CAR {path}: its DAG is incomplete in"
            f" the store ({error}); import a CAR that holds the whole DAG"
        ) from error
