"""The ``rootfs`` tree of a layer: its entries by path, then its directory nodes.

:class:`TreeBuilder` takes tar entries in archive order and keeps, for each
cleaned path, the entry that applying the tar in order leaves there. When the
whole tar has been read, :meth:`TreeBuilder.finish` writes one directory node per
directory, deepest first, each link carrying its entry record.

Rules the tree follows (the tar stream, not the tree, is what gets applied):

- a directory entry naming the root becomes the layer header's ``root`` entry;
  any other entry naming the root is an error;
- ``.wh.NAME`` is a whiteout and ``.wh..wh..opq`` an opaque marker, whatever
  their typeflag; a bare ``.wh.`` is an error; other ``.wh..wh.`` names are aufs
  metadata and stay out of the tree;
- a later entry for the same path replaces the earlier one, except that a
  directory over a directory keeps the children;
- an entry beneath a path that the tree holds as a non-directory turns that
  path into an implied directory;
- a hardlink links to what its target holds in the finished tree, following up
  to 64 hardlinks; one that leads nowhere links to the empty file.

The tree has two stages. A layer's first :data:`SPILL_THRESHOLD` nodes live
in memory as objects, one per path, which is the faster form. Past that, the
builder turns them into events (see :mod:`ipcs_fs.layer.spill`) and records
every further entry as an event. Events are sorted in bounded memory, spilling
to temporary files, so memory stays flat however many entries a layer has.
Both stages write the same nodes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Self

from ..errors import InvalidArgumentError
from ..ids import DAG_PB, RAW, Cid
from ..tar.entry import EntryKind, TarEntry
from ..unixfs import (
    DataType,
    DirectoryItem,
    FileDag,
    UnixfsData,
    build_directory,
    encode_data,
    encode_node,
)
from .paths import (
    OPAQUE_MARKER,
    WHITEOUT_META_PREFIX,
    WHITEOUT_PREFIX,
    clean_components,
    join_components,
)
from .records import Entry, Kind, Xattr, encode_entry
from .spill import (
    DEFAULT_MEMORY_LIMIT,
    SEPARATOR,
    Event,
    ExternalSorter,
    Frame,
    encode_event,
    walk_events,
)

__all__ = [
    "IMPLIED_DIRECTORY_MODE",
    "SPILL_THRESHOLD",
    "TreeBuilder",
    "TreeResult",
    "entry_from_tar",
]

log = logging.getLogger(__name__)

IMPLIED_DIRECTORY_MODE = 0o755
EMPTY_FILE_CID = Cid.for_block(RAW, b"")
SPILL_THRESHOLD = 50_000
"""Nodes kept as objects before the tree turns into events.

