"""No block of a layer exceeds 1 MiB, whatever the input."""

from __future__ import annotations

import pytest

from fixtures import tarwriter as tw
from ipcs_fs.errors import InvalidArgumentError
from ipcs_fs.layer.convert import convert_layer
from ipcs_fs.layer.listing import MAX_TREE_DEPTH, walk_layer
from ipcs_fs.layer.rebuild import RebuiltTar, read_layer_root
from ipcs_fs.store import MemoryStore
from ipcs_fs.unixfs import MAX_BLOCK_SIZE
from tests.layer.streams import BytesStream


class SizeRecordingStore(MemoryStore):
    """A memory store that remembers the largest block put into it."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def put(self, cid, block) -> None:
        self.largest = max(self.largest, len(block))
        super().put(cid, block)


def _convert(data: bytes) -> tuple[SizeRecordingStore, object]:
    store = SizeRecordingStore()
    result = convert_layer(BytesStream(data), store.put, source="test layer")
    return store, result


def _rebuilt(store: MemoryStore, result) -> bytes:
    return RebuiltTar(store.get, read_layer_root(store.get, result.root_cid)).read()


def test_directory_of_300000_entries() -> None:
    parts = [
        tw.header(b"big/%06d-with-a-name-of-some-length" % index)
        for index in range(300_000)
    ]
    data = b"".join(parts) + tw.end()

    store, result = _convert(data)

    assert store.largest <= MAX_BLOCK_SIZE
    assert _rebuilt(store, result) == data
    listed = list(walk_layer(store.get, read_layer_root(store.get, result.root_cid)))
    assert len(listed) == 300_001  # the implied directory "big" and its entries


def test_headers_of_3_mib_split_across_leaves() -> None:
    xattrs = [
        (b"user.x%04d" % index, bytes([index % 256]) * 700) for index in range(400)
    ]
    records = b"".join(
        tw.pax_record(b"SCHILY.xattr." + name, value) for name, value in xattrs
    )
    entries = []
    for index in range(10):
        entries.append(tw.pax(records))
        entries.append(tw.header(b"f%d" % index, size=3) + b"abc" + bytes(509))
    data = b"".join(entries) + tw.end()
    assert len(data) > 2_800_000

    store, result = _convert(data)

    assert store.largest <= MAX_BLOCK_SIZE
    assert _rebuilt(store, result) == data


def test_long_names_in_a_directory() -> None:
    names = [b"d/" + (b"%04d" % index) * 60 for index in range(2000)]
    data = b"".join(
        tw.pax(tw.pax_record(b"path", name)) + tw.header(b"x") for name in names
    )
    data += tw.end()

    store, result = _convert(data)

    assert store.largest <= MAX_BLOCK_SIZE
    assert _rebuilt(store, result) == data


def test_entry_whose_record_cannot_fit_is_rejected() -> None:
    value = bytes(range(256)) * 4096  # 1 MiB of xattr value
    data = (
        tw.pax(tw.pax_record(b"SCHILY.xattr.user.huge", value))
        + tw.header(b"d/huge")
        + tw.end()
    )

    with pytest.raises(InvalidArgumentError, match="huge"):
        _convert(data)


def _deep_file(depth: int) -> bytes:
    name = b"/".join([b"d"] * depth) + b"/leaf"
    return tw.pax(tw.pax_record(b"path", name)) + tw.header(b"x") + tw.end()


def test_listing_a_tree_deeper_than_the_recursion_limit() -> None:
    store, result = _convert(_deep_file(1500))

    listed = list(walk_layer(store.get, read_layer_root(store.get, result.root_cid)))

    assert len(listed) == 1501
    assert listed[-1].path == b"/".join([b"d"] * 1500) + b"/leaf"


def test_listing_stops_past_the_deepest_nesting() -> None:
    store, result = _convert(_deep_file(MAX_TREE_DEPTH + 1))
    root = read_layer_root(store.get, result.root_cid)

    with pytest.raises(InvalidArgumentError, match="is nested too deep"):
        list(walk_layer(store.get, root))
