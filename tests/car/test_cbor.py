"""The DAG-CBOR subset of CAR headers: exact encodings and strict decoding."""

from __future__ import annotations

import pytest

from ipcs_fs.car import cbor
from ipcs_fs.errors import InvalidArgumentError
from ipcs_fs.ids import RAW, Cid

HELLO_CID = Cid.parse("bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e")


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "00"),
        (23, "17"),
        (24, "1818"),
        (255, "18ff"),
        (256, "190100"),
        (65535, "19ffff"),
        (65536, "1a00010000"),
        (2**32 - 1, "1affffffff"),
        (2**32, "1b0000000100000000"),
        (2**64 - 1, "1bffffffffffffffff"),
        (-1, "20"),
        (-24, "37"),
        (-25, "3818"),
        (b"", "40"),
        (b"\x01\x02", "420102"),
        ("", "60"),
        ("roots", "65726f6f7473"),
        ([], "80"),
        ([1, [2]], "82018102"),
        ({}, "a0"),
        (False, "f4"),
        (True, "f5"),
        (None, "f6"),
    ],
)
def test_encoding_is_shortest_form(value: object, encoded: str) -> None:
    assert cbor.encode(value).hex() == encoded
    assert cbor.decode(bytes.fromhex(encoded)) == value


def test_cid_is_tag_42_with_zero_prefix() -> None:
    encoded = cbor.encode(HELLO_CID)

    assert encoded[:4].hex() == "d82a5825"
    assert encoded[4:5] == b"\x00"
    assert encoded[5:] == HELLO_CID.raw
    assert cbor.decode(encoded) == HELLO_CID


def test_car_header_bytes() -> None:
    encoded = cbor.encode({"version": 1, "roots": [HELLO_CID]})

    assert encoded.hex() == (
        "a265726f6f747381d82a58250001551220"
        + HELLO_CID.hash_digest.hex()
        + "6776657273696f6e01"
    )


def test_map_keys_sorted_by_length_then_bytes() -> None:
    encoded = cbor.encode({"ccc": 3, "b": 2, "aa": 1, "a": 0})

    assert encoded.hex() == "a4" + "616100" + "616202" + "62616101" + "6363636303"
    assert list(cbor.decode(encoded)) == ["a", "b", "aa", "ccc"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1.5, "cannot encode float as DAG-CBOR: unsupported type"),
        ({1: 2}, "cannot encode map key 1 as DAG-CBOR: keys must be strings"),
        (2**64, "cannot encode 18446744073709551616 as DAG-CBOR: over 64 bits"),
    ],
)
def test_encode_rejects(value: object, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        cbor.encode(value)

    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        ("1805", "integer 5 not in its shortest form at offset 0"),
        ("190017", "integer 23 not in its shortest form at offset 0"),
        ("811900ff", "integer 255 not in its shortest form at offset 1"),
        ("9f00ff", "indefinite or reserved length 0x9f at offset 0"),
        ("5f40ff", "indefinite or reserved length 0x5f at offset 0"),
        ("a2616200616100", "map key 'a' at offset 4 is out of order or repeated"),
        ("a2616100616100", "map key 'a' at offset 4 is out of order or repeated"),
        ("a2626161006162", "map key 'b' at offset 5 is out of order or repeated"),
        ("a10100", "map key at offset 1 is not a text string"),
        ("c11a00000000", "tag 1 at offset 0; DAG-CBOR allows only tag 42 (CID)"),
        ("d82a4101", "CID at offset 0 is not a byte string starting with 0x00"),
        ("d82a6100", "CID at offset 0 is not a byte string starting with 0x00"),
        ("d82a420001", "CID at offset 0: "),
        ("f93c00", "float or reserved simple value 0xf9 at offset 0"),
        ("fb3ff8000000000000", "float or reserved simple value 0xfb at offset 0"),
        ("f7", "simple value 23 at offset 0; DAG-CBOR allows only"),
        ("f0", "simple value 16 at offset 0"),
        ("62c328", "text string at offset 0 is not valid UTF-8"),
        ("0000", "1 bytes after the value at offset 1"),
        ("43aabb", "value at offset 1 needs 3 bytes, but only 2 remain"),
        ("", "value at offset 0 needs 1 bytes, but only 0 remain"),
        ("81" * 66 + "00", "nesting deeper than 64 at offset 65"),
    ],
)
def test_decode_rejects(encoded: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        cbor.decode(bytes.fromhex(encoded))

    assert message in str(caught.value)


def test_round_trip_of_nested_values() -> None:
    value = {
        "roots": [HELLO_CID, Cid.for_block(RAW, b"")],
        "version": 1,
        "extra": {"list": [b"\x00", "text", -1000, None, True]},
    }

    assert cbor.decode(cbor.encode(value)) == value
