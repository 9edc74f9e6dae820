"""``ipcs-fs rm`` and ``ipcs-fs gc``: unpin layers, then drop unreachable blocks.

``rm`` removes the pins of layer roots; their blocks stay until ``gc``. Pins
are per layer root and not counted per image, so removing an image also
unpins the layers it shares with other images.

``gc`` is a mark and sweep on the embedded store: every block that a walk
from the pinned roots reaches is kept, every other block is deleted. With a
kubo store it runs kubo's own garbage collection, which deletes every block
of the node that no pin reaches, no matter which client stored it. With
both (a tiered store) it does both.

NOTE: a conversion that runs during ``gc`` writes its blocks before it pins
its layer root, so ``gc`` may delete them; the conversion then leaves a layer
whose DAG is incomplete. Run ``gc`` while no conversion runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import FailedPreconditionError, NotFoundError
from ..ids import Cid
from ..store import BlockStore
from ..store.kubo import KuboStore
from ..store.tiered import TieredStore
from ..store.walk import iter_dag_cids
from .roots import find_layer_roots

__all__ = [
    "GcSummary",
    "RemoveSummary",
    "collect_garbage",
    "remove_layers",
    "sweep_store",
]

log = logging.getLogger(__name__)

# Blocks deleted per call, so that one transaction stays short.
_DELETE_GROUP = 4096


@dataclass(slots=True)
class RemoveSummary:
    """The layer roots that ``rm`` unpinned, and those that were not pinned."""

    unpinned: list[Cid] = field(default_factory=list)
    not_pinned: list[Cid] = field(default_factory=list)

    def to_text(self) -> str:
        lines = [f"unpinned {cid}" for cid in self.unpinned]
        lines += [f"not pinned {cid}" for cid in self.not_pinned]
        lines.append("run `ipcs-fs gc` to delete the blocks that nothing pins")
        return "\n".join(lines)


@dataclass(slots=True)
class GcSummary:
    """The summary of a ``gc``: ``kubo_blocks`` is None when no kubo took part."""

    pins: int = 0
    kept: int = 0
    deleted: int = 0
    bytes_freed: int = 0
    kubo_blocks: int | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "pins": self.pins,
            "kept": self.kept,
            "deleted": self.deleted,
            "bytes_freed": self.bytes_freed,
            "kubo_blocks_deleted": self.kubo_blocks,
            "seconds": round(self.seconds, 3),
        }

    def to_text(self) -> str:
        text = (
            f"kept {self.kept} blocks reachable from {self.pins} pins, deleted"
            f" {self.deleted} blocks ({self.bytes_freed / 1e6:.1f} MB)"
        )
        if self.kubo_blocks is not None:
            text += f"; kubo deleted {self.kubo_blocks} blocks"
        return f"{text} in {self.seconds:.1f}s"


def remove_layers(targets: Sequence[str], store: BlockStore) -> RemoveSummary:
    """Unpin the layer roots that ``targets`` name (root CIDs or images).

    The blocks stay until :func:`collect_garbage`. Raises what
    :func:`~ipcs_fs.operations.roots.find_layer_roots` raises for a target.
    """
    roots = [root.cid for target in targets for root in find_layer_roots(target)]
    pinned = set(store.pins())
    summary = RemoveSummary()
    for cid in dict.fromkeys(roots):
        if cid in pinned:
            store.unpin(cid)
            summary.unpinned.append(cid)
            log.info("unpinned layer root %s", cid)
        else:
            summary.not_pinned.append(cid)
    return summary


def collect_garbage(store: BlockStore) -> GcSummary:
    """Delete the blocks that no pin reaches; see the module documentation."""
    started = time.monotonic()
    if isinstance(store, KuboStore):
        summary = GcSummary(kubo_blocks=store.collect_garbage())
    elif isinstance(store, TieredStore):
        summary = sweep_store(store.local)
        summary.kubo_blocks = store.remote.collect_garbage()
    else:
        summary = sweep_store(store)
    summary.seconds = time.monotonic() - started
    return summary


def sweep_store(store: BlockStore) -> GcSummary:
    """Mark every block reachable from a pin of ``store``, delete the rest.

    Raises FailedPreconditionError, before deleting anything, when a pinned
    DAG lacks a node, because the blocks that node links cannot be told apart
    from garbage.
    """
    pins = list(store.pins())
    reachable = _mark(store, pins)
    before = store.stat()
    doomed = [cid for cid in store.cids() if cid not in reachable]
    deleted = 0
    for start in range(0, len(doomed), _DELETE_GROUP):
        deleted += store.delete(doomed[start : start + _DELETE_GROUP])
    freed = before.bytes - store.stat().bytes
    log.info("deleted %d unreachable blocks, %d bytes", deleted, freed)
    return GcSummary(len(pins), len(reachable), deleted, freed)


def _mark(store: BlockStore, pins: list[Cid]) -> set[Cid]:
    reachable: set[Cid] = set()
    for pin in pins:
        try:
            for _ in iter_dag_cids(store.get, [pin], seen=reachable):
                pass
        except NotFoundError as error:
            raise FailedPreconditionError(
                f"failed to collect garbage: the DAG of pin {pin} is incomplete"
                f" ({error}), so nothing was deleted; import the layer again or"
                " unpin it with `ipcs-fs rm`"
            ) from error
    return reachable
