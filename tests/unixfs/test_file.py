"""Tests of the file builder (kubo-identical CIDs) and the file reader."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from ipcs_fs.errors import (
    DataLossError,
    FailedPreconditionError,
    InvalidArgumentError,
    ResourceExhaustedError,
)
from ipcs_fs.ids import DAG_PB, RAW, Cid
from ipcs_fs.unixfs import file as file_module
from ipcs_fs.unixfs.dagpb import Link, decode_node, encode_node
from ipcs_fs.unixfs.data import DataType, UnixfsData, decode_data, encode_data
from ipcs_fs.unixfs.file import CHUNK_SIZE, FileBuilder, FileDag, read_file

from .conftest import MemoryStore

# CIDv1 from kubo's `ipfs add --cid-version=1`.
VECTORS = [
    (b"", "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"),
    (b"hello world", "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"),
    (bytes(262145), "bafybeigllfqgfpqydppr6cmv56g7ax4wyhruzswvcefv6j5kj77nzttfki"),
    (bytes(1 << 20), "bafybeiggzq4ryi7hscq5hzvzcnk4urnxt3asp37dhgvnjilf7exskximla"),
    (
        bytes(174 * CHUNK_SIZE),
        "bafybeibxsa3ioclowpaq7b6gxl65gzqneopfr3fnhedak6sqr4bjz5lnyq",
    ),
]
VECTOR_IDS = ["empty", "hello-world", "262145-zeros", "1MiB-zeros", "174-chunks"]


def build(store: MemoryStore, *pieces: bytes | bytearray | memoryview) -> FileDag:
    builder = FileBuilder(store.put)
    for piece in pieces:
        builder.write(piece)
    return builder.finish()


def pieces_of(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


@pytest.mark.parametrize(("content", "expected"), VECTORS, ids=VECTOR_IDS)
def test_kubo_vector(store: MemoryStore, content: bytes, expected: str) -> None:
    dag = build(store, content)
    assert str(dag.cid) == expected
    assert dag.size == len(content)


@pytest.mark.parametrize(("content", "expected"), VECTORS, ids=VECTOR_IDS)
@pytest.mark.parametrize("piece_size", [1000, 262143, 262144, 300001])
def test_kubo_vector_in_pieces(
    store: MemoryStore, content: bytes, expected: str, piece_size: int
) -> None:
    dag = build(store, *pieces_of(content, piece_size))
    assert str(dag.cid) == expected


def test_tsize_is_total_block_bytes(store: MemoryStore) -> None:
    dag = build(store, random.Random(1).randbytes(3 * CHUNK_SIZE + 5))
    assert dag.tsize == sum(len(block) for block in store.blocks.values())
    assert len(store.blocks) == 5


def test_small_file_is_its_leaf(store: MemoryStore) -> None:
    dag = build(store, b"abc")
    assert dag == FileDag(Cid.for_block(RAW, b"abc"), 3, 3)


def test_one_full_chunk_is_its_leaf(store: MemoryStore) -> None:
    content = bytes(range(256)) * 1024
    dag = build(store, content)
    assert dag.cid == Cid.for_block(RAW, content)


def test_internal_node_shape(store: MemoryStore) -> None:
    dag = build(store, bytes(2 * CHUNK_SIZE + 7))
    node = decode_node(store.get(dag.cid))
    leaf = Cid.for_block(RAW, bytes(CHUNK_SIZE))
    tail = Cid.for_block(RAW, bytes(7))
    assert node.links == (
        Link(leaf, b"", CHUNK_SIZE),
        Link(leaf, b"", CHUNK_SIZE),
        Link(tail, b"", 7),
    )
    assert decode_data(node.data or b"") == UnixfsData(
        DataType.FILE,
        filesize=2 * CHUNK_SIZE + 7,
        blocksizes=(CHUNK_SIZE, CHUNK_SIZE, 7),
    )


def test_175_chunks_make_two_levels(store: MemoryStore) -> None:
    dag = build(store, bytes(175 * CHUNK_SIZE))
    root = decode_node(store.get(dag.cid))
    first, second = (decode_node(store.get(link.cid)) for link in root.links)
    assert len(root.links) == 2
    assert len(first.links) == 174
    assert len(second.links) == 1
    assert decode_data(root.data or b"").blocksizes == (174 * CHUNK_SIZE, CHUNK_SIZE)


def test_aligned_chunks_are_not_copied() -> None:
    content = random.Random(5).randbytes(2 * CHUNK_SIZE)
    received: list[object] = []
    builder = FileBuilder(lambda cid, block: received.append(block))
    builder.write(content)
    leaves = received[:2]
    assert all(isinstance(leaf, memoryview) for leaf in leaves)
    assert all(leaf.obj is content for leaf in leaves)  # type: ignore[attr-defined]


def test_zero_chunks_stored_once() -> None:
    received: list[tuple[Cid, object]] = []
    builder = FileBuilder(lambda cid, block: received.append((cid, block)))
    builder.write(bytes(4 * CHUNK_SIZE))
    dag = builder.finish()
    leaves = [cid for cid, _ in received if cid.codec == RAW]
    assert str(dag.cid) == "bafybeiggzq4ryi7hscq5hzvzcnk4urnxt3asp37dhgvnjilf7exskximla"
    assert [str(cid) for cid in leaves] == [
        "bafkreiekhhjkxu4ztk3tyng3er3ijhg56mb44oe3gwbgquhzu4afrg2ksa"
    ]


def test_reused_write_buffer(store: MemoryStore) -> None:
    content = random.Random(2).randbytes(CHUNK_SIZE + 1000)
    buffer = bytearray(700)
    builder = FileBuilder(store.put)
    for start in range(0, len(content), 700):
        piece = content[start : start + 700]
        buffer[: len(piece)] = piece
        builder.write(memoryview(buffer)[: len(piece)])
        buffer[:] = bytes(700)
    assert builder.finish() == build(MemoryStore(), content)


def test_finish_twice_fails(store: MemoryStore) -> None:
    builder = FileBuilder(store.put)
    builder.finish()
    with pytest.raises(FailedPreconditionError) as caught:
        builder.finish()
    assert str(caught.value) == "failed to write file: builder finished"
    with pytest.raises(FailedPreconditionError):
        builder.write(b"x")


def balanced_reference(leaves: list[FileDag], max_links: int, put: object) -> FileDag:
    """Build a balanced tree the way kubo's balanced layout does, recursively.

    kubo starts from the first leaf as root and, while leaves remain, makes
    a new root one level deeper holding the old root, then fills it.
    """
    remaining = iter(leaves)
    pending = [next(remaining)]

    def take() -> FileDag | None:
        return pending.pop() if pending else next(remaining, None)

    def node_of(children: list[FileDag]) -> FileDag:
        sizes = tuple(child.size for child in children)
        data = encode_data(
            UnixfsData(DataType.FILE, filesize=sum(sizes), blocksizes=sizes)
        )
        block = encode_node([Link(c.cid, b"", c.tsize) for c in children], data)
        tsize = len(block) + sum(child.tsize for child in children)
        return FileDag(Cid.for_block(DAG_PB, block), sum(sizes), tsize)

    def fill(children: list[FileDag], depth: int) -> FileDag:
        while len(children) < max_links:
            if depth == 1:
                child = take()
            else:
                first = take()
                if first is None:
                    break
                pending.append(first)
                child = fill([], depth - 1)
            if child is None:
                break
            children.append(child)
        return node_of(children)

    root = take()
    assert root is not None
    depth = 1
    while True:
        following = take()
        if following is None:
            return root
        pending.append(following)
        root = fill([root], depth)
        depth += 1


@pytest.mark.parametrize("chunks", [*range(1, 30), 64, 65, 81, 82, 100])
def test_layout_matches_kubo_algorithm(
    monkeypatch: pytest.MonkeyPatch, chunks: int
) -> None:
    monkeypatch.setattr(file_module, "CHUNK_SIZE", 4)
    monkeypatch.setattr(file_module, "MAX_LINKS", 3)
    content = random.Random(chunks).randbytes(4 * chunks - 1)
    leaves = [
        FileDag(Cid.for_block(RAW, chunk), len(chunk), len(chunk))
        for chunk in pieces_of(content, 4)
    ]
    expected = balanced_reference(leaves, 3, None)
    assert build(MemoryStore(), *pieces_of(content, 5)) == expected


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 5 * CHUNK_SIZE + 3]
)
def test_read_round_trip(store: MemoryStore, size: int) -> None:
    content = random.Random(size).randbytes(size)
    dag = build(store, content)
    assert b"".join(read_file(store.get, dag.cid)) == content


def test_read_175_chunks(store: MemoryStore) -> None:
    content = bytes(175 * CHUNK_SIZE)
    dag = build(store, content)
    pieces = list(read_file(store.get, dag.cid))
    assert len(pieces) == 175
    assert b"".join(pieces) == content


def put_node(
    store: MemoryStore,
    links: list[Link],
    blocksizes: tuple[int, ...],
    filesize: int | None,
    data: bytes | None = None,
    kind: DataType = DataType.FILE,
) -> Cid:
    message = UnixfsData(kind, data=data, filesize=filesize, blocksizes=blocksizes)
    block = encode_node(links, encode_data(message))
    cid = Cid.for_block(DAG_PB, block)
    store.put(cid, block)
    return cid


def put_leaf(store: MemoryStore, content: bytes) -> Link:
    cid = Cid.for_block(RAW, content)
    store.put(cid, content)
    return Link(cid, b"", len(content))


def test_read_inline_data_then_children(store: MemoryStore) -> None:
    leaf = put_leaf(store, b"world")
    root = put_node(store, [leaf], (5,), 11, data=b"hello ")
    assert list(read_file(store.get, root)) == [b"hello ", b"world"]


def test_read_rejects_wrong_blocksize(store: MemoryStore) -> None:
    good = put_leaf(store, b"good")
    bad = put_leaf(store, b"short")
    root = put_node(store, [good, bad], (4, 6), 10)
    reader = read_file(store.get, root)
    assert next(reader) == b"good"
    with pytest.raises(DataLossError) as caught:
        next(reader)
    assert str(caught.value) == (
        f"failed to read file {root}: child {bad.cid} contains 5 bytes,"
        " but blocksizes declares 6"
    )


def test_read_rejects_wrong_filesize(store: MemoryStore) -> None:
    root = put_node(store, [put_leaf(store, b"abc")], (3,), 4)
    with pytest.raises(DataLossError) as caught:
        list(read_file(store.get, root))
    assert str(caught.value) == (
        f"failed to read file {root}: filesize 4 declared,"
        " but its data and blocksizes add up to 3"
    )


def test_read_rejects_child_node_size(store: MemoryStore) -> None:
    child = put_node(store, [put_leaf(store, b"abc")], (3,), 3)
    root = put_node(store, [Link(child, b"", 100)], (4,), 4)
    with pytest.raises(DataLossError) as caught:
        list(read_file(store.get, root))
    assert str(caught.value) == (
        f"failed to read file {root}: child {child} contains 3 bytes,"
        " but blocksizes declares 4"
    )


def test_read_rejects_blocksizes_count(store: MemoryStore) -> None:
    root = put_node(store, [put_leaf(store, b"abc")], (3, 0), 3)
    with pytest.raises(DataLossError) as caught:
        list(read_file(store.get, root))
    assert str(caught.value) == (
        f"failed to read file {root}: 2 blocksizes declared for 1 links"
    )


def test_read_rejects_directory(store: MemoryStore) -> None:
    root = put_node(store, [], (), None, kind=DataType.DIRECTORY)
    with pytest.raises(InvalidArgumentError) as caught:
        list(read_file(store.get, root))
    assert str(caught.value) == (
        f"failed to read file {root}: UnixFS type DIRECTORY is not a file"
    )


def test_read_rejects_malformed_node(store: MemoryStore) -> None:
    block = b"\x1a\x00"
    cid = Cid.for_block(DAG_PB, block)
    store.put(cid, block)
    with pytest.raises(InvalidArgumentError) as caught:
        list(read_file(store.get, cid))
    assert str(caught.value) == (
        f"failed to read file {cid}: failed to decode dag-pb node:"
        " unknown PBNode field 3 at offset 0"
    )


def chain(store: MemoryStore, depth: int) -> list[Cid]:
    """Return the nodes above a single leaf, the root last."""
    link = put_leaf(store, b"deep")
    nodes = []
    for _ in range(depth):
        nodes.append(put_node(store, [link], (4,), 4))
        link = Link(nodes[-1], b"", 0)
    return nodes


def test_read_depth_limit(store: MemoryStore) -> None:
    assert list(read_file(store.get, chain(store, 4)[-1], max_depth=3)) == [b"deep"]
    nodes = chain(store, 5)
    with pytest.raises(ResourceExhaustedError) as caught:
        list(read_file(store.get, nodes[-1], max_depth=3))
    assert str(caught.value) == (
        f"failed to read file {nodes[1]}: child node {nodes[0]} is at depth 4,"
        " past the limit of 3"
    )


def iterate_until_error(reader: Iterator[bytes]) -> list[bytes]:
    received: list[bytes] = []
    with pytest.raises(DataLossError):
        received.extend(reader)
    return received


def test_read_yields_nothing_of_a_bad_child(store: MemoryStore) -> None:
    bad_child = put_node(store, [put_leaf(store, b"xyz")], (3,), 3)
    root = put_node(
        store, [put_leaf(store, b"ok"), Link(bad_child, b"", 0)], (2, 9), 11
    )
    assert iterate_until_error(read_file(store.get, root)) == [b"ok"]


def test_whole_bytes_chunks_reach_put_as_written() -> None:
    chunks = [random.Random(index).randbytes(CHUNK_SIZE) for index in range(2)]
    tail = b"the last chunk"
    received: list[object] = []
    builder = FileBuilder(lambda cid, block: received.append(block))

    for chunk in [*chunks, tail]:
        builder.write(chunk)
    dag = builder.finish()

    assert received[0] is chunks[0]
    assert received[1] is chunks[1]
    assert received[2] is tail
    assert dag == build(MemoryStore(), b"".join(chunks) + tail)


def test_small_bytes_then_more_data(store: MemoryStore) -> None:
    content = random.Random(3).randbytes(CHUNK_SIZE + 5000)
    first = content[:1000]
    buffer = bytearray(content[1000:])

    dag = build(store, first, buffer)

    assert dag == build(MemoryStore(), content)
    assert b"".join(read_file(store.get, dag.cid)) == content
