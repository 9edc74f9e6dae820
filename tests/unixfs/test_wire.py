"""Tests of the protobuf wire helpers: varints, keys, lengths, skipping."""

from __future__ import annotations

import pytest

from ipcs_fs.errors import InvalidArgumentError
from ipcs_fs.unixfs import wire

VARINTS = [
    (0, "00"),
    (1, "01"),
    (127, "7f"),
    (128, "8001"),
    (300, "ac02"),
    (16383, "ff7f"),
    (16384, "808001"),
    (262144, "808010"),
    ((1 << 63), "80808080808080808001"),
    (wire.MAX_UINT64, "ffffffffffffffffff01"),
]


@pytest.mark.parametrize(("value", "encoded"), VARINTS)
def test_varint_encoding(value: int, encoded: str) -> None:
    assert wire.encode_varint(value).hex() == encoded
    assert wire.varint_size(value) == len(encoded) // 2


@pytest.mark.parametrize(("value", "encoded"), VARINTS)
def test_varint_decoding(value: int, encoded: str) -> None:
    data = b"\xaa" + bytes.fromhex(encoded) + b"\xbb"
    assert wire.decode_varint(data, 1) == (value, 1 + len(encoded) // 2)


def test_varint_decoding_memoryview() -> None:
    assert wire.decode_varint(memoryview(b"\xac\x02"), 0) == (300, 2)


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        ("", "truncated varint at offset 0"),
        ("80", "truncated varint at offset 0"),
        ("ffff", "truncated varint at offset 0"),
        ("8000", "non-minimal varint at offset 0"),
        ("ff808080808080808000", "non-minimal varint at offset 0"),
        ("ffffffffffffffffff02", "varint over 64 bits at offset 0"),
        ("ffffffffffffffffff8001", "varint over 64 bits at offset 0"),
    ],
)
def test_varint_decoding_rejects(encoded: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        wire.decode_varint(bytes.fromhex(encoded), 0)
    assert str(caught.value) == message


@pytest.mark.parametrize("value", [-1, 1 << 64])
def test_varint_encoding_rejects_range(value: int) -> None:
    with pytest.raises(InvalidArgumentError, match="cannot encode"):
        wire.encode_varint(value)


def test_key_round_trip() -> None:
    key = wire.encode_key(1002, wire.LEN)
    assert key.hex() == "d23e"
    assert wire.decode_key(key, 0) == (1002, wire.LEN, 2)


def test_key_rejects_field_zero() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        wire.decode_key(b"\x02", 0)
    assert str(caught.value) == "invalid field number 0 at offset 0"


def test_len_field_round_trip() -> None:
    field = wire.encode_len_field(b"\x0a", b"abc")
    assert field == b"\x0a\x03abc"
    assert wire.decode_len(field, 1) == (2, 5)


def test_len_rejects_overrun() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        wire.decode_len(b"\x05abc", 0)
    assert str(caught.value) == (
        "length-delimited value at offset 0 runs past the end: 5 bytes declared, 3 left"
    )


def test_packed_varints() -> None:
    data = bytes.fromhex("01ac02808010")
    assert wire.decode_packed_varints(data, 0, len(data)) == [1, 300, 262144]


def test_packed_varints_overrun() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        wire.decode_packed_varints(b"\x01\xac\x02", 0, 2)
    assert str(caught.value) == "packed varints overrun their field at 0"


@pytest.mark.parametrize(
    ("wire_type", "value"),
    [
        (wire.VARINT, "ac02"),
        (wire.FIXED64, "0102030405060708"),
        (wire.LEN, "03616263"),
        (wire.FIXED32, "01020304"),
        # A group holding a varint field 1 and a nested group 2, closed by 7.
        (wire.START_GROUP, "0801" + "13" + "0802" + "14" + "3c"),
    ],
)
def test_skip_field(wire_type: int, value: str) -> None:
    data = bytes.fromhex(value) + b"\xff"
    assert wire.skip_field(data, 0, 7, wire_type) == len(data) - 1


@pytest.mark.parametrize(
    ("wire_type", "value", "message"),
    [
        (wire.END_GROUP, "", "invalid wire type 4 before offset 0"),
        (6, "", "invalid wire type 6 before offset 0"),
        (wire.FIXED32, "010203", "truncated fixed-width value at offset 0"),
        (wire.FIXED64, "01", "truncated fixed-width value at offset 0"),
        (wire.START_GROUP, "0801", "group not closed before offset 2"),
        (wire.START_GROUP, "0c", "group 7 closed by end of group 1 before offset 1"),
    ],
)
def test_skip_field_rejects(wire_type: int, value: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        wire.skip_field(bytes.fromhex(value), 0, 7, wire_type)
    assert str(caught.value) == message


def test_skip_field_bounds_group_nesting() -> None:
    data = b"\x0b" * 100
    with pytest.raises(InvalidArgumentError) as caught:
        wire.skip_field(data, 0, 1, wire.START_GROUP)
    assert str(caught.value) == "groups nested over 64 deep"