At about 600 bytes a node (an estimate from peak RSS at 300,000 entries), this
is about 30 MiB.
"""

_MAX_HARDLINK_HOPS = 64

_KINDS = {
    EntryKind.FILE: Kind.FILE,
    EntryKind.DIR: Kind.DIR,
    EntryKind.SYMLINK: Kind.SYMLINK,
    EntryKind.HARDLINK: Kind.HARDLINK,
    EntryKind.CHAR: Kind.CHAR,
    EntryKind.BLOCK: Kind.BLOCK,
    EntryKind.FIFO: Kind.FIFO,
}

# No key contains two NULs in a row, so a hardlink with this target key resolves
# to nothing.
_NO_TARGET = SEPARATOR * 2

Put = Callable[[Cid, bytes], None]


@dataclass(slots=True)
class _Node:
    entry: Entry
    content: FileDag | None = None
    children: dict[bytes, _Node] | None = None


@dataclass(slots=True)
class TreeResult:
    """The finished tree: the link target of ``rootfs`` and what it holds."""

    cid: Cid
    tsize: int
    root: Entry | None
    content_size: int


@dataclass(slots=True)
class _Totals:
    content_size: int = 0


def entry_from_tar(entry: TarEntry, kind: Kind, link_target: bytes) -> Entry:
    """Build the entry record of a tar entry."""
    seconds, nanos = divmod(entry.mtime_ns, 1_000_000_000)
    device = kind in (Kind.CHAR, Kind.BLOCK)
    return Entry(
        kind=kind,
        mode=entry.mode & 0o7777,
        uid=entry.uid,
        gid=entry.gid,
        uname=entry.uname,
        gname=entry.gname,
        mtime_seconds=seconds,
        mtime_nanos=nanos,
        size=entry.size if kind is Kind.FILE else 0,
        link_target=link_target,
        devmajor=entry.devmajor if device else 0,
        devminor=entry.devminor if device else 0,
        xattrs=[Xattr(name, value) for name, value in entry.xattrs.items()],
    )


def _implied_entry() -> Entry:
    return Entry(kind=Kind.DIR, mode=IMPLIED_DIRECTORY_MODE, implied=True)


def _implied_directory() -> _Node:
    return _Node(_implied_entry(), children={})


_IMPLIED_RECORD = encode_entry(_implied_entry())


class TreeBuilder:
    """Collect a layer's entries by path and write its directory nodes.

    ``source`` names the layer in error messages. Past ``spill_threshold``
    nodes the builder records entries as events, which take up to
    ``memory_limit`` bytes of memory and then go to temporary files in
    ``spill_directory`` (None for the system's temporary directory). Those
    files have no name on disk and are closed by :meth:`finish`, by
    :meth:`close`, or when the builder is collected. Writing or reading them
    raises ResourceExhaustedError when the file system is full and
    FailedPreconditionError for other failures.

    Call :meth:`add` for each entry in tar order, then :meth:`finish` once.
    """

    def __init__(
        self,
        source: str,
        *,
        spill_threshold: int = SPILL_THRESHOLD,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        spill_directory: str | None = None,
    ) -> None:
        self._source = source
        self._root_entry: Entry | None = None
        self._spill_threshold = spill_threshold
        self._nodes: _NodeTree | None = _NodeTree(source)
        self._events = _EventTree(source, memory_limit, spill_directory)

    @property
    def spilled(self) -> bool:
        """Whether any events have gone to temporary files."""
        return self._events.run_count > 0

    def add(self, entry: TarEntry, content: FileDag | None) -> None:
        """Record ``entry``; ``content`` is its data's DAG for a regular file."""
        components = clean_components(entry.name)
        if not components:
            self._add_root(entry)
            return
        if SEPARATOR in entry.name:
            raise InvalidArgumentError(
                f"invalid entry {entry.name!r} in {self._source}: the name"
                " contains a NUL byte"
            )
        kind = self._classify(entry, components)
        if kind is None:
            return
        record = entry_from_tar(entry, kind, self._link_target(entry, kind))
        if self._nodes is None:
            self._events.add(components, record, content)
            return
        self._nodes.add(components, record, content)
        if self._nodes.size > self._spill_threshold:
            self._to_events()

    def finish(self, put: Put) -> TreeResult:
        """Write every directory node through ``put``; return the rootfs link.

        Closes the builder, also when writing fails.
        """
        try:
            if self._nodes is not None:
                cid, tsize, content_size = self._nodes.finish(put)
            else:
                cid, tsize, content_size = self._events.finish(put)
            return TreeResult(cid, tsize, self._root_entry, content_size)
        finally:
            self.close()

    def close(self) -> None:
        """Free the temporary files, if any. Safe to call more than once."""
        self._events.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _to_events(self) -> None:
        assert self._nodes is not None
        log.debug(
            "tree of %s passed %d nodes; recording it as events",
            self._source,
            self._spill_threshold,
        )
        for components, record, content in self._nodes.entries():
            self._events.add(components, record, content)
        self._nodes = None

    def _add_root(self, entry: TarEntry) -> None:
        if entry.kind is not EntryKind.DIR:
            raise InvalidArgumentError(
                f"invalid entry {entry.name!r} in {self._source}: a"
                f" {entry.kind.value} entry cannot replace the layer root"
            )
        self._root_entry = entry_from_tar(entry, Kind.DIR, b"")

    def _classify(self, entry: TarEntry, components: tuple[bytes, ...]) -> Kind | None:
        name = components[-1]
        if not name.startswith(WHITEOUT_PREFIX):
            return _KINDS[entry.kind]
        if name == WHITEOUT_PREFIX:
            raise InvalidArgumentError(
                f"invalid whiteout {entry.name!r} in {self._source}: it names no file"
            )
        if name == OPAQUE_MARKER:
            return Kind.OPAQUE
        if name.startswith(WHITEOUT_META_PREFIX):
            log.debug("skipping aufs metadata entry %r in %s", entry.name, self._source)
            return None
        return Kind.WHITEOUT

    def _link_target(self, entry: TarEntry, kind: Kind) -> bytes:
        if kind is Kind.SYMLINK:
            return entry.linkname
        if kind is Kind.HARDLINK:
            return join_components(clean_components(entry.linkname))
        return b""


class _NodeTree:
    """The first stage: one object per path, in dictionaries of children."""

    def __init__(self, source: str) -> None:
        self._source = source
        self._root = _implied_directory()
        self.size = 0
        """Nodes created so far, replaced ones included."""

    def add(
        self, components: tuple[bytes, ...], record: Entry, content: FileDag | None
    ) -> None:
        parent = self._directory(components[:-1])
        self._place(parent, components[-1], _Node(record, content))
        self.size += 1

    def finish(self, put: Put) -> tuple[Cid, int, int]:
        """Write every directory node; return the root's CID and Tsize and the
        content size."""
        totals = _Totals()
        cid, tsize = self._write_directories(put, totals)
        return cid, tsize, totals.content_size

    def entries(self) -> Iterator[tuple[tuple[bytes, ...], Entry, FileDag | None]]:
        """Yield every path's components, entry and content, parents first."""
        pending: list[tuple[tuple[bytes, ...], _Node]] = [((), self._root)]
        while pending:
            path, node = pending.pop()
            assert node.children is not None
            for name, child in node.children.items():
                components = path + (name,)
                yield components, child.entry, child.content
                if child.children is not None:
                    pending.append((components, child))

    def _directory(self, components: tuple[bytes, ...]) -> _Node:
        node = self._root
        for name in components:
            assert node.children is not None
            child = node.children.get(name)
            if child is None or child.children is None:
                if child is not None:
                    log.warning(
                        "entry beneath non-directory %r in %s; the tree keeps it"
                        " as a directory",
                        name,
                        self._source,
                    )
                child = _implied_directory()
                node.children[name] = child
                self.size += 1
            node = child
        return node

    def _place(self, parent: _Node, name: bytes, node: _Node) -> None:
        assert parent.children is not None
        existing = parent.children.get(name)
        if node.entry.kind is Kind.DIR:
            keep = existing.children if existing and existing.children else None
            node.children = keep if keep is not None else {}
        parent.children[name] = node

    def _write_directories(self, put: Put, totals: _Totals) -> tuple[Cid, int]:
        """Write every directory node, children first, and return the root's link.

        The walk keeps its own stack because a tar can nest a path thousands
        of components deep, past Python's recursion limit.
        """
        stack = [_Pending((), self._root)]
        while True:
            pending = stack[-1]
            child = pending.next_child()
            if child is not None:
                name, node = child
                if node.entry.kind is Kind.DIR:
                    stack.append(_Pending(pending.path + (name,), node))
                else:
                    cid, tsize = self._leaf_link(node, put, totals)
                    pending.add(name, cid, tsize, node.entry)
                continue
            stack.pop()
            cid, tsize = _store_directory(
                pending.items, pending.path, put, self._source
            )
            if not stack:
                return cid, tsize
            stack[-1].add(pending.path[-1], cid, tsize, pending.node.entry)

    def _leaf_link(self, node: _Node, put: Put, totals: _Totals) -> tuple[Cid, int]:
        kind = node.entry.kind
        if kind is Kind.FILE and node.content is not None:
            totals.content_size += node.entry.size
            return node.content.cid, node.content.tsize
        if kind is Kind.SYMLINK:
            return _write_symlink(node.entry.link_target, put)
        if kind is Kind.HARDLINK:
            return self._hardlink_link(node, put)
        return EMPTY_FILE_CID, 0

    def _hardlink_link(self, node: _Node, put: Put) -> tuple[Cid, int]:
        target = self._resolve_hardlink(node)
        if target is None:
            return EMPTY_FILE_CID, 0
        if target.entry.kind is Kind.SYMLINK:
            return _write_symlink(target.entry.link_target, put)
        assert target.content is not None
        return target.content.cid, target.content.tsize

    def _resolve_hardlink(self, node: _Node) -> _Node | None:
        """Follow hardlink targets within this layer to a file or symlink."""
        seen = 0
        while node.entry.kind is Kind.HARDLINK and seen < _MAX_HARDLINK_HOPS:
            found = self._lookup(clean_components(node.entry.link_target))
            if found is None:
                return None
            node = found
            seen += 1
        if node.entry.kind is Kind.SYMLINK:
            return node
        if node.entry.kind is Kind.FILE and node.content is not None:
            return node
        return None

    def _lookup(self, components: tuple[bytes, ...]) -> _Node | None:
        node = self._root
        for name in components:
            if node.children is None:
                return None
            found = node.children.get(name)
            if found is None:
                return None
            node = found
        return node


class _Pending:
    """A directory whose node :meth:`_NodeTree._write_directories` is building."""

    __slots__ = ("items", "names", "node", "path")

    def __init__(self, path: tuple[bytes, ...], node: _Node) -> None:
        assert node.children is not None
        self.path = path
        self.node = node
        # Reversed so that pop() gives the names in byte order.
        self.names = sorted(node.children, reverse=True)
        self.items: list[DirectoryItem] = []

    def next_child(self) -> tuple[bytes, _Node] | None:
        """Return the next child by name, or None when all have links."""
        if not self.names:
            return None
        name = self.names.pop()
        assert self.node.children is not None
        return name, self.node.children[name]

    def add(self, name: bytes, cid: Cid, tsize: int, entry: Entry) -> None:
        self.items.append(DirectoryItem(name, cid, tsize, encode_entry(entry)))


class _EventTree:
    """The second stage: every entry as an event in an external sort."""

    def __init__(
        self, source: str, memory_limit: int, spill_directory: str | None
    ) -> None:
        self._source = source
        self._events = ExternalSorter(
            source, memory_limit=memory_limit, directory=spill_directory
        )
        self._sequence = 0
        # NOTE: this set grows with the number of distinct hardlink targets,
        # roughly 100 bytes each, so a layer of millions of hardlinks still
        # takes memory in proportion.
        self._hardlink_targets: set[bytes] = set()

    @property
    def run_count(self) -> int:
        return self._events.run_count

    def add(
        self, components: tuple[bytes, ...], record: Entry, content: FileDag | None
    ) -> None:
        target = record.link_target
        if record.kind is Kind.HARDLINK:
            target = self._target_key(target)
        self._sequence += 1
        key = SEPARATOR.join(components)
        self._events.add(encode_event(key, self._sequence, record, content, target))

    def finish(self, put: Put) -> tuple[Cid, int, int]:
        """Write every directory node; return the root's CID and Tsize and the
        content size."""
        writer = _EventWriter(self._source, put, self._find_hardlink_targets())
        children = walk_events(self._events.sorted_items(), writer.visit, self._source)
        cid, tsize = _store_directory(children, (), put, self._source)
        return cid, tsize, writer.content_size

    def close(self) -> None:
        self._events.close()

    def _target_key(self, link_target: bytes) -> bytes:
        """Return the key of a hardlink's target and remember to resolve it."""
        if SEPARATOR in link_target:
            return _NO_TARGET
        key = SEPARATOR.join(clean_components(link_target))
        self._hardlink_targets.add(key)
        return key

    def _find_hardlink_targets(self) -> dict[bytes, Event | None]:
        """Return the final state of every path that a hardlink names.

        A hardlink's link depends on paths that may sort after it, so finding
        them takes a walk of its own, through the targets and their ancestors
        only. None marks an implied directory.
        """
        target_keys = self._hardlink_targets
        found: dict[bytes, Event | None] = {}
        if not target_keys:
            return found

        def visit(frame: Frame, path: bytes) -> object:
            key = path[: frame.end]
            if key in target_keys:
                found[key] = frame.final_state()
            return True

        walk_events(
            self._events.sorted_items(),
            visit,
            self._source,
            _and_ancestors(target_keys),
        )
        return found


def _and_ancestors(keys: set[bytes]) -> set[bytes]:
    """Return ``keys`` with the keys of all their ancestors."""
    result = set()
    for key in keys:
        end = len(key)
        while end > 0:
            result.add(key[:end])
            end = key.rfind(SEPARATOR, 0, end)
    return result


class _EventWriter:
    """Turn the final state of each path into a directory link."""

    def __init__(
        self, source: str, put: Put, targets: dict[bytes, Event | None]
    ) -> None:
        self._source = source
        self._put = put
        self._targets = targets
        self.content_size = 0

    def visit(self, frame: Frame, path: bytes) -> DirectoryItem:
        # NOTE: a directory's links are all in memory when its node is built
        # (a HAMT needs them all), so one directory of millions of entries
        # still takes memory in proportion.
        event = frame.final_state()
        if event is None or event.kind is Kind.DIR:
            key = path[: frame.end]
            components = tuple(key.split(SEPARATOR))
            cid, tsize = _store_directory(
                frame.children, components, self._put, self._source
            )
            record = event.record if event is not None else _IMPLIED_RECORD
            return DirectoryItem(frame.name, cid, tsize, record)
        cid, tsize = self._leaf_link(event)
        return DirectoryItem(frame.name, cid, tsize, event.record)

    def _leaf_link(self, event: Event) -> tuple[Cid, int]:
        kind = event.kind
        if kind is Kind.FILE and event.cid is not None:
            self.content_size += event.size
            return event.cid, event.tsize
        if kind is Kind.SYMLINK:
            return _write_symlink(event.link_target, self._put)
        if kind is Kind.HARDLINK:
            return self._hardlink_link(event)
        return EMPTY_FILE_CID, 0

    def _hardlink_link(self, event: Event) -> tuple[Cid, int]:
        target = self._resolve_hardlink(event)
        if target is None:
            return EMPTY_FILE_CID, 0
        if target.kind is Kind.SYMLINK:
            return _write_symlink(target.link_target, self._put)
        assert target.cid is not None
        return target.cid, target.tsize

    def _resolve_hardlink(self, event: Event) -> Event | None:
        """Follow hardlink targets within this layer to a file or symlink."""
        hops = 0
        while event.kind is Kind.HARDLINK and hops < _MAX_HARDLINK_HOPS:
            found = self._targets.get(event.link_target)
            if found is None:
                return None
            event = found
            hops += 1
        if event.kind is Kind.SYMLINK:
            return event
        if event.kind is Kind.FILE and event.cid is not None:
            return event
        return None


def _store_directory(
    items: list[DirectoryItem], path: tuple[bytes, ...], put: Put, source: str
) -> tuple[Cid, int]:
    try:
        directory = build_directory(items, put)
    except InvalidArgumentError as error:
        raise InvalidArgumentError(
            f"failed to store directory {join_components(path)!r} of {source}: {error}"
        ) from error
    return directory.cid, directory.tsize


def _write_symlink(target: bytes, put: Put) -> tuple[Cid, int]:
    block = encode_node([], encode_data(UnixfsData(DataType.SYMLINK, data=target)))
    cid = Cid.for_block(DAG_PB, block)
    put(cid, block)
    return cid, len(block)
