"""The part of DAG-CBOR that a CAR header needs, encoded and decoded by hand.

DAG-CBOR is CBOR (RFC 8949) with one encoding per value, and these are the
rules this module follows, on both sides:

- integers, lengths and tag numbers take the shortest form their value allows;
- indefinite lengths are not allowed;
- map keys are text strings, sorted by the length of their UTF-8 bytes, then
  bytewise, with no key twice;
- a CID is tag 42 around a byte string holding a 0x00 byte and the binary CID;
  no other tag is allowed;
- the simple values are ``false``, ``true`` and ``null``. Floats are valid
  DAG-CBOR, but no CAR header uses them, so this module rejects them.

Python values map as: ``int``, ``bytes``, ``str``, ``list``, ``dict`` with
``str`` keys, ``bool``, ``None``, and :class:`~ipcs_fs.ids.Cid`.
"""

from __future__ import annotations

import struct
from typing import Any

from ..errors import InvalidArgumentError
from ..ids import Cid

__all__ = ["CID_TAG", "MAX_NESTING", "decode", "encode"]

CID_TAG = 42
MAX_NESTING = 64
"""Deepest nesting of arrays, maps and tags that :func:`decode` accepts."""

_UNSIGNED, _NEGATIVE, _BYTES, _TEXT, _ARRAY, _MAP, _TAG, _SIMPLE = range(8)
_FALSE, _TRUE, _NULL = 20, 21, 22
_MAX_ARGUMENT = (1 << 64) - 1


def encode(value: Any) -> bytes:
    """Encode ``value`` as DAG-CBOR.

    Raises InvalidArgumentError for a value outside the mapping above, an
    integer outside the 64-bit range, or a map key that is not a string.
    """
    out = bytearray()
    _encode(value, out)
    return bytes(out)


def _encode(value: Any, out: bytearray) -> None:
    # bool before int: True and False are ints in Python.
    if value is None or isinstance(value, bool):
        simple = _NULL if value is None else (_TRUE if value else _FALSE)
        out.append(_SIMPLE << 5 | simple)
    elif isinstance(value, int):
        _encode_int(value, out)
    elif isinstance(value, bytes):
        _encode_head(_BYTES, len(value), out)
        out += value
    elif isinstance(value, str):
        data = value.encode("utf-8")
        _encode_head(_TEXT, len(data), out)
        out += data
    elif isinstance(value, Cid):
        _encode_head(_TAG, CID_TAG, out)
        _encode(b"\x00" + value.raw, out)
    elif isinstance(value, list | tuple):
        _encode_head(_ARRAY, len(value), out)
        for item in value:
            _encode(item, out)
    elif isinstance(value, dict):
        _encode_map(value, out)
    else:
        raise InvalidArgumentError(
            f"cannot encode {type(value).__name__} as DAG-CBOR: unsupported type"
        )


def _encode_int(value: int, out: bytearray) -> None:
    if value >= 0:
        _encode_head(_UNSIGNED, value, out)
    else:
        _encode_head(_NEGATIVE, -1 - value, out)


def _encode_map(value: dict[Any, Any], out: bytearray) -> None:
    keys = []
    for key in value:
        if not isinstance(key, str):
            raise InvalidArgumentError(
                f"cannot encode map key {key!r} as DAG-CBOR: keys must be strings"
            )
        keys.append((key.encode("utf-8"), key))
    keys.sort(key=lambda pair: (len(pair[0]), pair[0]))
    _encode_head(_MAP, len(keys), out)
    for _, key in keys:
        _encode(key, out)
        _encode(value[key], out)


def _encode_head(major: int, argument: int, out: bytearray) -> None:
    if argument > _MAX_ARGUMENT:
        raise InvalidArgumentError(
            f"cannot encode {argument} as DAG-CBOR: over 64 bits"
        )
    if argument < 24:
        out.append(major << 5 | argument)
    elif argument < 1 << 8:
        out += bytes((major << 5 | 24, argument))
    elif argument < 1 << 16:
        out.append(major << 5 | 25)
        out += struct.pack(">H", argument)
    elif argument < 1 << 32:
        out.append(major << 5 | 26)
        out += struct.pack(">I", argument)
    else:
        out.append(major << 5 | 27)
        out += struct.pack(">Q", argument)


