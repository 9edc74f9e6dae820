"""``ipcs-fs ls``: every entry of each layer, with its metadata and CID.

A file-granular layer is listed from its tree in the block store. A standard
layer is converted on the fly into a throw-away store that keeps directory and
file nodes but drops file content, so its CIDs are the ones conversion would
give, without storing anything.
"""

from __future__ import annotations

import base64
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import InvalidArgumentError, NotFoundError
from ..ids import DAG_PB, Cid
from ..layer.convert import convert_layer
from ..layer.listing import ListedEntry, walk_layer
from ..layer.rebuild import read_layer_root
from ..layer.records import Entry, Kind
from ..oci.compression import open_uncompressed
from ..oci.descriptor import Descriptor
from ..oci.image import ImageSource
from ..oci.mediatypes import is_file_granular, is_layer
from ..oci.transport import open_source
from ..store import BlockStore, MemoryStore
from .layers import MISSING_BLOCKS_HINT, diff_ids_of, root_cid_of

__all__ = ["ListRow", "list_entries"]

_TYPE_CHARACTERS = {
    Kind.FILE: "-",
    Kind.DIR: "d",
    Kind.SYMLINK: "l",
    Kind.HARDLINK: "h",
    Kind.CHAR: "c",
    Kind.BLOCK: "b",
    Kind.FIFO: "p",
    Kind.WHITEOUT: "w",
    Kind.OPAQUE: "o",
}


@dataclass(slots=True)
class ListRow:
    """One listed entry and the layer it belongs to."""

    layer: str
    listed: ListedEntry
    hardlink_group: bytes | None

    def to_json(self) -> dict:
        entry = self.listed.entry
        row = {"layer": self.layer, **_text_field("path", self.listed.path)}
        row.update(
            type=entry.kind.name.lower(),
            mode=f"{entry.mode:04o}",
            uid=entry.uid,
            gid=entry.gid,
            **_text_field("uname", entry.uname),
            **_text_field("gname", entry.gname),
            mtime_ns=entry.mtime_ns,
            size=entry.size,
            xattrs=[_text(xattr.name) for xattr in entry.xattrs],
        )
        if entry.kind in (Kind.SYMLINK, Kind.HARDLINK):
            row.update(_text_field("link_target", entry.link_target))
        if entry.kind in (Kind.CHAR, Kind.BLOCK):
            row.update(devmajor=entry.devmajor, devminor=entry.devminor)
        if self.hardlink_group is not None:
            row.update(_text_field("hardlink_group", self.hardlink_group))
        if entry.implied:
            row["implied"] = True
        row["cid"] = str(self.listed.cid) if self.listed.cid else None
        return row

    def to_text(self) -> str:
        entry = self.listed.entry
        line = (
            f"{_mode_string(entry)} {entry.uid:>5} {entry.gid:>5}"
            f" {entry.size:>10} {_text(self.listed.path)}"
        )
        if entry.kind in (Kind.SYMLINK, Kind.HARDLINK):
            line += f" -> {_text(entry.link_target)}"
        if entry.kind is Kind.FILE and self.listed.cid is not None:
            line += f"  {self.listed.cid}"
        return line


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="backslashreplace")


def _text_field(name: str, value: bytes) -> dict:
    """Return a bytes field as text, plus its base64 form when it is not UTF-8."""
    try:
        return {name: value.decode("utf-8")}
    except UnicodeDecodeError:
        return {name: _text(value), f"{name}_base64": base64.b64encode(value).decode()}


def _mode_string(entry: Entry) -> str:
    bits = stat.filemode(stat.S_IFREG | entry.mode)[1:]
    return _TYPE_CHARACTERS[entry.kind] + bits


def list_entries(target: str, store: BlockStore) -> Iterator[ListRow]:
    """Yield the entries of the layer root CID ``target``, or of every layer
    of the image that ``target`` names (each layer once)."""
    cid = _parse_cid(target)
    if cid is not None:
        root = read_layer_root(store.get, cid)
        yield from _rows(str(cid), walk_layer(store.get, root))
        return
    with open_source(target) as source:
        seen: set = set()
        for ref in source.manifests():
            for layer, _ in zip(ref.manifest.layers, diff_ids_of(ref), strict=True):
                if layer.digest in seen or not is_layer(layer.media_type):
                    continue
                seen.add(layer.digest)
                yield from _rows(str(layer.digest), _listed_layer(source, store, layer))


def _listed_layer(
    source: ImageSource, store: BlockStore, layer: Descriptor
) -> list[ListedEntry]:
    try:
        return list(_layer_entries(source, store, layer))
    except NotFoundError as error:
        raise NotFoundError(
            f"failed to list layer {layer.digest}: {error}{MISSING_BLOCKS_HINT}"
        ) from error


def _parse_cid(target: str) -> Cid | None:
    if ":" in target:
        return None
    try:
        return Cid.parse(target)
    except InvalidArgumentError:
        raise InvalidArgumentError(
            f"invalid target {target!r}: expected a layer root CID or an image"
            " reference (oci:DIR[:TAG], oci-archive:FILE[:TAG])"
        ) from None


def _layer_entries(
    source: ImageSource, store: BlockStore, layer: Descriptor
) -> Iterator[ListedEntry]:
    if is_file_granular(layer.media_type):
        get = _root_from_image(source, store, layer)
        cid = root_cid_of(layer)
        yield from walk_layer(get, read_layer_root(get, cid))
        return
    nodes = MemoryStore()

    def keep_nodes(cid: Cid, block: bytes) -> None:
        if cid.codec == DAG_PB:
            nodes.put(cid, block)

    with (
        source.open_blob(layer) as blob,
        open_uncompressed(blob, layer.media_type, source=str(layer.digest)) as tar,
    ):
        result = convert_layer(tar, keep_nodes, source=str(layer.digest))
    yield from walk_layer(nodes.get, read_layer_root(nodes.get, result.root_cid))


def _root_from_image(source: ImageSource, store: BlockStore, layer: Descriptor):
    """Return a block getter that takes the layer root from the image when the
    store lacks it, so that listing never writes to the store."""
    cid = root_cid_of(layer)
    if store.has(cid) or not source.has_blob(layer.digest):
        return store.get
    root_block = source.read_blob(layer)

    def get(wanted: Cid) -> bytes:
        return root_block if wanted == cid else store.get(wanted)

    return get


def _rows(layer: str, listed: Iterator[ListedEntry]) -> Iterator[ListRow]:
    entries = list(listed)
    groups = _hardlink_groups(entries)
    for item in entries:
        yield ListRow(layer, item, groups.get(item.path))


def _hardlink_groups(entries: list[ListedEntry]) -> dict[bytes, bytes]:
    """Map each hardlink and each file it names to the group's file path."""
    by_path = {item.path: item.entry for item in entries}
    groups: dict[bytes, bytes] = {}
    for item in entries:
        if item.entry.kind is not Kind.HARDLINK:
            continue
        target = _resolve(by_path, item.entry.link_target)
        groups[item.path] = target
        groups.setdefault(target, target)
    return groups


def _resolve(by_path: dict[bytes, Entry], path: bytes) -> bytes:
    for _ in range(64):
        entry = by_path.get(path)
        if entry is None or entry.kind is not Kind.HARDLINK:
            return path
        path = entry.link_target
    return path
