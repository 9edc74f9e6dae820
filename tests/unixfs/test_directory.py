"""Tests of directory building (basic and HAMT) and reading."""

from __future__ import annotations

import random

import pytest

from ipcs_fs.errors import InvalidArgumentError
from ipcs_fs.ids import DAG_PB, RAW, Cid
from ipcs_fs.unixfs import hamt
from ipcs_fs.unixfs.dagpb import MAX_BLOCK_SIZE, Link, decode_node, encode_node
from ipcs_fs.unixfs.data import DataType, UnixfsData, decode_data, encode_data
from ipcs_fs.unixfs.directory import (
    DirectoryItem,
    build_directory,
    iter_directory,
)

from .conftest import MemoryStore

EMPTY_DIRECTORY = "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"
# Root CIDs that the JS importer (ipfs-unixfs-importer 17.1.1, kubo's
# options) gives a directory of 2000 files named entry-0000 to entry-1999,
# each holding its number in decimal.
NUMBERED_BASIC = "bafybeifvqtk2ty5xwyblm272lurn4edkkka6cfhjzym4v727ol3ovbbvzq"
NUMBERED_HAMT_1000 = "bafybeicizljovarrirrtivrtsgolmtcbnbyx55lvyrhzisql6zthbb34oq"


def numbered_items(count: int) -> list[DirectoryItem]:
    items = []
    for number in range(count):
        content = b"%d" % number
        cid = Cid.for_block(RAW, content)
        items.append(DirectoryItem(b"entry-%04d" % number, cid, len(content), b""))
    return items


def item(
    name: bytes, record: bytes = b"", content: bytes | None = None
) -> DirectoryItem:
    content = name if content is None else content
    return DirectoryItem(name, Cid.for_block(RAW, content), len(content), record)


def test_empty_directory_vector(store: MemoryStore) -> None:
    dag = build_directory([], store.put)
    assert str(dag.cid) == EMPTY_DIRECTORY
    assert dag.tsize == 4


def test_basic_matches_js_importer(store: MemoryStore) -> None:
    dag = build_directory(numbered_items(2000), store.put)
    assert str(dag.cid) == NUMBERED_BASIC
    assert len(store.blocks) == 1


def test_hamt_matches_js_importer(store: MemoryStore) -> None:
    dag = build_directory(numbered_items(2000), store.put, shard_threshold=1000)
    assert str(dag.cid) == NUMBERED_HAMT_1000
    assert dag.tsize == sum(len(block) for block in store.blocks.values()) + sum(
        entry.tsize for entry in numbered_items(2000)
    )


def test_item_order_does_not_matter(store: MemoryStore) -> None:
    items = numbered_items(300)
    random.Random(3).shuffle(items)
    assert build_directory(items, store.put, shard_threshold=1000) == build_directory(
        numbered_items(300), store.put, shard_threshold=1000
    )


def test_basic_node_layout(store: MemoryStore) -> None:
    items = [item(b"b", b"rb"), item(b"a", b"ra"), item(b"c")]
    dag = build_directory(items, store.put, layer_header=b"HDR")
    node = decode_node(store.get(dag.cid))
    assert [link.name for link in node.links] == [b"a", b"b", b"c"]
    assert decode_data(node.data or b"") == UnixfsData(
        DataType.DIRECTORY, layer_header=b"HDR", entry_records=(b"ra", b"rb", b"")
    )
    assert dag.tsize == len(store.get(dag.cid)) + 3


def test_empty_records_are_not_written(store: MemoryStore) -> None:
    dag = build_directory([item(b"a"), item(b"b")], store.put)
    assert decode_node(store.get(dag.cid)).data == b"\x08\x01"


def test_basic_round_trip(store: MemoryStore) -> None:
    items = [item(b"z", b"1"), item(b"\xff\xfe", b""), item(b"a b", b"3" * 100)]
    dag = build_directory(items, store.put)
    assert list(iter_directory(store.get, dag.cid)) == sorted(items)


def test_threshold_is_exclusive(store: MemoryStore) -> None:
    items = [item(b"%03d" % number) for number in range(10)]
    estimate = 10 * (3 + 36)
    at = build_directory(items, store.put, shard_threshold=estimate)
    over = build_directory(items, store.put, shard_threshold=estimate - 1)
    assert decode_data(decode_node(store.get(at.cid)).data or b"").type == (
        DataType.DIRECTORY
    )
    assert decode_data(decode_node(store.get(over.cid)).data or b"").type == (
        DataType.HAMT_SHARD
    )


