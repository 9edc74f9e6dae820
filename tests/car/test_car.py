"""CARv1 streams: exact bytes written, and every malformed input rejected
with the byte offset named."""

from __future__ import annotations

import hashlib
import io

import pytest

from ipcs_fs.car import MAX_BLOCK_SIZE, CarReader, CarWriter, encode_header
from ipcs_fs.errors import DataLossError, InvalidArgumentError
from ipcs_fs.ids import DAG_PB, RAW, Cid
from ipcs_fs.unixfs import encode_node
from ipcs_fs.unixfs.wire import encode_varint

HELLO = b"hello world"
HELLO_CID = Cid.for_block(RAW, HELLO)
NODE = encode_node([], b"\x08\x01")
NODE_CID = Cid.for_block(DAG_PB, NODE)
# The header of a CAR with root HELLO_CID, as go-car writes it: 58 bytes of
# DAG-CBOR after a one-byte varint.
HEADER = encode_header([HELLO_CID])


def car_bytes(roots: list[Cid], blocks: list[tuple[Cid, bytes]]) -> bytes:
    stream = io.BytesIO()
    writer = CarWriter(stream, roots)
    for cid, block in blocks:
        writer.write(cid, block)
    assert writer.size == len(stream.getvalue())
    return stream.getvalue()


def read_all(data: bytes) -> tuple[tuple[Cid, ...], list[tuple[Cid, bytes]]]:
    reader = CarReader(io.BytesIO(data), source="test.car")
    return reader.roots, list(reader)


def rejection(data: bytes) -> str:
    with pytest.raises(InvalidArgumentError) as caught:
        read_all(data)
    return str(caught.value)


def test_header_bytes() -> None:
    assert HEADER[0] == 58
    assert HEADER[1:].hex().startswith("a265726f6f747381d82a5825000155")
    assert HEADER.endswith(b"gversion\x01")


def test_section_bytes() -> None:
    data = car_bytes([HELLO_CID], [(HELLO_CID, HELLO)])

    assert data == HEADER + bytes([36 + 11]) + HELLO_CID.raw + HELLO


def test_round_trip_keeps_order_and_roots() -> None:
    blocks = [(NODE_CID, NODE), (HELLO_CID, HELLO), (Cid.for_block(RAW, b""), b"")]

    roots, read = read_all(car_bytes([NODE_CID, HELLO_CID], blocks))

    assert roots == (NODE_CID, HELLO_CID)
    assert read == blocks


def test_reads_cid_version_0_sections() -> None:
    v0 = NODE_CID.raw[2:]  # 0x12 0x20 and the digest
    data = HEADER + encode_varint(len(v0) + len(NODE)) + v0 + NODE

    _, read = read_all(data)

    assert read == [(NODE_CID, NODE)]


def test_offset_counts_consumed_bytes() -> None:
    data = car_bytes([HELLO_CID], [(HELLO_CID, HELLO)])
    reader = CarReader(io.BytesIO(data), source="test.car")

    assert reader.offset == len(HEADER)
    list(reader)
    assert reader.offset == len(data)


def test_writer_needs_a_root() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        CarWriter(io.BytesIO(), [])

    assert str(caught.value) == "failed to write CAR header: no root CID given"


def test_rejects_empty_stream() -> None:
    assert rejection(b"") == (
        "invalid CAR test.car at byte 0: the stream ends inside a length varint"
    )


def test_rejects_zero_header_length() -> None:
    assert rejection(b"\x00") == (
        "invalid CAR test.car at byte 0: header length 0 is not between 1 and 1048576"
    )


def test_rejects_truncated_header() -> None:
    assert rejection(HEADER[:30]) == (
        "invalid CAR test.car at byte 1: the stream ends after 29 of the 58 bytes"
        " announced"
    )


def test_rejects_header_that_is_not_cbor() -> None:
    message = rejection(b"\x02\x9f\xff")

    assert message.startswith("invalid CAR test.car at byte 1: header is not valid")


