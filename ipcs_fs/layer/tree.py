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
  path into an implied directory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

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

__all__ = ["IMPLIED_DIRECTORY_MODE", "TreeBuilder", "entry_from_tar"]

log = logging.getLogger(__name__)

IMPLIED_DIRECTORY_MODE = 0o755
EMPTY_FILE_CID = Cid.for_block(RAW, b"")

_KINDS = {
    EntryKind.FILE: Kind.FILE,
    EntryKind.DIR: Kind.DIR,
    EntryKind.SYMLINK: Kind.SYMLINK,
    EntryKind.HARDLINK: Kind.HARDLINK,
    EntryKind.CHAR: Kind.CHAR,
    EntryKind.BLOCK: Kind.BLOCK,
    EntryKind.FIFO: Kind.FIFO,
}

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


def _implied_directory() -> _Node:
    entry = Entry(kind=Kind.DIR, mode=IMPLIED_DIRECTORY_MODE, implied=True)
    return _Node(entry, children={})


class TreeBuilder:
    """Collect a layer's entries by path and write its directory nodes.

    ``source`` names the layer in error messages.
    """

    def __init__(self, source: str) -> None:
        self._source = source
        self._root = _implied_directory()
        self._root_entry: Entry | None = None

    def add(self, entry: TarEntry, content: FileDag | None) -> None:
        """Record ``entry``; ``content`` is its data's DAG for a regular file."""
        components = clean_components(entry.name)
        if not components:
            self._add_root(entry)
            return
        kind, name = self._classify(entry, components)
        if kind is None:
            return
        link_target = self._link_target(entry, kind)
        record = entry_from_tar(entry, kind, link_target)
        parent = self._directory(components[:-1])
        self._place(parent, name, _Node(record, content))

    def finish(self, put: Put) -> TreeResult:
        """Write every directory node through ``put``; return the rootfs link."""
        totals = _Totals()
        cid, tsize = self._write_directory(self._root, (), put, totals)
        return TreeResult(cid, tsize, self._root_entry, totals.content_size)

    def _add_root(self, entry: TarEntry) -> None:
        if entry.kind is not EntryKind.DIR:
            raise InvalidArgumentError(
                f"invalid entry {entry.name!r} in {self._source}: a"
                f" {entry.kind.value} entry cannot replace the layer root"
            )
        self._root_entry = entry_from_tar(entry, Kind.DIR, b"")

    def _classify(
        self, entry: TarEntry, components: tuple[bytes, ...]
    ) -> tuple[Kind | None, bytes]:
        name = components[-1]
        if not name.startswith(WHITEOUT_PREFIX):
            return _KINDS[entry.kind], name
        if name == WHITEOUT_PREFIX:
            raise InvalidArgumentError(
                f"invalid whiteout {entry.name!r} in {self._source}: it names no file"
            )
        if name == OPAQUE_MARKER:
            return Kind.OPAQUE, name
        if name.startswith(WHITEOUT_META_PREFIX):
            log.debug("skipping aufs metadata entry %r in %s", entry.name, self._source)
            return None, name
        return Kind.WHITEOUT, name

    def _link_target(self, entry: TarEntry, kind: Kind) -> bytes:
        if kind is Kind.SYMLINK:
            return entry.linkname
        if kind is Kind.HARDLINK:
            return join_components(clean_components(entry.linkname))
        return b""

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
            node = child
        return node

    def _place(self, parent: _Node, name: bytes, node: _Node) -> None:
        assert parent.children is not None
        existing = parent.children.get(name)
        if node.entry.kind is Kind.DIR:
            keep = existing.children if existing and existing.children else None
            node.children = keep if keep is not None else {}
        parent.children[name] = node

    def _write_directory(
        self, node: _Node, path: tuple[bytes, ...], put: Put, totals: _Totals
    ) -> tuple[Cid, int]:
        assert node.children is not None
        items = []
        for name in sorted(node.children):
            child = node.children[name]
            cid, tsize = self._child_link(child, path + (name,), put, totals)
            items.append(DirectoryItem(name, cid, tsize, encode_entry(child.entry)))
        try:
            directory = build_directory(items, put)
        except InvalidArgumentError as error:
            raise InvalidArgumentError(
                f"failed to store directory {join_components(path)!r} of"
                f" {self._source}: {error}"
            ) from error
        return directory.cid, directory.tsize

    def _child_link(
        self, node: _Node, path: tuple[bytes, ...], put: Put, totals: _Totals
    ) -> tuple[Cid, int]:
        kind = node.entry.kind
        if kind is Kind.DIR:
            return self._write_directory(node, path, put, totals)
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
        while node.entry.kind is Kind.HARDLINK and seen < 64:
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


def _write_symlink(target: bytes, put: Put) -> tuple[Cid, int]:
    block = encode_node([], encode_data(UnixfsData(DataType.SYMLINK, data=target)))
    cid = Cid.for_block(DAG_PB, block)
    put(cid, block)
    return cid, len(block)