def test_hamt_root_node(store: MemoryStore) -> None:
    items = [item(b"alpha", b"A"), item(b"beta"), item(b"gamma", b"G")]
    dag = build_directory(items, store.put, shard_threshold=0, layer_header=b"H")
    node = decode_node(store.get(dag.cid))
    slots = {entry.name: hamt.slot_of(hamt.hash_name(entry.name), 0) for entry in items}
    ordered = sorted(items, key=lambda entry: slots[entry.name])
    assert [link.name for link in node.links] == [
        b"%02X" % slots[entry.name] + entry.name for entry in ordered
    ]
    bits = sum(1 << slot for slot in slots.values())
    assert decode_data(node.data or b"") == UnixfsData(
        DataType.HAMT_SHARD,
        data=bits.to_bytes((bits.bit_length() + 7) // 8, "big"),
        hash_type=0x22,
        fanout=256,
        layer_header=b"H",
        entry_records=tuple(entry.record for entry in ordered),
    )


def test_hash_name_is_murmur3_h1() -> None:
    # h1 of MurmurHash3_x64_128("hello", seed 0), as the JS importer's
    # @multiformats/murmur3 prints it before reversing.
    assert hamt.hash_name(b"hello") == 0xCBD8A7B341BD9B02
    assert hamt.slot_of(0xCBD8A7B341BD9B02, 0) == 0xCB
    assert hamt.slot_of(0xCBD8A7B341BD9B02, 7) == 0x02


def test_hamt_round_trip_with_records(store: MemoryStore) -> None:
    items = [item(b"name-%d" % n, b"record-%d" % n) for n in range(5000)]
    dag = build_directory(items, store.put, shard_threshold=1000)
    read = list(iter_directory(store.get, dag.cid))
    assert sorted(read) == sorted(items)
    assert len(store.blocks) > 1


def test_records_force_a_hamt(store: MemoryStore) -> None:
    items = [item(b"f%04d" % n, bytes(600)) for n in range(2000)]
    dag = build_directory(items, store.put)
    root = decode_node(store.get(dag.cid))
    assert decode_data(root.data or b"").type == DataType.HAMT_SHARD
    assert max(len(block) for block in store.blocks.values()) <= MAX_BLOCK_SIZE
    assert sorted(iter_directory(store.get, dag.cid)) == sorted(items)


def test_large_records_pushed_down(store: MemoryStore) -> None:
    # About 93 of 300 entries get a root slot of their own: 1.8 MiB of records.
    items = [item(b"big-%d" % n, bytes(20_000)) for n in range(300)]
    dag = build_directory(items, store.put)
    sizes = [len(block) for block in store.blocks.values()]
    lone = [
        block for block in store.blocks.values() if len(decode_node(block).links) == 1
    ]
    assert max(sizes) <= MAX_BLOCK_SIZE
    assert lone, "no entry was moved into a sub-shard of its own"
    assert sorted(iter_directory(store.get, dag.cid)) == sorted(items)


def test_entry_too_large_for_a_block(store: MemoryStore) -> None:
    items = [item(b"small"), item(b"huge", bytes(MAX_BLOCK_SIZE))]
    with pytest.raises(InvalidArgumentError) as caught:
        build_directory(items, store.put)
    message = str(caught.value)
    assert message.startswith("failed to build directory: entry b'huge' needs a block")
    assert message.endswith("its name and entry record are too large")


def test_many_long_names(store: MemoryStore) -> None:
    names = [b"%06d-" % n + b"n" * 240 for n in range(300_000)]
    target = Cid.for_block(RAW, b"")
    items = [DirectoryItem(name, target, 0, b"") for name in names]
    dag = build_directory(items, store.put)
    assert max(len(block) for block in store.blocks.values()) <= MAX_BLOCK_SIZE
    read = [entry.name for entry in iter_directory(store.get, dag.cid)]
    assert len(read) == 300_000
    assert sorted(read) == names


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        (b"", "empty name"),
        (b".", "reserved name b'.'"),
        (b"..", "reserved name b'..'"),
        (b"a/b", "name b'a/b' contains '/'"),
        (b"a\0b", "name b'a\\x00b' contains a NUL byte"),
    ],
)
def test_build_rejects_name(store: MemoryStore, name: bytes, problem: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        build_directory(
            [item(b"ok"), DirectoryItem(name, item(b"x").cid, 1, b"")], store.put
        )
    assert str(caught.value) == f"failed to build directory: {problem}"


def test_build_rejects_duplicate(store: MemoryStore) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        build_directory([item(b"same"), item(b"other"), item(b"same")], store.put)
    assert str(caught.value) == "failed to build directory: duplicate entry b'same'"


def test_build_rejects_bad_tsize(store: MemoryStore) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        build_directory([DirectoryItem(b"n", item(b"n").cid, -1, b"")], store.put)
    assert str(caught.value) == (
        "failed to build directory: Tsize -1 of entry b'n' is not a uint64"
    )


def put_block(store: MemoryStore, links: list[Link], message: UnixfsData) -> Cid:
    block = encode_node(links, encode_data(message))
    cid = Cid.for_block(DAG_PB, block)
    store.put(cid, block)
    return cid


def read_error(store: MemoryStore, cid: Cid) -> str:
    with pytest.raises(InvalidArgumentError) as caught:
        list(iter_directory(store.get, cid))
    return str(caught.value)


def shard(data: bytes, **fields: object) -> UnixfsData:
    values: dict[str, object] = {"data": data, "hash_type": 0x22, "fanout": 256}
    values.update(fields)
    return UnixfsData(DataType.HAMT_SHARD, **values)  # type: ignore[arg-type]


def value_link(name: bytes, level: int = 0) -> Link:
    slot = hamt.slot_of(hamt.hash_name(name), level)
    return Link(item(name).cid, b"%02X" % slot + name, 1)


def bitfield(*links: Link) -> bytes:
    bits = sum(1 << int(link.name[:2], 16) for link in links)
    return bits.to_bytes((bits.bit_length() + 7) // 8, "big")


def test_read_rejects_unsorted_basic(store: MemoryStore) -> None:
    links = [Link(item(b"a").cid, b"a", 1), Link(item(b"a").cid, b"a", 1)]
    cid = put_block(store, links, UnixfsData(DataType.DIRECTORY))
    assert read_error(store, cid) == (
        f"failed to read directory {cid}: link b'a' is not after b'a' in name order"
    )


def test_read_rejects_bad_name(store: MemoryStore) -> None:
    cid = put_block(
        store, [Link(item(b"x").cid, b"..", 1)], UnixfsData(DataType.DIRECTORY)
    )
    assert (
        read_error(store, cid) == f"failed to read directory {cid}: reserved name b'..'"
    )


def test_read_rejects_record_count(store: MemoryStore) -> None:
    message = UnixfsData(DataType.DIRECTORY, entry_records=(b"1", b"2"))
    cid = put_block(store, [Link(item(b"a").cid, b"a", 1)], message)
    assert read_error(store, cid) == (
        f"failed to read directory {cid}: 2 entry records for 1 links"
    )


def test_read_rejects_file(store: MemoryStore) -> None:
    cid = put_block(store, [], UnixfsData(DataType.FILE, filesize=0))
    assert read_error(store, cid) == (
        f"failed to read directory {cid}: UnixFS type FILE is not a directory"
    )


def test_read_rejects_raw(store: MemoryStore) -> None:
    cid = item(b"leaf").cid
    assert read_error(store, cid) == (
        f"failed to read directory {cid}: codec raw is not dag-pb"
    )


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"fanout": 16}, "HAMT fanout 16, expected 256"),
        ({"hash_type": 0x12}, "HAMT hash type 18, expected 0x22 (murmur3)"),
    ],
)
def test_read_rejects_shard_parameters(
    store: MemoryStore, fields: dict[str, object], problem: str
) -> None:
    link = value_link(b"a")
    cid = put_block(store, [link], shard(bitfield(link), **fields))
    assert read_error(store, cid) == f"failed to read directory {cid}: {problem}"


