"""Encoding of the format's own messages: canonical bytes and strict decoding."""

import pytest

from ipcs_fs.errors import InvalidArgumentError
from ipcs_fs.layer.records import (
    Entry,
    Kind,
    LayerHeader,
    TarStreamKind,
    TarStreamNode,
    Xattr,
    decode_entry,
    decode_layer_header,
    decode_tar_stream_node,
    encode_entry,
    encode_layer_header,
    encode_tar_stream_node,
)


def test_entry_minimal_bytes():
    assert encode_entry(Entry(kind=Kind.FILE)) == bytes.fromhex("0801")


def test_entry_round_trip_all_fields():
    entry = Entry(
        kind=Kind.CHAR,
        mode=0o4755,
        uid=1 << 40,
        gid=7,
        uname=b"r\xffoot",
        gname=b"",
        mtime_seconds=-5,
        mtime_nanos=999_999_999,
        size=0,
        link_target=b"",
        devmajor=4,
        devminor=64,
        xattrs=[Xattr(b"user.a", b"x\n\x00y"), Xattr(b"security.capability", b"")],
        implied=False,
    )
    assert decode_entry(encode_entry(entry)) == entry


def test_entry_negative_mtime_zigzag():
    data = encode_entry(Entry(kind=Kind.DIR, mtime_seconds=-1))
    assert data == bytes.fromhex("0802" + "3801")


def test_entry_unknown_field_rejected():
    data = encode_entry(Entry(kind=Kind.FILE)) + bytes.fromhex("7801")
    with pytest.raises(InvalidArgumentError, match="unknown field 15"):
        decode_entry(data)


def test_entry_fields_out_of_order_rejected():
    with pytest.raises(InvalidArgumentError, match="out of order"):
        decode_entry(bytes.fromhex("1001" + "0801"))


def test_entry_unknown_kind_rejected():
    with pytest.raises(InvalidArgumentError, match="kind 42 is not known"):
        decode_entry(bytes.fromhex("082a"))


def test_entry_mode_over_12_bits_rejected():
    with pytest.raises(InvalidArgumentError, match="more than 12 bits"):
        decode_entry(bytes.fromhex("0801" + "10808004"))


def test_layer_header_round_trip():
    header = LayerHeader(
        diff_id=bytes(range(32)),
        tar_size=10240,
        root=Entry(kind=Kind.DIR, mode=0o755),
        entry_count=3,
        content_size=11,
    )
    assert decode_layer_header(encode_layer_header(header)) == header


def test_layer_header_other_version_rejected():
    header = LayerHeader(diff_id=bytes(32), tar_size=0, version=2)
    with pytest.raises(
        InvalidArgumentError, match="unsupported layer format version 2"
    ):
        decode_layer_header(encode_layer_header(header))


def test_tar_stream_node_round_trip():
    node = TarStreamNode(
        kind=TarStreamKind.LEAF,
        tar_size=1024,
        compression=1,
        records=b"\x28\xb5",
        records_size=9,
    )
    assert decode_tar_stream_node(encode_tar_stream_node(node)) == node


def test_tar_stream_node_unknown_compression_rejected():
    data = encode_tar_stream_node(
        TarStreamNode(kind=TarStreamKind.LEAF, tar_size=0, compression=2)
    )
    with pytest.raises(InvalidArgumentError, match="compression 2 is not known"):
        decode_tar_stream_node(data)
