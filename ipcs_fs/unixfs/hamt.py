"""UnixFS HAMT directories, built the way kubo (boxo) and the JS importer build them.

Terms:

- *shard node*: a dag-pb node whose UnixFS Data is ``{Type: HAMTShard,
  Data: bitfield, hashType: 0x22, fanout: 256}``. The root shard node
  stands for the whole directory.
- *hash*: ``h1``, the first 64-bit half of MurmurHash3_x64_128 of the entry
  name with seed 0, as an unsigned integer.
- *slot*: one of the 256 positions of a shard node. An entry's slot at
  level ``L`` (the root is level 0) is byte ``L`` of its hash, counted from
  the most significant end. Eight bits a level give at most eight levels.
- *value link*: a link to an entry, named by the slot as two upper-case hex
  digits followed by the entry name (``"4F"`` + ``b"passwd"``).
- *sub-shard link*: a link named by the two digits alone, to a shard node one
  level down that contains every entry sharing this slot.
- *bitfield*: the slots in use as a big-endian integer, bit ``i`` for slot
  ``i``, written without leading zero bytes (as boxo's go-bitfield does).

A slot holds a value link when one entry falls into it and a sub-shard link
when several do, so the shape depends only on the set of names, as in boxo.
Each shard node carries the entry records of its value links (empty for its
sub-shard links) in the ipcs-fs records field.

One deliberate difference: when a shard node would exceed
:data:`~ipcs_fs.unixfs.dagpb.MAX_BLOCK_SIZE`, which takes names or records of
kilobytes each, the builder moves its largest value links one by one into
sub-shards of their own one level down. Any HAMT reader follows such links;
kubo would write an oversized block instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import NamedTuple, NoReturn

import mmh3

from ..errors import InvalidArgumentError
from ..ids import DAG_PB, Cid
from ._items import (
    DirectoryDag,
    DirectoryItem,
    check_name,
    fail_read,
    records_field,
    records_of,
)
from .dagpb import (
    MAX_BLOCK_SIZE,
    GetBlock,
    Link,
    Node,
    PutBlock,
    decode_node,
    encode_link,
    encode_node,
)
from .data import HASH_MURMUR3_X64_64, DataType, UnixfsData, decode_data, encode_data
from .wire import varint_size

__all__ = ["FANOUT", "MAX_LEVELS", "build_hamt", "hash_name", "iter_hamt", "slot_of"]

logger = logging.getLogger(__name__)

FANOUT = 256
_LEVEL_BITS = 8
MAX_LEVELS = 64 // _LEVEL_BITS
# An upper bound on what a sub-shard link and its empty record add to a
# shard node: a 2-byte name, a 36-byte CID, a Tsize varint, and framing.
_SUB_SHARD_COST = 64
_HEX_DIGITS = frozenset(b"0123456789ABCDEF")


def hash_name(name: bytes) -> int:
    """Return the 64-bit HAMT hash of an entry name."""
    return mmh3.hash64(name, seed=0, x64arch=True, signed=False)[0]


def slot_of(name_hash: int, level: int) -> int:
    """Return the slot (0 to 255) of a hash at ``level`` (0 is the root)."""
    return (name_hash >> (64 - _LEVEL_BITS * (level + 1))) & (FANOUT - 1)


class _Hashed(NamedTuple):
    hash: int
    item: DirectoryItem


class _Slot(NamedTuple):
    number: int
    link: Link
    record: bytes
    value: _Hashed | None  # None for a sub-shard link


def build_hamt(
    items: Sequence[DirectoryItem], put: PutBlock, *, layer_header: bytes | None
) -> DirectoryDag:
    """Store ``items`` (unique, valid names) as a HAMT; return its root.

    ``layer_header`` goes into the root shard node only. Raises
    InvalidArgumentError for an entry that cannot fit in any block, or for
    two names whose 64-bit hashes are equal.
    """
    hashed = [_Hashed(hash_name(item.name), item) for item in items]
    return _build_shard(hashed, 0, put, layer_header)


def _build_shard(
    hashed: Sequence[_Hashed], level: int, put: PutBlock, header: bytes | None
) -> DirectoryDag:
    groups: dict[int, list[_Hashed]] = {}
    for entry in hashed:
        groups.setdefault(slot_of(entry.hash, level), []).append(entry)
    slots = [_make_slot(slot, groups[slot], level, put) for slot in sorted(groups)]
    return _store_shard(slots, level, put, header)


def _make_slot(slot: int, group: list[_Hashed], level: int, put: PutBlock) -> _Slot:
    if len(group) == 1:
        item = group[0].item
        link = Link(item.cid, _prefix(slot) + item.name, item.tsize)
        return _Slot(slot, link, item.record, group[0])
    if level + 1 == MAX_LEVELS:
        names = ", ".join(repr(entry.item.name) for entry in group)
        raise InvalidArgumentError(
            f"failed to build directory: entries {names} have the same 64-bit"
            " HAMT hash; rename one of them"
        )
    child = _build_shard(group, level + 1, put, None)
    return _Slot(slot, Link(child.cid, _prefix(slot), child.tsize), b"", None)


def _prefix(slot: int) -> bytes:
    return b"%02X" % slot


def _store_shard(
    slots: list[_Slot], level: int, put: PutBlock, header: bytes | None
) -> DirectoryDag:
    block = _encode_shard(slots, header)
    if len(block) > MAX_BLOCK_SIZE:
        slots = _push_down(slots, level, put, len(block) - MAX_BLOCK_SIZE)
        block = _encode_shard(slots, header)
    if len(block) > MAX_BLOCK_SIZE:
        raise InvalidArgumentError(
            f"failed to build directory: a HAMT shard node at level {level} needs"
            f" {len(block)} bytes, over the {MAX_BLOCK_SIZE}-byte block limit"
        )
    cid = Cid.for_block(DAG_PB, block)
    put(cid, block)
    return DirectoryDag(cid, len(block) + sum(slot.link.tsize for slot in slots))


def _encode_shard(slots: Sequence[_Slot], header: bytes | None) -> bytes:
    bits = 0
    for slot in slots:
        bits |= 1 << slot.number
    message = UnixfsData(
        DataType.HAMT_SHARD,
        data=bits.to_bytes((bits.bit_length() + 7) // 8, "big"),
        hash_type=HASH_MURMUR3_X64_64,
        fanout=FANOUT,
        layer_header=header,
        entry_records=records_field([slot.record for slot in slots]),
    )
    return encode_node([slot.link for slot in slots], encode_data(message))


def _push_down(
    slots: list[_Slot], level: int, put: PutBlock, excess: int
) -> list[_Slot]:
    """Move the largest value links into sub-shards of their own to save ``excess``."""
    values = [slot for slot in slots if slot.value is not None]
    values.sort(key=lambda slot: (-_slot_cost(slot), slot.number))
    if len(slots) == 1 and values:
        _raise_too_large(values[0], excess)
    if not values or level + 1 == MAX_LEVELS:
        return slots
    moved: set[int] = set()
    saved = 0
    for slot in values:
        if saved >= excess:
            break
        moved.add(slot.number)
        saved += _slot_cost(slot) - _SUB_SHARD_COST
    logger.debug("moving %d HAMT entries down from level %d", len(moved), level)
    return [
        _lone_sub_shard(slot, level, put) if slot.number in moved else slot
        for slot in slots
    ]


def _slot_cost(slot: _Slot) -> int:
    """Return the bytes a slot's link and record add to its shard node."""
    link_size = len(encode_link(slot.link))
    record_size = len(slot.record)
    # One byte of PBNode key per link, two of key per record, plus lengths.
    link_cost = 1 + varint_size(link_size) + link_size
    return link_cost + 2 + varint_size(record_size) + record_size


