"""Walk the ``rootfs`` tree of a layer and yield its entries with their paths.

The walk reads directory nodes only (basic or HAMT), never file content, so
listing a layer costs a few blocks per directory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..errors import InvalidArgumentError
from ..ids import Cid
from ..unixfs import iter_directory
from .paths import join_components
from .rebuild import LayerRoot
from .records import Entry, Kind, decode_entry

__all__ = ["MAX_TREE_DEPTH", "ListedEntry", "walk_layer"]

Get = Callable[[Cid], bytes]

MAX_TREE_DEPTH = 4096
"""Deepest directory nesting accepted; Linux's PATH_MAX allows about 2048."""


@dataclass(slots=True)
class ListedEntry:
    """One entry of a layer: its path, its record and the CID its link holds."""

    path: bytes
    entry: Entry
    cid: Cid | None
    """None for the root, which has no link."""


def walk_layer(get: Get, root: LayerRoot) -> Iterator[ListedEntry]:
    """Yield the root (when the tar names it) then every entry, depth first.

    Entries of a directory come in name order (hash order for a HAMT).
    """
    if root.header.root is not None:
        yield ListedEntry(b".", root.header.root, None)
    yield from _walk(get, root.rootfs.cid)


def _walk(get: Get, cid: Cid) -> Iterator[ListedEntry]:
    # A stack of open directories rather than recursion: a layer may nest
    # directories deeper than Python's recursion limit.
    stack = [(cid, (), iter_directory(get, cid))]
    while stack:
        parent, path, items = stack[-1]
        item = next(items, None)
        if item is None:
            stack.pop()
            continue
        entry = _decode(item.record, parent, item.name)
        child = path + (item.name,)
        yield ListedEntry(join_components(child), entry, item.cid)
        if entry.kind is Kind.DIR:
            _check_depth(len(stack), item.cid, child)
            stack.append((item.cid, child, iter_directory(get, item.cid)))


def _check_depth(depth: int, cid: Cid, path: tuple[bytes, ...]) -> None:
    if depth > MAX_TREE_DEPTH:
        raise InvalidArgumentError(
            f"directory {join_components(path)!r} at {cid} is nested too deep"
        )


def _decode(record: bytes, cid: Cid, name: bytes) -> Entry:
    if not record:
        raise InvalidArgumentError(
            f"invalid directory node {cid}: entry {name!r} has no record"
        )
    try:
        return decode_entry(record)
    except InvalidArgumentError as error:
        raise InvalidArgumentError(
            f"invalid directory node {cid}: entry {name!r}: {error}"
        ) from error