def decode(data: bytes) -> Any:
    """Decode one DAG-CBOR value that fills all of ``data``.

    Raises InvalidArgumentError naming the byte offset for anything that
    breaks the rules above, for trailing bytes, and for nesting deeper than
    :data:`MAX_NESTING`.
    """
    decoder = _Decoder(data)
    value = decoder.value(0)
    if decoder.offset != len(data):
        raise InvalidArgumentError(
            f"{len(data) - decoder.offset} bytes after the value at offset"
            f" {decoder.offset}"
        )
    return value


class _Decoder:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def value(self, depth: int) -> Any:
        if depth > MAX_NESTING:
            raise InvalidArgumentError(
                f"nesting deeper than {MAX_NESTING} at offset {self.offset}"
            )
        start = self.offset
        major, argument = self._head()
        if major == _UNSIGNED:
            return argument
        if major == _NEGATIVE:
            return -1 - argument
        if major == _BYTES:
            return self._take(argument)
        if major == _TEXT:
            return self._text(argument, start)
        if major == _ARRAY:
            return [self.value(depth + 1) for _ in range(argument)]
        if major == _MAP:
            return self._map(argument, depth)
        if major == _TAG:
            return self._cid(argument, start, depth)
        return self._simple(argument, start)

    def _head(self) -> tuple[int, int]:
        start = self.offset
        initial = self._take(1)[0]
        major, info = initial >> 5, initial & 0x1F
        if major == _SIMPLE and info > 23:
            raise InvalidArgumentError(
                f"float or reserved simple value 0x{initial:02x} at offset {start};"
                " a CAR header holds none"
            )
        if info < 24:
            return major, info
        if info > 27:
            raise InvalidArgumentError(
                f"indefinite or reserved length 0x{initial:02x} at offset {start}"
            )
        size = 1 << (info - 24)
        argument = int.from_bytes(self._take(size), "big")
        if argument < (24 if size == 1 else 1 << (4 * size)):
            raise InvalidArgumentError(
                f"integer {argument} not in its shortest form at offset {start}"
            )
        return major, argument

    def _take(self, count: int) -> bytes:
        end = self.offset + count
        if end > len(self.data):
            raise InvalidArgumentError(
                f"value at offset {self.offset} needs {count} bytes, but only"
                f" {len(self.data) - self.offset} remain"
            )
        piece = self.data[self.offset : end]
        self.offset = end
        return piece

    def _text(self, length: int, start: int) -> str:
        try:
            return self._take(length).decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidArgumentError(
                f"text string at offset {start} is not valid UTF-8: {error}"
            ) from None

    def _map(self, count: int, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        previous: bytes | None = None
        for _ in range(count):
            start = self.offset
            key = self.value(depth + 1)
            if not isinstance(key, str):
                raise InvalidArgumentError(
                    f"map key at offset {start} is not a text string"
                )
            encoded = key.encode("utf-8")
            if previous is not None and not _sorts_before(previous, encoded):
                raise InvalidArgumentError(
                    f"map key {key!r} at offset {start} is out of order or repeated"
                )
            previous = encoded
            result[key] = self.value(depth + 1)
        return result

    def _cid(self, tag: int, start: int, depth: int) -> Cid:
        if tag != CID_TAG:
            raise InvalidArgumentError(
                f"tag {tag} at offset {start}; DAG-CBOR allows only tag 42 (CID)"
            )
        content = self.value(depth + 1)
        if not isinstance(content, bytes) or content[:1] != b"\x00":
            raise InvalidArgumentError(
                f"CID at offset {start} is not a byte string starting with 0x00"
            )
        try:
            return Cid.from_bytes(content[1:])
        except InvalidArgumentError as error:
            raise InvalidArgumentError(f"CID at offset {start}: {error}") from None

    def _simple(self, value: int, start: int) -> bool | None:
        if value == _FALSE:
            return False
        if value == _TRUE:
            return True
        if value == _NULL:
            return None
        raise InvalidArgumentError(
            f"simple value {value} at offset {start}; DAG-CBOR allows only"
            " false, true and null"
        )


def _sorts_before(first: bytes, second: bytes) -> bool:
    return (len(first), first) < (len(second), second)
