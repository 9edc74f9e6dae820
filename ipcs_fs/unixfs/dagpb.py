"""The dag-pb codec: a block of links and opaque data, the carrier of UnixFS.

A dag-pb *node* is this protobuf (IPLD dag-pb specification)::

    message PBLink { optional bytes Hash = 1; optional string Name = 2;
                     optional uint64 Tsize = 3; }
    message PBNode { repeated PBLink Links = 2; optional bytes Data = 1; }

A *link* names a child block by its binary CID (``Hash``), with a ``Name``
and the child's ``Tsize``: the total bytes of the blocks under it. The
canonical form writes all links first, sorted by name as bytes, then
``Data``. kubo writes ``Name`` (empty for file chunks) and ``Tsize`` on every
link, so the encoder always writes both.

:func:`decode_node` applies the specification's strictness rules: ``PBLink``
fields in field-number order, no duplicate field, no unknown field or wire
type, a ``Hash`` on every link that parses as a CID, minimal varints. The
specification says decoders should accept ``Data`` before the links, because
old IPFS data has that order, so this decoder does. It rejects links split
by ``Data``. Names are kept as bytes and never decoded as UTF-8, because file
names from tar layers need not be UTF-8.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple, NoReturn

from ..errors import InvalidArgumentError
from ..ids import SHA2_256, Cid
from . import wire

__all__ = [
    "MAX_BLOCK_SIZE",
    "Block",
    "GetBlock",
    "Link",
    "Node",
    "PutBlock",
    "decode_node",
    "encode_link",
    "encode_node",
]

# Blocks above 1 MiB are refused by kubo's block/put up to 0.39 and by some
# bitswap peers, so every block ipcs-fs writes stays at or under this size.
MAX_BLOCK_SIZE = 1 << 20

Block = bytes | memoryview
"""A block's bytes. A memoryview may alias a caller's buffer: see PutBlock."""

PutBlock = Callable[[Cid, Block], None]
"""Store one block under its CID.

The builders call it once per block, children before parents. The block may
be a memoryview into the writer's buffer that is valid only until the call
returns, so an implementation that keeps the block must copy it first.
"""

GetBlock = Callable[[Cid], bytes]
"""Return the block for a CID, already checked against that CID.

