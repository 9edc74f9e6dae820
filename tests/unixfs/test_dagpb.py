"""Tests of the dag-pb codec: canonical encoding and strict decoding."""

from __future__ import annotations

import pytest

from ipcs_fs.errors import InvalidArgumentError
from ipcs_fs.ids import DAG_PB, RAW, Cid
from ipcs_fs.unixfs.dagpb import Link, Node, decode_node, encode_node

LEAF = Cid.for_block(RAW, b"leaf")
OTHER = Cid.for_block(DAG_PB, b"other")


def link_bytes(cid: Cid = LEAF, rest: bytes = b"\x12\x00\x18\x04") -> bytes:
    """Return a PBNode Links field around a PBLink of ``cid`` and ``rest``."""
    body = b"\x0a\x24" + cid.raw + rest
    return b"\x12" + bytes((len(body),)) + body


def decode_error(block: bytes) -> str:
    with pytest.raises(InvalidArgumentError) as caught:
        decode_node(block)
    return str(caught.value)


def test_empty_directory_node_bytes() -> None:
    assert encode_node([], b"\x08\x01").hex() == "0a020801"


def test_link_written_with_empty_name_and_tsize() -> None:
    block = encode_node([Link(LEAF, b"", 4)], None)
    assert block == link_bytes()


def test_links_come_before_data() -> None:
    block = encode_node([Link(LEAF, b"", 4)], b"\x08\x02")
    assert block == link_bytes() + b"\x0a\x02\x08\x02"


def test_round_trip() -> None:
    links = (Link(LEAF, b"a", 4), Link(OTHER, b"b\xff", 1 << 40))
    node = decode_node(encode_node(links, b"payload"))
    assert node == Node(links, b"payload")


def test_absent_and_empty_data_differ() -> None:
    assert decode_node(b"").data is None
    assert decode_node(b"\x0a\x00").data == b""
    assert encode_node([], b"") == b"\x0a\x00"


def test_encode_rejects_unsorted_links() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        encode_node([Link(LEAF, b"b", 1), Link(LEAF, b"a", 1)], None)
    assert str(caught.value) == (
        "failed to encode dag-pb node: link 1 named b'a' sorts before the link"
        " before it, b'b'; sort links by name bytes"
    )


def test_equal_names_keep_their_order() -> None:
    links = (Link(LEAF, b"", 1), Link(OTHER, b"", 2))
    assert decode_node(encode_node(links, None)).links == links


def test_data_before_links_accepted() -> None:
    node = decode_node(b"\x0a\x01x" + link_bytes())
    assert node == Node((Link(LEAF, b"", 4),), b"x")


def test_link_without_name_or_tsize() -> None:
    node = decode_node(link_bytes(rest=b""))
    assert node.links == (Link(LEAF, b"", 0),)


PREFIX = "failed to decode dag-pb node: "


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (b"\x1a\x00", "unknown PBNode field 3 at offset 0"),
        (b"\x08\x01", "PBNode field 1 has wire type 0, expected 2"),
        (b"\x0a\x00\x0a\x00", "duplicate PBNode Data field at offset 2"),
        (
            link_bytes() + b"\x0a\x00" + link_bytes(),
            "PBNode links split by the Data field at offset 46",
        ),
        (b"\x0a\x05abc", "length-delimited value at offset 1 runs past the end"),
        (b"\x0a", "truncated varint at offset 1"),
        (b"\x12\x00", "PBLink without Hash at offset 2"),
        (link_bytes(rest=b"\x18\x04\x12\x00"), "PBLink Name after Tsize"),
        (link_bytes(rest=b"\x12\x00\x12\x00"), "duplicate PBLink Name at offset"),
        (link_bytes(rest=b"\x0a\x00"), "duplicate PBLink Hash at offset 40"),
        (link_bytes(rest=b"\x20\x00"), "unknown PBLink field 4 at offset 40"),
        (link_bytes(rest=b"\x1a\x00"), "PBLink Tsize has wire type 2, expected 0"),
        (link_bytes(rest=b"\x10\x00"), "PBLink Name has wire type 0, expected 2"),
        (b"\x12\x04\x0a\x02\x01\x55", "PBLink Hash at offset 2 is not a usable CID"),
    ],
)
def test_decode_rejects(block: bytes, message: str) -> None:
    error = decode_error(block)
    assert error.startswith(PREFIX + message), error


def test_decode_rejects_name_before_hash() -> None:
    body = b"\x12\x00\x0a\x24" + LEAF.raw
    error = decode_error(b"\x12" + bytes((len(body),)) + body)
    assert error == (
        PREFIX + "PBLink Hash after Name at offset 4;"
        " fields must be in the order Hash, Name, Tsize"
    )


def test_decode_rejects_field_overrunning_link() -> None:
    # The link claims 38 bytes, but its Name field reaches 2 bytes further.
    body = b"\x0a\x24" + LEAF.raw + b"\x12\x02"
    error = decode_error(b"\x12" + bytes((len(body),)) + body + b"ab")
    assert error == PREFIX + "PBLink field at 40 overruns its link"


def test_decode_accepts_memoryview() -> None:
    block = encode_node([Link(LEAF, b"n", 9)], b"d")
    assert decode_node(memoryview(block)) == decode_node(block)
