"""Walk the blocks of a DAG: every block reachable from some roots, once each.

The order is depth first, pre-order, following each dag-pb node's links in
link order, and a block comes where the walk first meets it: the order of
``ipfs dag export`` and of a CAR that ``ipcs-fs car export`` writes. Raw
blocks have no links. Blocks of any other codec are yielded but not
descended into, since this project cannot decode them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from ..errors import InvalidArgumentError
from ..ids import DAG_PB, Cid
from ..unixfs import decode_node

__all__ = ["iter_dag_blocks", "iter_dag_cids"]

Get = Callable[[Cid], bytes]


def iter_dag_blocks(
    get: Get, roots: Iterable[Cid], *, seen: set[Cid] | None = None
) -> Iterator[tuple[Cid, bytes]]:
    """Yield ``(cid, block)`` for every block reachable from ``roots``, once each.

    ``seen`` holds CIDs to skip and receives every CID yielded, so that
    several walks can share it. Raises what ``get`` raises for a missing
    block, and InvalidArgumentError naming the CID for a dag-pb node that
    does not decode.
    """
    for cid, block in _walk(get, roots, seen, read_leaves=True):
        assert block is not None
        yield cid, block


def iter_dag_cids(
    get: Get, roots: Iterable[Cid], *, seen: set[Cid] | None = None
) -> Iterator[Cid]:
    """Yield the CID of every block reachable from ``roots``, once each.

    Like :func:`iter_dag_blocks`, but ``get`` is called for dag-pb nodes only,
    so a raw leaf need not be read, or even be present.
    """
    for cid, _ in _walk(get, roots, seen, read_leaves=False):
        yield cid


def _walk(
    get: Get, roots: Iterable[Cid], seen: set[Cid] | None, *, read_leaves: bool
) -> Iterator[tuple[Cid, bytes | None]]:
    seen = set() if seen is None else seen
    # The stack holds links still to visit, the next one last. A CID may be
    # pushed twice before its first visit; the second pop skips it.
    stack = list(reversed(list(roots)))
    while stack:
        cid = stack.pop()
        if cid in seen:
            continue
        seen.add(cid)
        if cid.codec != DAG_PB:
            yield cid, get(cid) if read_leaves else None
            continue
        block = get(cid)
        yield cid, block
        stack.extend(reversed(_link_cids(cid, block)))


def _link_cids(cid: Cid, block: bytes) -> list[Cid]:
    try:
        node = decode_node(block)
    except InvalidArgumentError as error:
        raise InvalidArgumentError(
            f"failed to read links of node {cid}: {error}"
        ) from error
    return [link.cid for link in node.links]