def _lone_sub_shard(slot: _Slot, level: int, put: PutBlock) -> _Slot:
    assert slot.value is not None
    child = _build_shard([slot.value], level + 1, put, None)
    return _Slot(
        slot.number, Link(child.cid, _prefix(slot.number), child.tsize), b"", None
    )


def _raise_too_large(slot: _Slot, excess: int) -> NoReturn:
    assert slot.value is not None
    raise InvalidArgumentError(
        f"failed to build directory: entry {slot.value.item.name!r} needs a block"
        f" {excess} bytes over the {MAX_BLOCK_SIZE}-byte limit; its name and"
        " entry record are too large"
    )


def iter_hamt(
    get: GetBlock, cid: Cid, node: Node, message: UnixfsData, level: int = 0
) -> Iterator[DirectoryItem]:
    """Yield the entries of the HAMT shard node ``node`` (with ``cid``) and below.

    Entries come in slot order, depth first. Raises InvalidArgumentError
    naming the shard's CID if its structure breaks a rule: fanout or hash
    type, link names, bitfield, records, or an entry in a slot its hash
    does not lead to.
    """
    for _, name, link, record in _parse_shard(cid, node, message, level):
        if name is None:
            yield from _iter_sub_shard(get, cid, link, level + 1)
        else:
            yield DirectoryItem(name, link.cid, link.tsize, record)