def test_rejects_carv2() -> None:
    header = bytes.fromhex("a16776657273696f6e02")  # {"version": 2}

    message = rejection(encode_varint(len(header)) + header)

    assert message.startswith("invalid CAR test.car at byte 1: version 2; only CARv1")


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("a0", "version None; only CARv1 is read"),
        ("80", "header is not a map"),
        ("a165726f6f7473806776657273696f6e01", "header is not valid DAG-CBOR"),
        ("a265726f6f7473806776657273696f6e01", "roots is not a non-empty list"),
        ("a265726f6f7473816161" + "6776657273696f6e01", "roots contains a value"),
        (
            "a3616101" + "65726f6f747380" + "6776657273696f6e01",
            "header keys ['a', 'roots', 'version'], expected roots and version",
        ),
    ],
)
def test_rejects_bad_header(header: str, problem: str) -> None:
    encoded = bytes.fromhex(header)

    message = rejection(encode_varint(len(encoded)) + encoded)

    assert message.startswith("invalid CAR test.car at byte 1: ")
    assert problem in message


def test_rejects_truncated_section_with_its_offset() -> None:
    data = car_bytes([HELLO_CID], [(HELLO_CID, HELLO), (NODE_CID, NODE)])

    message = rejection(data[:-3])

    second = len(HEADER) + 1 + 36 + 11
    assert message == (
        f"invalid CAR test.car at byte {second + 1}: the stream ends after"
        f" {36 + len(NODE) - 3} of the {36 + len(NODE)} bytes announced"
    )


def test_rejects_section_cut_inside_its_length() -> None:
    data = HEADER + b"\x80"

    assert rejection(data) == (
        f"invalid CAR test.car at byte {len(HEADER)}: the stream ends inside a"
        " length varint"
    )


def test_rejects_non_minimal_varint() -> None:
    data = HEADER + b"\xaf\x00" + HELLO_CID.raw + HELLO

    assert rejection(data) == (
        f"invalid CAR test.car at byte {len(HEADER)}: length varint not in"
        " shortest form"
    )


def test_rejects_overlong_varint() -> None:
    assert rejection(HEADER + b"\xff" * 10) == (
        f"invalid CAR test.car at byte {len(HEADER)}: length varint longer than 9"
    )


def test_rejects_empty_section() -> None:
    assert rejection(HEADER + b"\x00").startswith(
        f"invalid CAR test.car at byte {len(HEADER)}: section length 0 is not between"
    )


def test_rejects_oversized_section() -> None:
    length = MAX_BLOCK_SIZE + 129

    assert rejection(HEADER + encode_varint(length)) == (
        f"invalid CAR test.car at byte {len(HEADER)}: section length {length} is"
        f" not between 1 and {MAX_BLOCK_SIZE + 128}"
    )


def test_rejects_unsupported_multihash() -> None:
    identity = bytes((0x01, RAW, 0x00, 0x05)) + b"hello"
    data = HEADER + encode_varint(len(identity)) + identity

    message = rejection(data)

    assert message.startswith(
        f"invalid CAR test.car at byte {len(HEADER) + 1}: invalid CID: unsupported"
        " multihash 0x0 of 5 bytes"
    )


def test_rejects_cid_longer_than_section() -> None:
    data = HEADER + b"\x05" + HELLO_CID.raw[:5]

    assert rejection(data) == (
        f"invalid CAR test.car at byte {len(HEADER) + 1}: invalid CID: the CID runs"
        " past the end of the section"
    )


def test_block_that_does_not_match_its_cid() -> None:
    data = car_bytes([HELLO_CID], [(HELLO_CID, b"hello WORLD")])

    with pytest.raises(DataLossError) as caught:
        read_all(data)

    actual = hashlib.sha256(b"hello WORLD").hexdigest()
    assert str(caught.value) == (
        f"failed to read block {HELLO_CID} from CAR test.car at byte {len(HEADER)}:"
        f" content does not match its CID (sha256 of the 11 bytes is {actual})"
    )
