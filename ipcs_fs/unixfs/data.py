"""The UnixFS ``Data`` message, carried in the Data field of dag-pb nodes.

The message, from the UnixFS specification (proto2)::

    message Data {
      required DataType Type = 1;  // Raw 0, Directory 1, File 2, Metadata 3,
                                   // Symlink 4, HAMTShard 5
      optional bytes Data = 2;     // file bytes, symlink target, HAMT bitfield
      optional uint64 filesize = 3;
      repeated uint64 blocksizes = 4;  // content bytes under each link
      optional uint64 hashType = 5;    // HAMT hash function, 0x22 = murmur3
      optional uint64 fanout = 6;      // HAMT slots per shard node
      optional uint32 mode = 7;
      optional IPFSTimestamp mtime = 8;  // Seconds = 1 (int64),
                                         // FractionalNanoseconds = 2 (fixed32)
    }

ipcs-fs adds two fields with numbers far above the standard ones, which Go
and JS UnixFS readers skip as unknown:

- 1001, the *layer header* (bytes): on a layer's root node only.
- 1002, the *entry records* (repeated bytes): the metadata of each directory
  entry, one record per link of the node, in link order. A link to a HAMT
  sub-shard has an empty record. A node whose records would all be empty
  writes none, so that it stays byte-identical to what kubo writes.

Encoding writes fields in field-number order and ``blocksizes`` one key per
value (not packed), as kubo does. Decoding accepts packed ``blocksizes``,
skips every other unknown field, and rejects a known field with the wrong
wire type or given twice, a missing Type, an unknown Type value, a mode over
32 bits and nanoseconds outside 0 to 999999999.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple, cast

from ..errors import InvalidArgumentError
from . import wire

__all__ = [
    "ENTRY_RECORDS_FIELD",
    "HASH_MURMUR3_X64_64",
    "LAYER_HEADER_FIELD",
    "DataType",
    "UnixTime",
    "UnixfsData",
    "decode_data",
    "encode_data",
]

# The multicodec of murmur3-x64-64, the one hashType UnixFS HAMTs use.
HASH_MURMUR3_X64_64 = 0x22
LAYER_HEADER_FIELD = 1001
ENTRY_RECORDS_FIELD = 1002

_MAX_UINT32 = (1 << 32) - 1
_MAX_NANOSECONDS = 999_999_999
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_FIXED32 = struct.Struct("<I")


class DataType(IntEnum):
    """The UnixFS node types (the ``Type`` field)."""

    RAW = 0
    DIRECTORY = 1
    FILE = 2
    METADATA = 3
    SYMLINK = 4
    HAMT_SHARD = 5


class UnixTime(NamedTuple):
    """A UnixFS mtime: seconds since the epoch and nanoseconds (0 to 999999999)."""

    seconds: int
    nanoseconds: int = 0


@dataclass(frozen=True, slots=True)
class UnixfsData:
    """A UnixFS Data message. None (or an empty tuple) means the field is absent."""

    type: DataType
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: tuple[int, ...] = ()
    hash_type: int | None = None
    fanout: int | None = None
    mode: int | None = None
    mtime: UnixTime | None = None
    layer_header: bytes | None = None
    entry_records: tuple[bytes, ...] = ()


_KEY_TYPE = wire.encode_key(1, wire.VARINT)
_KEY_DATA = wire.encode_key(2, wire.LEN)
_KEY_FILESIZE = wire.encode_key(3, wire.VARINT)
_KEY_BLOCKSIZE = wire.encode_key(4, wire.VARINT)
_KEY_HASH_TYPE = wire.encode_key(5, wire.VARINT)
_KEY_FANOUT = wire.encode_key(6, wire.VARINT)
_KEY_MODE = wire.encode_key(7, wire.VARINT)
_KEY_MTIME = wire.encode_key(8, wire.LEN)
_KEY_SECONDS = wire.encode_key(1, wire.VARINT)
_KEY_NANOSECONDS = wire.encode_key(2, wire.FIXED32)
_KEY_LAYER_HEADER = wire.encode_key(LAYER_HEADER_FIELD, wire.LEN)
_KEY_ENTRY_RECORD = wire.encode_key(ENTRY_RECORDS_FIELD, wire.LEN)


def encode_data(message: UnixfsData) -> bytes:
    """Encode ``message`` as kubo would, with the ipcs-fs fields at the end.

    Raises InvalidArgumentError for a value out of its field's range.
    """
    parts = [_KEY_TYPE, wire.encode_varint(message.type)]
    if message.data is not None:
        parts.append(wire.encode_len_field(_KEY_DATA, message.data))
    _append_varint(parts, _KEY_FILESIZE, message.filesize)
    for size in message.blocksizes:
        parts.append(_KEY_BLOCKSIZE)
        parts.append(wire.encode_varint(size))
    _append_varint(parts, _KEY_HASH_TYPE, message.hash_type)
    _append_varint(parts, _KEY_FANOUT, message.fanout)
    if message.mode is not None:
        _check_mode(message.mode)
        _append_varint(parts, _KEY_MODE, message.mode)
    if message.mtime is not None:
        parts.append(wire.encode_len_field(_KEY_MTIME, _encode_mtime(message.mtime)))
    if message.layer_header is not None:
        parts.append(wire.encode_len_field(_KEY_LAYER_HEADER, message.layer_header))
    for record in message.entry_records:
        parts.append(wire.encode_len_field(_KEY_ENTRY_RECORD, record))
    return b"".join(parts)


def _append_varint(parts: list[bytes], key: bytes, value: int | None) -> None:
    if value is not None:
        parts.append(key)
        parts.append(wire.encode_varint(value))


def _check_mode(mode: int) -> None:
    if not 0 <= mode <= _MAX_UINT32:
        raise InvalidArgumentError(f"invalid UnixFS mode {mode}: not a uint32")


def _encode_mtime(mtime: UnixTime) -> bytes:
    if not _INT64_MIN <= mtime.seconds <= _INT64_MAX:
        raise InvalidArgumentError(f"invalid UnixFS mtime {mtime}: seconds not int64")
    _check_nanoseconds(mtime.nanoseconds)
    # int64 is written as the varint of its two's complement, 10 bytes if negative.
    parts = [_KEY_SECONDS, wire.encode_varint(mtime.seconds & wire.MAX_UINT64)]
    if mtime.nanoseconds:
        parts.append(_KEY_NANOSECONDS)
        parts.append(_FIXED32.pack(mtime.nanoseconds))
    return b"".join(parts)


def _check_nanoseconds(nanoseconds: int) -> None:
    if not 0 <= nanoseconds <= _MAX_NANOSECONDS:
        raise InvalidArgumentError(
            f"invalid UnixFS mtime nanoseconds {nanoseconds}: not 0 to 999999999"
        )


def decode_data(encoded: bytes | memoryview) -> UnixfsData:
    """Decode a UnixFS Data message (see the module documentation for the rules).

    Raises InvalidArgumentError naming the problem and its offset.
    """
    try:
        return _Decoder(encoded).decode()
    except InvalidArgumentError as error:
        raise InvalidArgumentError(f"failed to decode UnixFS Data: {error}") from error


# Singular fields: field number -> (name in UnixfsData, wire type).
_SINGULAR_FIELDS = {
    1: ("type", wire.VARINT),
    2: ("data", wire.LEN),
    3: ("filesize", wire.VARINT),
    5: ("hash_type", wire.VARINT),
    6: ("fanout", wire.VARINT),
    7: ("mode", wire.VARINT),
    8: ("mtime", wire.LEN),
    LAYER_HEADER_FIELD: ("layer_header", wire.LEN),
}


class _Decoder:
    """One pass over an encoded Data message, collecting its fields."""

    def __init__(self, encoded: bytes | memoryview) -> None:
        self.encoded = encoded
        self.fields: dict[str, object] = {}
        self.blocksizes: list[int] = []
        self.records: list[bytes] = []

    def decode(self) -> UnixfsData:
        offset = 0
        while offset < len(self.encoded):
            offset = self._decode_field(offset)
        if "type" not in self.fields:
            raise InvalidArgumentError("missing required Type field")
        return UnixfsData(
            blocksizes=tuple(self.blocksizes),
            entry_records=tuple(self.records),
            **self.fields,  # type: ignore[arg-type]
        )

    def _decode_field(self, offset: int) -> int:
        field_start = offset
        number, wire_type, offset = wire.decode_key(self.encoded, offset)
        if number == 4:
            return self._decode_blocksizes(offset, wire_type, field_start)
        if number == ENTRY_RECORDS_FIELD:
            _check_wire_type("entry record", wire_type, wire.LEN, field_start)
            start, offset = wire.decode_len(self.encoded, offset)
            self.records.append(bytes(self.encoded[start:offset]))
            return offset
        if number not in _SINGULAR_FIELDS:
            return wire.skip_field(self.encoded, offset, number, wire_type)
        name, expected_type = _SINGULAR_FIELDS[number]
        _check_wire_type(name, wire_type, expected_type, field_start)
        if name in self.fields:
            raise InvalidArgumentError(
                f"duplicate field {name} at offset {field_start}"
            )
        value, offset = self._read_value(offset, wire_type)
        self.fields[name] = _convert(name, value, field_start)
        return offset

    def _decode_blocksizes(self, offset: int, wire_type: int, field_start: int) -> int:
        if wire_type == wire.VARINT:
            value, offset = wire.decode_varint(self.encoded, offset)
            self.blocksizes.append(value)
            return offset
        _check_wire_type("blocksizes", wire_type, wire.LEN, field_start)
        start, offset = wire.decode_len(self.encoded, offset)
        self.blocksizes.extend(wire.decode_packed_varints(self.encoded, start, offset))
        return offset

    def _read_value(self, offset: int, wire_type: int) -> tuple[int | bytes, int]:
        if wire_type == wire.VARINT:
            return wire.decode_varint(self.encoded, offset)
        start, offset = wire.decode_len(self.encoded, offset)
        return bytes(self.encoded[start:offset]), offset


def _check_wire_type(name: str, actual: int, expected: int, offset: int) -> None:
    if actual != expected:
        raise InvalidArgumentError(
            f"field {name} has wire type {actual}, expected {expected},"
            f" at offset {offset}"
        )


def _convert(name: str, value: int | bytes, offset: int) -> object:
    if name == "type":
        return _to_data_type(cast(int, value), offset)
    if name == "mode" and cast(int, value) > _MAX_UINT32:
        raise InvalidArgumentError(f"mode {value!r} over 32 bits at offset {offset}")
    if name == "mtime":
        return _decode_mtime(cast(bytes, value), offset)
    return value


def _to_data_type(value: int, offset: int) -> DataType:
    try:
        return DataType(value)
    except ValueError:
        raise InvalidArgumentError(f"unknown Type {value} at offset {offset}") from None


def _decode_mtime(encoded: bytes, field_start: int) -> UnixTime:
    seconds: int | None = None
    nanoseconds: int | None = None
    offset = 0
    while offset < len(encoded):
        number, wire_type, offset = wire.decode_key(encoded, offset)
        if number == 1:
            _check_wire_type("mtime seconds", wire_type, wire.VARINT, field_start)
            if seconds is not None:
                raise InvalidArgumentError(
                    f"duplicate seconds in the mtime at offset {field_start}"
                )
            seconds, offset = wire.decode_varint(encoded, offset)
        elif number == 2:
            _check_wire_type("mtime nanoseconds", wire_type, wire.FIXED32, field_start)
            if nanoseconds is not None:
                raise InvalidArgumentError(
                    f"duplicate nanoseconds in the mtime at offset {field_start}"
                )
            nanoseconds, offset = _read_fixed32(encoded, offset)
        else:
            offset = wire.skip_field(encoded, offset, number, wire_type)
    return _make_mtime(seconds, nanoseconds, field_start)


def _read_fixed32(encoded: bytes, offset: int) -> tuple[int, int]:
    if offset + 4 > len(encoded):
        raise InvalidArgumentError("truncated nanoseconds in the mtime")
    return _FIXED32.unpack_from(encoded, offset)[0], offset + 4


def _make_mtime(seconds: int | None, nanoseconds: int | None, offset: int) -> UnixTime:
    if seconds is None:
        raise InvalidArgumentError(f"mtime at offset {offset} without seconds")
    if seconds > _INT64_MAX:
        seconds -= 1 << 64
    nanoseconds = nanoseconds or 0
    _check_nanoseconds(nanoseconds)
    return UnixTime(seconds, nanoseconds)