def _iter_sub_shard(
    get: GetBlock, parent: Cid, link: Link, level: int
) -> Iterator[DirectoryItem]:
    if level == MAX_LEVELS:
        fail_read(parent, f"sub-shard {link.cid} is past the {MAX_LEVELS}-level limit")
    if link.cid.codec != DAG_PB:
        fail_read(parent, f"sub-shard {link.cid} is not dag-pb")
    try:
        node = decode_node(get(link.cid))
        message = decode_data(node.data or b"")
    except InvalidArgumentError as error:
        raise InvalidArgumentError(
            f"failed to read directory {link.cid}: {error}"
        ) from error
    if message.type != DataType.HAMT_SHARD:
        fail_read(parent, f"sub-shard {link.cid} has UnixFS type {message.type.name}")
    yield from iter_hamt(get, link.cid, node, message, level)


class _ParsedLink(NamedTuple):
    slot: int
    name: bytes | None  # None for a sub-shard link
    link: Link
    record: bytes


def _parse_shard(
    cid: Cid, node: Node, message: UnixfsData, level: int
) -> list[_ParsedLink]:
    """Check a shard node as a whole before any of its entries is yielded."""
    if message.fanout != FANOUT:
        fail_read(cid, f"HAMT fanout {message.fanout}, expected {FANOUT}")
    if message.hash_type != HASH_MURMUR3_X64_64:
        fail_read(cid, f"HAMT hash type {message.hash_type}, expected 0x22 (murmur3)")
    records = records_of(cid, node.links, message)
    parsed = [
        _parse_link(cid, link, record, level)
        for link, record in zip(node.links, records)
    ]
    _check_slots(cid, parsed, message.data or b"")
    return parsed


def _parse_link(cid: Cid, link: Link, record: bytes, level: int) -> _ParsedLink:
    prefix, name = link.name[:2], link.name[2:]
    if len(prefix) != 2 or not _HEX_DIGITS.issuperset(prefix):
        fail_read(cid, f"link name {link.name!r} does not start with a slot in hex")
    slot = int(prefix, 16)
    if not name:
        if record:
            fail_read(cid, f"sub-shard link {link.name!r} has an entry record")
        return _ParsedLink(slot, None, link, record)
    problem = check_name(name)
    if problem is not None:
        fail_read(cid, problem)
    expected = slot_of(hash_name(name), level)
    if expected != slot:
        fail_read(
            cid, f"entry {name!r} is in slot {slot}, its hash leads to {expected}"
        )
    return _ParsedLink(slot, name, link, record)


def _check_slots(cid: Cid, parsed: Sequence[_ParsedLink], bitfield: bytes) -> None:
    if len(bitfield) > FANOUT // 8:
        fail_read(cid, f"HAMT bitfield of {len(bitfield)} bytes, over {FANOUT // 8}")
    bits = 0
    previous = -1
    for entry in parsed:
        if entry.slot <= previous:
            fail_read(cid, f"slot {entry.slot} after slot {previous}")
        previous = entry.slot
        bits |= 1 << entry.slot
    if bits != int.from_bytes(bitfield, "big"):
        fail_read(cid, "HAMT bitfield does not match the slots of the links")
