"""Tests of the UnixFS Data codec, with the ipcs-fs extension fields."""

from __future__ import annotations

import pytest

from ipcs_fs.errors import InvalidArgumentError
from ipcs_fs.unixfs.data import (
    DataType,
    UnixfsData,
    UnixTime,
    decode_data,
    encode_data,
)


def test_file_node_bytes_match_kubo() -> None:
    message = UnixfsData(DataType.FILE, filesize=262145, blocksizes=(262144, 1))
    # Type 2, filesize, then one key per blocksize (not packed).
    assert encode_data(message).hex() == "0802" + "18818010" + "20808010" + "2001"


def test_directory_bytes() -> None:
    assert encode_data(UnixfsData(DataType.DIRECTORY)).hex() == "0801"


def test_hamt_shard_bytes() -> None:
    message = UnixfsData(
        DataType.HAMT_SHARD, data=b"\x01\x80", hash_type=0x22, fanout=256
    )
    assert encode_data(message).hex() == "0805" + "12020180" + "2822" + "308002"


def test_extension_fields_bytes() -> None:
    message = UnixfsData(
        DataType.DIRECTORY, layer_header=b"H", entry_records=(b"a", b"")
    )
    assert encode_data(message).hex() == "0801" + "ca3e0148" + "d23e0161" + "d23e00"


def test_round_trip_every_field() -> None:
    message = UnixfsData(
        DataType.FILE,
        data=b"content",
        filesize=7 + 300,
        blocksizes=(100, 200),
        hash_type=0x22,
        fanout=256,
        mode=0o4755,
        mtime=UnixTime(1_700_000_000, 123_456_789),
        layer_header=b"header",
        entry_records=(b"r1", b"", b"r3"),
    )
    assert decode_data(encode_data(message)) == message


def test_negative_mtime_round_trip() -> None:
    message = UnixfsData(DataType.SYMLINK, mtime=UnixTime(-1, 5))
    encoded = encode_data(message)
    # int64 -1 takes ten varint bytes, nanoseconds are fixed32.
    assert encoded.hex() == "0804" + "4210" + "08ffffffffffffffffff01" + "1505000000"
    assert decode_data(encoded) == message


def test_zero_nanoseconds_omitted() -> None:
    encoded = encode_data(UnixfsData(DataType.FILE, mtime=UnixTime(5)))
    assert encoded.hex() == "0802" + "42020805"


def test_packed_blocksizes_accepted() -> None:
    message = decode_data(bytes.fromhex("0802" + "2204" + "01ac0205" + "2007"))
    assert message.blocksizes == (1, 300, 5, 7)


@pytest.mark.parametrize(
    "unknown",
    [
        "4801",  # field 9, varint
        "510102030405060708",  # field 10, fixed64
        "5a03616263",  # field 11, length-delimited
        "6501020304",  # field 12, fixed32
        "6b08016c",  # field 13, a group
        "f83e07",  # field 1007, varint
    ],
)
def test_unknown_fields_skipped(unknown: str) -> None:
    encoded = bytes.fromhex("0802" + unknown + "1805")
    assert decode_data(encoded) == UnixfsData(DataType.FILE, filesize=5)


def test_unknown_field_in_mtime_skipped() -> None:
    encoded = bytes.fromhex("0802" + "4204" + "0805" + "1801")
    assert decode_data(encoded).mtime == UnixTime(5, 0)


def decode_error(hex_message: str) -> str:
    with pytest.raises(InvalidArgumentError) as caught:
        decode_data(bytes.fromhex(hex_message))
    return str(caught.value)


PREFIX = "failed to decode UnixFS Data: "


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        ("", "missing required Type field"),
        ("1805", "missing required Type field"),
        ("0809", "unknown Type 9 at offset 0"),
        ("08020801", "duplicate field type at offset 2"),
        ("0a0102", "field type has wire type 2, expected 0, at offset 0"),
        ("08021005", "field data has wire type 0, expected 2, at offset 2"),
        ("08022501000000", "field blocksizes has wire type 5, expected 2"),
        ("0802ca3e0141ca3e0142", "duplicate field layer_header at offset 6"),
        ("0802d03e01", "field entry record has wire type 0, expected 2"),
        ("08023880808080 10", "mode 4294967296 over 32 bits"),
        ("0802 4205 15ffc99a3b", "mtime at offset 2 without"),
        (
            "0802 4207 0801 1500ca9a3b",
            "invalid UnixFS mtime nanoseconds 1000000000: not 0 to 999999999",
        ),
        ("0802 4204 08010801", "duplicate seconds in the mtime"),
        ("0802 4203 150102", "truncated nanoseconds in the mtime"),
        ("0802 4202 1001", "field mtime nanoseconds has wire type"),
        ("08021205", "length-delimited value at offset 3 runs past the end"),
        ("0802f83e", "truncated varint at offset 4"),
    ],
)
def test_decode_rejects(encoded: str, message: str) -> None:
    error = decode_error(encoded)
    assert error.startswith(PREFIX + message), error


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (UnixfsData(DataType.FILE, mode=1 << 32), "invalid UnixFS mode 4294967296"),
        (
            UnixfsData(DataType.FILE, mtime=UnixTime(1 << 63)),
            (
                "invalid UnixFS mtime UnixTime(seconds=9223372036854775808,"
                " nanoseconds=0): seconds not int64"
            ),
        ),
        (
            UnixfsData(DataType.FILE, mtime=UnixTime(0, -1)),
            "invalid UnixFS mtime nanoseconds -1",
        ),
        (UnixfsData(DataType.FILE, filesize=-1), "cannot encode -1 as a varint"),
    ],
)
def test_encode_rejects(message: UnixfsData, error: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        encode_data(message)
    assert str(caught.value).startswith(error)