Raise NotFoundError when the block is missing.
"""

_KEY_DATA = wire.encode_key(1, wire.LEN)  # PBNode.Data
_KEY_LINK = wire.encode_key(2, wire.LEN)  # PBNode.Links
_KEY_HASH = wire.encode_key(1, wire.LEN)  # PBLink.Hash
_KEY_NAME = wire.encode_key(2, wire.LEN)  # PBLink.Name
_KEY_TSIZE = wire.encode_key(3, wire.VARINT)  # PBLink.Tsize

_SHA2_256_PREFIX = bytes((SHA2_256, 32))
_LINK_FIELDS = {1: ("Hash", wire.LEN), 2: ("Name", wire.LEN), 3: ("Tsize", wire.VARINT)}


class Link(NamedTuple):
    """A dag-pb link: the child's CID, the link name and the child's Tsize.

    A link decoded without ``Name`` has ``name == b""`` and one without
    ``Tsize`` has ``tsize == 0``. ipcs-fs always writes both, as kubo does.
    """

    cid: Cid
    name: bytes
    tsize: int


class Node(NamedTuple):
    """A decoded dag-pb node: its links in block order and its Data bytes.

    ``data`` is None when the block has no Data field, which is different
    from an empty Data field.
    """

    links: tuple[Link, ...]
    data: bytes | None


def encode_link(link: Link) -> bytes:
    """Encode the PBLink message of ``link``, without the PBNode key around it."""
    cid = link.cid.raw
    name = link.name
    return b"".join(
        (
            _KEY_HASH,
            wire.encode_varint(len(cid)),
            cid,
            _KEY_NAME,
            wire.encode_varint(len(name)),
            name,
            _KEY_TSIZE,
            wire.encode_varint(link.tsize),
        )
    )


def encode_node(links: Sequence[Link], data: bytes | None) -> bytes:
    """Encode a dag-pb node in canonical form: the links, then ``data``.

    ``links`` must already be sorted by name bytes (stable for equal names,
    such as the empty names of file chunks). The encoder checks the order
    instead of sorting, because UnixFS Data written by ipcs-fs lists one entry
    record per link in link order, and a silent reorder would pair records
    with the wrong links. Raises InvalidArgumentError on unsorted links.
    ``data`` None omits the Data field; ``b""`` writes an empty one.
    """
    _check_sorted(links)
    parts = []
    for link in links:
        encoded = encode_link(link)
        parts.append(_KEY_LINK)
        parts.append(wire.encode_varint(len(encoded)))
        parts.append(encoded)
    if data is not None:
        parts.append(_KEY_DATA)
        parts.append(wire.encode_varint(len(data)))
        parts.append(data)
    return b"".join(parts)


def _check_sorted(links: Sequence[Link]) -> None:
    for index in range(1, len(links)):
        if links[index].name < links[index - 1].name:
            raise InvalidArgumentError(
                f"failed to encode dag-pb node: link {index} named"
                f" {links[index].name!r} sorts before the link before it,"
                f" {links[index - 1].name!r}; sort links by name bytes"
            )


def decode_node(block: Block) -> Node:
    """Decode a dag-pb block, strictly (see the module documentation).

    Raises InvalidArgumentError naming the problem and its offset.
    """
    try:
        return _decode_node(block)
    except InvalidArgumentError as error:
        raise InvalidArgumentError(f"failed to decode dag-pb node: {error}") from error


def _decode_node(block: Block) -> Node:
    links: list[Link] = []
    data: bytes | None = None
    links_closed = False
    offset = 0
    while offset < len(block):
        field_start = offset
        field_number, wire_type, offset = wire.decode_key(block, offset)
        if field_number not in (1, 2):
            raise InvalidArgumentError(
                f"unknown PBNode field {field_number} at offset {field_start}"
            )
        if wire_type != wire.LEN:
            raise InvalidArgumentError(
                f"PBNode field {field_number} has wire type {wire_type},"
                f" expected 2 (length-delimited), at offset {field_start}"
            )
        start, offset = wire.decode_len(block, offset)
        if field_number == 1:
            if data is not None:
                raise InvalidArgumentError(
                    f"duplicate PBNode Data field at offset {field_start}"
                )
            data = bytes(block[start:offset])
            links_closed = bool(links)
        else:
            if links_closed:
                raise InvalidArgumentError(
                    f"PBNode links split by the Data field at offset {field_start}"
                )
            links.append(_decode_link(block, start, offset))
    return Node(tuple(links), data)


def _decode_link(block: Block, start: int, end: int) -> Link:
    """Decode a PBLink, reading each field only at its place in the order."""
    raw_cid: bytes | None = None
    name = b""
    tsize = 0
    offset = field_start = start
    last_field = 0
    # The three keys are single bytes, so comparing one byte reads the key.
    if offset < end and block[offset] == _KEY_HASH[0]:
        field_start, last_field = offset, 1
        raw_cid, offset = _read_bytes(block, offset + 1)
    if offset < end and block[offset] == _KEY_NAME[0]:
        field_start, last_field = offset, 2
        name, offset = _read_bytes(block, offset + 1)
    if offset < end and block[offset] == _KEY_TSIZE[0]:
        field_start, last_field = offset, 3
        tsize, offset = wire.decode_varint(block, offset + 1)
    if offset > end:
        raise InvalidArgumentError(f"PBLink field at {field_start} overruns its link")
    if offset < end:
        _reject_link_field(block, offset, last_field)
    return Link(_parse_hash(raw_cid, start), name, tsize)


def _read_bytes(block: Block, offset: int) -> tuple[bytes, int]:
    start, end = wire.decode_len(block, offset)
    return bytes(block[start:end]), end


def _reject_link_field(block: Block, offset: int, last: int) -> NoReturn:
    """Raise for the PBLink field at ``offset``, which broke a rule."""
    number, wire_type, _ = wire.decode_key(block, offset)
    _check_link_field(number, wire_type, last, offset)
    raise InvalidArgumentError(f"invalid PBLink field {number} at offset {offset}")


def _check_link_field(number: int, wire_type: int, last: int, offset: int) -> None:
    if number not in _LINK_FIELDS:
        raise InvalidArgumentError(f"unknown PBLink field {number} at offset {offset}")
    name, expected_type = _LINK_FIELDS[number]
    if wire_type != expected_type:
        raise InvalidArgumentError(
            f"PBLink {name} has wire type {wire_type}, expected {expected_type},"
            f" at offset {offset}"
        )
    if number == last:
        raise InvalidArgumentError(f"duplicate PBLink {name} at offset {offset}")
    if number < last:
        raise InvalidArgumentError(
            f"PBLink {name} after {_LINK_FIELDS[last][0]} at offset {offset};"
            " fields must be in the order Hash, Name, Tsize"
        )


def _parse_hash(raw_cid: bytes | None, offset: int) -> Cid:
    if raw_cid is None:
        raise InvalidArgumentError(f"PBLink without Hash at offset {offset}")
    if (
        len(raw_cid) == 36
        and raw_cid[0] == 1
        and raw_cid[1] < 0x80
        and raw_cid[2:4] == _SHA2_256_PREFIX
    ):
        # The CIDv1 with a one-byte codec and a sha2-256 digest that nearly
        # every link has, accepted without the general parser.
        return Cid(raw_cid, raw_cid[1])
    try:
        return Cid.from_bytes(raw_cid)
    except InvalidArgumentError as error:
        raise InvalidArgumentError(
            f"PBLink Hash at offset {offset} is not a usable CID: {error}"
        ) from error
