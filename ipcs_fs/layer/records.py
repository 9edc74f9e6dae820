"""The messages that the file-granular format adds to dag-pb and UnixFS.

``LayerHeader`` sits in the layer root, one ``Entry`` per link in every directory
node under ``rootfs``, and ``TarStreamNode`` is the Data of each tar-stream node.
``mediatypes/ipcs-fs-layer-v1.md`` defines them; this module encodes them in the
canonical form (ascending field numbers, defaults omitted) and decodes them
strictly: an unknown field, a wrong wire type or a repeated singular field is an
error, so no two byte strings decode to the same value.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgumentError
from ..unixfs.wire import decode_varint, encode_varint

__all__ = [
    "FORMAT_VERSION",
    "Entry",
    "Kind",
    "LayerHeader",
    "TarStreamKind",
    "TarStreamNode",
    "Xattr",
    "decode_entry",
    "decode_layer_header",
    "decode_tar_stream_node",
    "encode_entry",
    "encode_layer_header",
    "encode_tar_stream_node",
]

FORMAT_VERSION = 1

_VARINT = 0
_BYTES = 2


class Kind(enum.IntEnum):
    """The kind of an entry under ``rootfs``."""

    FILE = 1
    DIR = 2
    SYMLINK = 3
    HARDLINK = 4
    CHAR = 5
    BLOCK = 6
    FIFO = 7
    WHITEOUT = 8
    OPAQUE = 9


class TarStreamKind(enum.IntEnum):
    LEAF = 1
    INDEX = 2


@dataclass(slots=True)
class Xattr:
    name: bytes
    value: bytes


@dataclass(slots=True)
class Entry:
    """The metadata of one entry, as stored beside its link."""

    kind: Kind
    mode: int = 0
    uid: int = 0
    gid: int = 0
    uname: bytes = b""
    gname: bytes = b""
    mtime_seconds: int = 0
    mtime_nanos: int = 0
    size: int = 0
    link_target: bytes = b""
    devmajor: int = 0
    devminor: int = 0
    xattrs: list[Xattr] = field(default_factory=list)
    implied: bool = False

    @property
    def mtime_ns(self) -> int:
        return self.mtime_seconds * 1_000_000_000 + self.mtime_nanos


@dataclass(slots=True)
class LayerHeader:
    diff_id: bytes
    tar_size: int
    root: Entry | None = None
    entry_count: int = 0
    content_size: int = 0
    version: int = FORMAT_VERSION


@dataclass(slots=True)
class TarStreamNode:
    kind: TarStreamKind
    tar_size: int
    compression: int = 0
    records: bytes = b""
    records_size: int = 0


# Field tables: number -> (attribute, type). Types: "uint", "sint", "bool",
# "bytes", or a callable pair for nested messages.
_ENTRY_FIELDS: dict[int, tuple[str, str]] = {
    1: ("kind", "uint"),
    2: ("mode", "uint"),
    3: ("uid", "uint"),
    4: ("gid", "uint"),
    5: ("uname", "bytes"),
    6: ("gname", "bytes"),
    7: ("mtime_seconds", "sint"),
    8: ("mtime_nanos", "uint"),
    9: ("size", "uint"),
    10: ("link_target", "bytes"),
    11: ("devmajor", "uint"),
    12: ("devminor", "uint"),
    13: ("xattrs", "xattrs"),
    14: ("implied", "bool"),
}
_XATTR_FIELDS = {1: ("name", "bytes"), 2: ("value", "bytes")}
_HEADER_FIELDS = {
    1: ("version", "uint"),
    2: ("diff_id", "bytes"),
    3: ("tar_size", "uint"),
    4: ("root", "entry"),
    5: ("entry_count", "uint"),
    6: ("content_size", "uint"),
}
_TAR_STREAM_FIELDS = {
    1: ("kind", "uint"),
    2: ("tar_size", "uint"),
    3: ("compression", "uint"),
    4: ("records", "bytes"),
    5: ("records_size", "uint"),
}
# Fields written even when they hold their default value.
_ALWAYS_WRITTEN = {"kind"}


def _zigzag(value: int) -> int:
    return value << 1 if value >= 0 else ((-value) << 1) - 1


def _unzigzag(value: int) -> int:
    return (value >> 1) ^ -(value & 1)


def _key(number: int, wire_type: int) -> bytes:
    return encode_varint(number << 3 | wire_type)


def _encode_value(number: int, kind: str, value: Any) -> bytes:
    if kind == "uint":
        return _key(number, _VARINT) + encode_varint(int(value))
    if kind == "sint":
        return _key(number, _VARINT) + encode_varint(_zigzag(value))
    if kind == "bool":
        return _key(number, _VARINT) + b"\x01"
    if kind == "bytes":
        return _key(number, _BYTES) + encode_varint(len(value)) + value
    if kind == "entry":
        body = encode_entry(value)
        return _key(number, _BYTES) + encode_varint(len(body)) + body
    if kind == "xattrs":
        return b"".join(_encode_xattr(number, xattr) for xattr in value)
    raise AssertionError(kind)


def _encode_xattr(number: int, xattr: Xattr) -> bytes:
    body = _encode_message(xattr, _XATTR_FIELDS, always=("name", "value"))
    return _key(number, _BYTES) + encode_varint(len(body)) + body


def _encode_message(
    message: Any, fields: dict[int, tuple[str, str]], always: tuple[str, ...] = ()
) -> bytes:
    parts = []
    for number, (name, kind) in fields.items():
        value = getattr(message, name)
        if value or name in _ALWAYS_WRITTEN or name in always:
            parts.append(_encode_value(number, kind, value))
    return b"".join(parts)


def _iter_fields(data: bytes, what: str):
    """Yield (number, wire type, value) of each field, rejecting malformed input."""
    position = 0
    end = len(data)
    while position < end:
        key, position = decode_varint(data, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            value, position = decode_varint(data, position)
        elif wire_type == _BYTES:
            length, position = decode_varint(data, position)
            if position + length > end:
                raise InvalidArgumentError(f"invalid {what}: field {number} overruns")
            value = data[position : position + length]
            position += length
        else:
            raise InvalidArgumentError(
                f"invalid {what}: field {number} has wire type {wire_type}"
            )
        yield number, wire_type, value


def _decode_into(
    data: bytes, fields: dict[int, tuple[str, str]], what: str
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    last_number = 0
    for number, wire_type, value in _iter_fields(data, what):
        if number not in fields:
            raise InvalidArgumentError(f"invalid {what}: unknown field {number}")
        name, kind = fields[number]
        expected_wire = _BYTES if kind in ("bytes", "entry", "xattrs") else _VARINT
        if wire_type != expected_wire:
            raise InvalidArgumentError(f"invalid {what}: wrong wire type for {name}")
        repeated = kind == "xattrs"
        if number < last_number or (number == last_number and not repeated):
            raise InvalidArgumentError(
                f"invalid {what}: field {name} out of order or repeated"
            )
        last_number = number
        _store(values, name, kind, value, what)
    return values


def _store(values: dict[str, Any], name: str, kind: str, value: Any, what: str):
    if kind == "sint":
        values[name] = _unzigzag(value)
    elif kind == "bool":
        if value != 1:
            raise InvalidArgumentError(f"invalid {what}: {name} must be 1 when set")
        values[name] = True
    elif kind == "bytes":
        values[name] = bytes(value)
    elif kind == "entry":
        values[name] = decode_entry(value)
    elif kind == "xattrs":
        fields = _decode_into(value, _XATTR_FIELDS, "xattr record")
        values.setdefault(name, []).append(Xattr(**_xattr_defaults(fields)))
    else:
        values[name] = value


def _xattr_defaults(fields: dict[str, Any]) -> dict[str, bytes]:
    return {"name": fields.get("name", b""), "value": fields.get("value", b"")}


def encode_entry(entry: Entry) -> bytes:
    """Encode an ``Entry`` message in canonical form."""
    return _encode_message(entry, _ENTRY_FIELDS)


def decode_entry(data: bytes) -> Entry:
    """Decode an ``Entry`` message, raising InvalidArgumentError if malformed."""
    values = _decode_into(data, _ENTRY_FIELDS, "entry record")
    try:
        values["kind"] = Kind(values["kind"])
    except (KeyError, ValueError):
        raise InvalidArgumentError(
            f"invalid entry record: kind {values.get('kind')} is not known"
        ) from None
    if values.get("mtime_nanos", 0) >= 1_000_000_000:
        raise InvalidArgumentError("invalid entry record: mtime_nanos out of range")
    if values.get("mode", 0) > 0o7777:
        raise InvalidArgumentError("invalid entry record: mode has more than 12 bits")
    return Entry(**values)


def encode_layer_header(header: LayerHeader) -> bytes:
    """Encode a ``LayerHeader`` message in canonical form."""
    return _encode_message(header, _HEADER_FIELDS)


def decode_layer_header(data: bytes) -> LayerHeader:
    """Decode a ``LayerHeader``, checking its version and diff_id length."""
    values = _decode_into(data, _HEADER_FIELDS, "layer header")
    version = values.get("version", 0)
    if version != FORMAT_VERSION:
        raise InvalidArgumentError(
            f"unsupported layer format version {version}; this reader knows"
            f" version {FORMAT_VERSION}"
        )
    if len(values.get("diff_id", b"")) != 32:
        raise InvalidArgumentError("invalid layer header: diff_id is not 32 bytes")
    return LayerHeader(**{"tar_size": 0, **values})


def encode_tar_stream_node(node: TarStreamNode) -> bytes:
    """Encode a ``TarStreamNode`` message in canonical form."""
    return _encode_message(node, _TAR_STREAM_FIELDS)


def decode_tar_stream_node(data: bytes) -> TarStreamNode:
    """Decode a ``TarStreamNode``, checking kind and compression."""
    values = _decode_into(data, _TAR_STREAM_FIELDS, "tar-stream node")
    try:
        values["kind"] = TarStreamKind(values["kind"])
    except (KeyError, ValueError):
        raise InvalidArgumentError(
            f"invalid tar-stream node: kind {values.get('kind')} is not known"
        ) from None
    if values.get("compression", 0) not in (0, 1):
        raise InvalidArgumentError(
            f"invalid tar-stream node: compression {values['compression']} is not known"
        )
    return TarStreamNode(**{"tar_size": 0, **values})