def test_read_rejects_bitfield_mismatch(store: MemoryStore) -> None:
    link = value_link(b"a")
    cid = put_block(store, [link], shard(b"\x01\x00"))
    assert read_error(store, cid) == (
        f"failed to read directory {cid}:"
        " HAMT bitfield does not match the slots of the links"
    )


def test_read_rejects_wrong_slot(store: MemoryStore) -> None:
    slot = hamt.slot_of(hamt.hash_name(b"a"), 0)
    wrong = (slot + 1) % 256
    link = Link(item(b"a").cid, b"%02X" % wrong + b"a", 1)
    cid = put_block(store, [link], shard(bitfield(link)))
    assert read_error(store, cid) == (
        f"failed to read directory {cid}:"
        f" entry b'a' is in slot {wrong}, its hash leads to {slot}"
    )


def test_read_rejects_lower_case_slot(store: MemoryStore) -> None:
    link = Link(item(b"a").cid, b"0a" + b"a", 1)
    cid = put_block(store, [link], shard(b"\x04\x00"))
    assert read_error(store, cid) == (
        f"failed to read directory {cid}:"
        " link name b'0aa' does not start with a slot in hex"
    )


def test_read_rejects_record_on_sub_shard(store: MemoryStore) -> None:
    inner_link = value_link(b"a", 1)
    inner = put_block(store, [inner_link], shard(bitfield(inner_link)))
    link = Link(inner, b"00", 10)
    cid = put_block(store, [link], shard(b"\x01", entry_records=(b"r",)))
    assert read_error(store, cid) == (
        f"failed to read directory {cid}: sub-shard link b'00' has an entry record"
    )


def test_read_rejects_deep_hamt(store: MemoryStore) -> None:
    chain = [put_block(store, [value_link(b"a")], shard(b"\x00"))]
    for _ in range(8):
        chain.append(put_block(store, [Link(chain[-1], b"00", 1)], shard(b"\x01")))
    assert read_error(store, chain[-1]) == (
        f"failed to read directory {chain[1]}:"
        f" sub-shard {chain[0]} is past the 8-level limit"
    )


def test_read_rejects_sub_shard_type(store: MemoryStore) -> None:
    inner = put_block(store, [], UnixfsData(DataType.DIRECTORY))
    cid = put_block(store, [Link(inner, b"00", 1)], shard(b"\x01"))
    assert read_error(store, cid) == (
        f"failed to read directory {cid}: sub-shard {inner} has UnixFS type DIRECTORY"
    )
