"""Protocol Buffers wire-format helpers for the dag-pb and UnixFS codecs.

Terms, as the Protocol Buffers encoding guide uses them:

- *varint*: an unsigned LEB128 integer, 7 bits per byte, least significant
  group first, at most 10 bytes for a 64-bit value.
- *key*: the varint ``field_number << 3 | wire_type`` that starts each field.
- *wire type*: how the value after a key is framed: ``VARINT`` (0),
  ``FIXED64`` (1), ``LEN`` (2, a varint length then that many bytes),
  ``START_GROUP`` and ``END_GROUP`` (3 and 4, deprecated), ``FIXED32`` (5).

Decoding is stricter than protobuf requires, because the codecs built on it
want one encoding per value: a varint must be minimal (no trailing ``0x00``
group) and fit in 64 bits. Every function that reads takes the buffer and an
offset and returns the value with the offset just past it, so callers walk a
block without slicing it. Malformed input raises :class:`InvalidArgumentError`
with the offset of the problem; callers add which message they were reading.
"""

from __future__ import annotations

from ..errors import InvalidArgumentError

__all__ = [
    "END_GROUP",
    "FIXED32",
    "FIXED64",
    "LEN",
    "MAX_UINT64",
    "START_GROUP",
    "VARINT",
    "decode_key",
    "decode_len",
    "decode_packed_varints",
    "decode_varint",
    "encode_key",
    "encode_len_field",
    "encode_varint",
    "skip_field",
    "varint_size",
]

VARINT = 0
FIXED64 = 1
LEN = 2
START_GROUP = 3
END_GROUP = 4
FIXED32 = 5

MAX_UINT64 = (1 << 64) - 1
_MAX_FIELD_NUMBER = (1 << 29) - 1
# Deeper group nesting than this is hostile input, not data.
_MAX_GROUP_DEPTH = 64

# Most varints on the hot paths (lengths, field keys, Tsizes of leaves) are
# under 2**14, so their encodings come from a table instead of a loop.
_ONE_BYTE = [bytes((value,)) for value in range(0x80)]


def encode_varint(value: int) -> bytes:
    """Encode ``value`` (0 to 2**64 - 1) as a varint."""
    if value < 0x80:
        if value < 0:
            raise InvalidArgumentError(f"cannot encode {value} as a varint: negative")
        return _ONE_BYTE[value]
    if value < 0x4000:
        return bytes((value & 0x7F | 0x80, value >> 7))
    if value > MAX_UINT64:
        raise InvalidArgumentError(f"cannot encode {value} as a varint: over 64 bits")
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint_size(value: int) -> int:
    """Return the number of bytes :func:`encode_varint` writes for ``value``."""
    return max(1, (value.bit_length() + 6) // 7)


def decode_varint(data: bytes | memoryview, offset: int) -> tuple[int, int]:
    """Decode the varint at ``offset``; return it and the offset after it.

    Raises InvalidArgumentError if the varint is truncated, longer than its
    minimal encoding, or over 64 bits.
    """
    try:
        byte = data[offset]
    except IndexError:
        raise InvalidArgumentError(f"truncated varint at offset {offset}") from None
    if byte < 0x80:
        return byte, offset + 1
    return _decode_long_varint(data, offset)


def _decode_long_varint(data: bytes | memoryview, start: int) -> tuple[int, int]:
    value = 0
    shift = 0
    offset = start
    end = min(len(data), start + 10)
    while offset < end:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0:
                raise InvalidArgumentError(f"non-minimal varint at offset {start}")
            if value > MAX_UINT64:
                raise InvalidArgumentError(f"varint over 64 bits at offset {start}")
            return value, offset
        shift += 7
    if offset - start == 10:
        raise InvalidArgumentError(f"varint over 64 bits at offset {start}")
    raise InvalidArgumentError(f"truncated varint at offset {start}")


def encode_key(field_number: int, wire_type: int) -> bytes:
    """Encode the key of field ``field_number`` with ``wire_type``."""
    return encode_varint(field_number << 3 | wire_type)


def decode_key(data: bytes | memoryview, offset: int) -> tuple[int, int, int]:
    """Decode a field key; return (field number, wire type, next offset).

    Raises InvalidArgumentError for field number 0 or one over 2**29 - 1.
    """
    key, next_offset = decode_varint(data, offset)
    field_number = key >> 3
    if field_number == 0 or field_number > _MAX_FIELD_NUMBER:
        raise InvalidArgumentError(
            f"invalid field number {field_number} at offset {offset}"
        )
    return field_number, key & 7, next_offset


def encode_len_field(key: bytes, value: bytes | memoryview) -> bytes:
    """Encode a length-delimited field: ``key``, the length of ``value``, ``value``."""
    return b"".join((key, encode_varint(len(value)), value))


def decode_len(data: bytes | memoryview, offset: int) -> tuple[int, int]:
    """Decode the length prefix of a ``LEN`` value at ``offset``.

    Returns (start, end) of the value inside ``data``. Raises
    InvalidArgumentError if the value runs past the end of ``data``.
    """
    length, start = decode_varint(data, offset)
    end = start + length
    if end > len(data):
        raise InvalidArgumentError(
            f"length-delimited value at offset {offset} runs past the end:"
            f" {length} bytes declared, {len(data) - start} left"
        )
    return start, end


def decode_packed_varints(data: bytes | memoryview, start: int, end: int) -> list[int]:
    """Decode the varints packed in ``data[start:end]``."""
    values = []
    offset = start
    while offset < end:
        value, offset = decode_varint(data, offset)
        values.append(value)
    if offset != end:
        raise InvalidArgumentError(f"packed varints overrun their field at {start}")
    return values


def skip_field(
    data: bytes | memoryview, offset: int, field_number: int, wire_type: int
) -> int:
    """Skip the value of a field whose key was just read; return the next offset.

    ``offset`` is the position after the key. A group is skipped up to the end
    key with its field number, as protobuf readers do. Raises
    InvalidArgumentError for an unknown wire type, a stray end of group, or a
    value past the end of ``data``.
    """
    return _skip_value(data, offset, field_number, wire_type, 0)


def _skip_value(
    data: bytes | memoryview, offset: int, field_number: int, wire_type: int, depth: int
) -> int:
    if wire_type == VARINT:
        return decode_varint(data, offset)[1]
    if wire_type == LEN:
        return decode_len(data, offset)[1]
    if wire_type in _FIXED_SIZES:
        end = offset + _FIXED_SIZES[wire_type]
        if end > len(data):
            raise InvalidArgumentError(
                f"truncated fixed-width value at offset {offset}"
            )
        return end
    if wire_type == START_GROUP:
        return _skip_group(data, offset, field_number, depth + 1)
    raise InvalidArgumentError(f"invalid wire type {wire_type} before offset {offset}")


_FIXED_SIZES = {FIXED64: 8, FIXED32: 4}


def _skip_group(
    data: bytes | memoryview, offset: int, group_number: int, depth: int
) -> int:
    if depth > _MAX_GROUP_DEPTH:
        raise InvalidArgumentError(f"groups nested over {_MAX_GROUP_DEPTH} deep")
    while offset < len(data):
        field_number, wire_type, offset = decode_key(data, offset)
        if wire_type == END_GROUP:
            if field_number != group_number:
                raise InvalidArgumentError(
                    f"group {group_number} closed by end of group {field_number}"
                    f" before offset {offset}"
                )
            return offset
        offset = _skip_value(data, offset, field_number, wire_type, depth)
    raise InvalidArgumentError(f"group not closed before offset {offset}")
