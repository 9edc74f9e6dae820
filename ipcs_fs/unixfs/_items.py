"""Types and checks shared by the basic directory and HAMT modules.

A directory *item* is one link of a directory, as its builder receives it and
its reader returns it. It has the entry's name, the CID and Tsize of what it
links to, and the entry record that ipcs-fs stores beside the link.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import pairwise, repeat
from typing import NamedTuple, NoReturn

from ..errors import InvalidArgumentError
from ..ids import Cid
from .dagpb import Link
from .data import UnixfsData

__all__ = [
    "DirectoryDag",
    "DirectoryItem",
    "check_items",
    "check_name",
    "fail_read",
    "records_field",
    "records_of",
]


class DirectoryItem(NamedTuple):
    """One directory entry: name, target CID, target Tsize and entry record.

    ``record`` is opaque to this package; an empty record is stored as
    nothing at all.
    """

    name: bytes
    cid: Cid
    tsize: int
    record: bytes


class DirectoryDag(NamedTuple):
    """A built directory: its root CID and Tsize (all its blocks' bytes)."""

    cid: Cid
    tsize: int


def check_name(name: bytes) -> str | None:
    """Return why ``name`` cannot name a directory entry, or None if it can.

    The rules are those of a path component that ``ipfs get`` can write:
    not empty, not ``.`` or ``..``, no ``/`` and no NUL byte.
    """
    if not name:
        return "empty name"
    if name in (b".", b".."):
        return f"reserved name {name!r}"
    if b"/" in name:
        return f"name {name!r} contains '/'"
    if b"\0" in name:
        return f"name {name!r} contains a NUL byte"
    return None


def check_items(
    items: Iterable[tuple[bytes, Cid, int, bytes]],
) -> list[DirectoryItem]:
    """Validate ``items`` and return them sorted by name.

    Raises InvalidArgumentError naming the first bad or duplicate entry.
    """
    checked = sorted((_check_item(item) for item in items), key=_name_of)
    for previous, item in pairwise(checked):
        if previous.name == item.name:
            raise InvalidArgumentError(
                f"failed to build directory: duplicate entry {item.name!r}"
            )
    return checked


def _name_of(item: DirectoryItem) -> bytes:
    return item.name


def _check_item(item: tuple[bytes, Cid, int, bytes]) -> DirectoryItem:
    name, cid, tsize, record = item
    problem = check_name(name)
    if problem is None and not isinstance(cid, Cid):
        problem = f"CID of entry {name!r} is {type(cid).__name__}, not Cid"
    if problem is None and not 0 <= tsize < 1 << 64:
        problem = f"Tsize {tsize} of entry {name!r} is not a uint64"
    if problem is not None:
        raise InvalidArgumentError(f"failed to build directory: {problem}")
    return DirectoryItem(bytes(name), cid, tsize, bytes(record))


def records_field(records: Sequence[bytes]) -> tuple[bytes, ...]:
    """Return the entry records to encode: none if all are empty, else all."""
    if any(records):
        return tuple(records)
    return ()


def records_of(cid: Cid, links: Sequence[Link], message: UnixfsData) -> Iterable[bytes]:
    """Return the entry record of each link of a directory node, in link order.

    Raises InvalidArgumentError if the node has records but not one per link.
    """
    records = message.entry_records
    if not records:
        return repeat(b"", len(links))
    if len(records) != len(links):
        raise InvalidArgumentError(
            f"failed to read directory {cid}: {len(records)} entry records"
            f" for {len(links)} links"
        )
    return records


def fail_read(cid: Cid, problem: str) -> NoReturn:
    """Raise InvalidArgumentError for a directory node that breaks a rule."""
    raise InvalidArgumentError(f"failed to read directory {cid}: {problem}")
