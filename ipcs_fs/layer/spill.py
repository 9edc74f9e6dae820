"""A layer's tree as sortable events, sorted in bounded memory, and walked by path.

Terms:

- *key*: a path's cleaned components joined by NUL. Names contain no NUL, so
  in byte order a path's key comes right before the keys of its descendants,
  and its children's keys come in name order.
- *sequence number*: an entry's position among the entries of its tar.
- *event*: one entry as a byte string (:func:`encode_event`): its key, two
  NULs, then a head starting with its sequence number (big-endian), then what
  its directory link needs: content CID, link target and encoded entry record.
  Sorted as bytes, events come by key, and by tar order within a key.
- *run*: sorted events in a temporary file, written in *blocks* (a 4-byte
  big-endian length, then a ``marshal`` dump of a list of events).
- *cutoff*: the latest sequence number of a non-directory entry at any
  ancestor of a path. That entry removed whatever the path held before.

:class:`ExternalSorter` keeps byte strings in a list until they take more than
its memory limit. Then it sorts the list and writes it out as a run. Reading
merges the runs, as an external merge sort does. Run files come from
``tempfile.TemporaryFile``, which on Linux creates them unlinked, so their space
returns to the file system when the sorter is closed or collected, or when the
process ends for any reason.

:func:`walk_events` reads sorted events and gives each path's final state, deepest
first. Of a path's events after its cutoff, the latest remains if it is a
directory, or if nothing beneath the path remains. A path with something
remaining beneath it and no directory entry remaining is an implied directory.
"""

from __future__ import annotations

import errno
import heapq
import logging
import marshal
import struct
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, NamedTuple, Self

from ..errors import FailedPreconditionError, IpcsError, ResourceExhaustedError
from ..ids import Cid
from ..unixfs import FileDag
from .records import Entry, Kind, encode_entry

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "SEPARATOR",
    "Event",
    "ExternalSorter",
    "Frame",
    "decode_event",
    "encode_event",
    "walk_events",
]

log = logging.getLogger(__name__)

DEFAULT_MEMORY_LIMIT = 32 << 20
"""Bytes of items held in memory before they are written out as a run."""

SEPARATOR = b"\0"
_KEY_END = b"\0\0"
# Sequence number, kind, content CID codec, CID length, content Tsize, content
# size, link target length. Content CIDs are raw or dag-pb, so one byte is
# enough for the codec.
_HEAD = struct.Struct(">QBBBQQI")
_SEQUENCE_SIZE = 8
_NO_SEQUENCE = bytes(_SEQUENCE_SIZE)
_DIR = int(Kind.DIR)
_KINDS = {int(kind): kind for kind in Kind}

# Memory a list spends on each bytes item besides its content: the object header
# (sys.getsizeof(b"") is 33 on 64-bit CPython), the list's pointer and some
# over-allocation.
_ITEM_OVERHEAD = 48
_BLOCK_SIZE = 64 << 10
# Merging more runs than this at once would hold a block of each in memory;
# past it, the runs so far are merged into one.
_MAX_RUNS = 64
_BLOCK_LENGTH = struct.Struct(">I")
_FULL_DISK = frozenset((errno.ENOSPC, errno.EDQUOT))


class Event(NamedTuple):
    """The part of an event that a directory link is made from."""

    kind: Kind
    cid: Cid | None
    """The content CID of a regular file, if it has one."""
    tsize: int
    size: int
    """The content size of a regular file that has a content CID."""
    link_target: bytes
    """A symlink's target as the tar gives it, a hardlink's target as a key."""
    record: bytes


def encode_event(
    key: bytes,
    sequence: int,
    record: Entry,
    content: FileDag | None,
    link_target: bytes,
) -> bytes:
    """Encode one entry as an event; ``link_target`` as :class:`Event` has it."""
    if content is None:
        head = _HEAD.pack(sequence, record.kind, 0, 0, 0, 0, len(link_target))
        cid = b""
    else:
        cid = content.cid.raw
        head = _HEAD.pack(
            sequence,
            record.kind,
            content.cid.codec,
            len(cid),
            content.tsize,
            record.size,
            len(link_target),
        )
    record_bytes = encode_entry(record)
    return b"".join((key, _KEY_END, head, cid, link_target, record_bytes))


def decode_event(event: bytes, offset: int) -> Event:
    """Decode the event whose head starts at ``offset`` (after its key)."""
    _, kind, codec, cid_size, tsize, size, target_size = _HEAD.unpack_from(
        event, offset
    )
    position = offset + _HEAD.size
    cid = Cid(event[position : position + cid_size], codec) if cid_size else None
    position += cid_size
    target = event[position : position + target_size]
    record = event[position + target_size :]
    return Event(_KINDS[kind], cid, tsize, size, target, record)


class ExternalSorter:
    """Collect byte strings and hand them back sorted, holding a bounded amount.

    ``source`` names what the items belong to in error messages; ``directory``
    is where run files go (None for the system's temporary directory, which
    ``TMPDIR`` sets). Call :meth:`add` for each item, then iterate
    :meth:`sorted_items` as often as needed (one iteration at a time, since
    they share the run files), then :meth:`close`. Raises
    ResourceExhaustedError when the file system is full and
    FailedPreconditionError for any other failure to write or read a run.
    """

    def __init__(
        self,
        source: str,
        *,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        directory: str | None = None,
    ) -> None:
        self._source = source
        self._memory_limit = memory_limit
        self._directory = directory
        self._items: list[bytes] = []
        self._held_bytes = 0
        self._runs: list[BinaryIO] = []
        self._finalizer = weakref.finalize(self, _close_all, self._runs)

    @property
    def run_count(self) -> int:
        """How many runs are on disk (0 while every item fits in memory)."""
        return len(self._runs)

    def add(self, item: bytes) -> None:
        """Add ``item``; past the memory limit, write the held items as a run."""
        self._items.append(item)
        self._held_bytes += len(item) + _ITEM_OVERHEAD
        if self._held_bytes > self._memory_limit:
            self._spill()

    def sorted_items(self) -> Iterator[bytes]:
        """Return an iterator over every item added so far, in byte order."""
        if not self._runs:
            self._items.sort()
            return iter(self._items)
        if self._items:
            self._spill()
        return self._merge(self._runs)

    def close(self) -> None:
        """Close the run files, which frees their space. Safe to call twice."""
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _spill(self) -> None:
        self._items.sort()
        self._runs.append(self._write_run(self._items))
        log.debug(
            "wrote run %d of %d items for %s",
            len(self._runs),
            len(self._items),
            self._source,
        )
        self._items = []
        self._held_bytes = 0
        if len(self._runs) >= _MAX_RUNS:
            self._merge_runs()

    def _merge_runs(self) -> None:
        merged = self._write_run(self._merge(self._runs))
        _close_all(self._runs)
        self._runs.append(merged)

    def _write_run(self, items: Iterable[bytes]) -> BinaryIO:
        try:
            run = tempfile.TemporaryFile(  # noqa: SIM115 (the sorter owns it)
                prefix="ipcs-fs-sort-", dir=self._directory
            )
        except OSError as error:
            raise self._error("create", error) from error
        try:
            _write_blocks(run, items)
        except OSError as error:
            _discard(run)
            raise self._error("write", error) from error
        except BaseException:
            _discard(run)
            raise
        return run

    def _merge(self, runs: list[BinaryIO]) -> Iterator[bytes]:
        return heapq.merge(*(self._read_run(run) for run in runs))

    def _read_run(self, run: BinaryIO) -> Iterator[bytes]:
        try:
            run.seek(0)
            while (block := _read_block(run)) is not None:
                yield from block
        except OSError as error:
            raise self._error("read", error) from error

    def _error(self, verb: str, error: OSError) -> IpcsError:
        where = self._directory or tempfile.gettempdir()
        message = (
            f"failed to {verb} a temporary file in {where} for the entries of"
            f" {self._source}: {error.strerror or error}"
        )
        if error.errno in _FULL_DISK:
            return ResourceExhaustedError(message)
        return FailedPreconditionError(message)


def _write_blocks(run: BinaryIO, items: Iterable[bytes]) -> None:
    block: list[bytes] = []
    size = 0
    for item in items:
        block.append(item)
        size += len(item)
        if size >= _BLOCK_SIZE:
            _write_block(run, block)
            block = []
            size = 0
    if block:
        _write_block(run, block)
    run.flush()


def _write_block(run: BinaryIO, block: list[bytes]) -> None:
    data = marshal.dumps(block)
    run.write(_BLOCK_LENGTH.pack(len(data)))
    run.write(data)


def _read_block(run: BinaryIO) -> list[bytes] | None:
    """Read the next block of ``run``; None at its end."""
    head = run.read(_BLOCK_LENGTH.size)
    if not head:
        return None
    if len(head) < _BLOCK_LENGTH.size:
        raise OSError(errno.EIO, "run file ends inside a block length")
    (length,) = _BLOCK_LENGTH.unpack(head)
    data = run.read(length)
    if len(data) != length:
        raise OSError(errno.EIO, "run file ends inside a block")
    return marshal.loads(data)


def _discard(run: BinaryIO) -> None:
    """Close a run that failed to be written, whatever its buffer still holds.

    Closing flushes the buffer first, which on a full file system fails again
    and would hide the first error. The file descriptor is closed either way.
    """
    try:
        run.close()
    except OSError as error:
        log.debug("dropped the unwritten end of a discarded run: %s", error)


def _close_all(runs: list[BinaryIO]) -> None:
    for run in runs:
        run.close()
    runs.clear()


class Frame:
    """A path whose subtree :func:`walk_events` is in, and what its events left.

    ``end`` is the length of the path's key: every open frame is an ancestor
    of the path the walk is at, so its key is a prefix of that path's key.
    """

    __slots__ = (
        "children",
        "children_cutoff",
        "cutoff",
        "end",
        "latest",
        "latest_offset",
        "name",
        "newest",
        "newest_beneath",
    )

    def __init__(self, name: bytes, end: int, cutoff: bytes) -> None:
        self.name = name
        self.end = end
        self.cutoff = cutoff
        # The cutoff of the children: ``cutoff`` or this path's latest
        # non-directory entry, whichever is later.
        self.children_cutoff = cutoff
        # The latest event at this path after ``cutoff``, and where its head
        # starts; None for an implied directory once the frame is visited.
        self.latest: bytes | None = None
        self.latest_offset = 0
        # Sequence numbers of the latest event at this path and beneath it,
        # removed ones included.
        self.newest = _NO_SEQUENCE
        self.newest_beneath = _NO_SEQUENCE
        self.children: list = []

    def final_state(self) -> Event | None:
        """Decode what remains at this path; None for an implied directory."""
        if self.latest is None:
            return None
        return decode_event(self.latest, self.latest_offset)


Visit = Callable[[Frame, bytes], object]


def walk_events(
    events: Iterable[bytes],
    visit: Visit,
    source: str,
    only: set[bytes] | None = None,
) -> list:
    """Visit every path of the sorted ``events`` that remains, deepest first.

    ``visit(frame, key)`` gets each remaining path after all of its children,
    with ``frame.latest`` None for an implied directory, and a key of which
    the path's key is the first ``frame.end`` bytes. What it returns goes to
    the parent's ``children``. Returns the root's ``children``.

    With ``only``, frames open just for the keys in it, and it must include
    the ancestors of each of its keys. An event of any other key then only
    marks its nearest open ancestor as having something beneath it.
    ``source`` names the layer in logs.
    """
    return _Walk(visit, source, only).run(events)


class _Walk:
    def __init__(self, visit: Visit, source: str, only: set[bytes] | None) -> None:
        self._visit = visit
        self._source = source
        self._only = only
        self._stack = [Frame(b"", 0, _NO_SEQUENCE)]
        # The key of the top frame, of which every open frame's key is a prefix.
        self._path = b""

    def run(self, events: Iterable[bytes]) -> list:
        stack = self._stack
        only = self._only
        frame: Frame | None = stack[0]
        previous = b""
        for event in events:
            end = event.index(_KEY_END)
            offset = end + len(_KEY_END)
            if end != len(previous) or not event.startswith(previous):
                previous = event[:end]
                if only is None or previous in only:
                    frame = self._enter(previous)
                else:
                    frame = None
                    self._close_to(previous, len(previous))
            sequence = event[offset : offset + _SEQUENCE_SIZE]
            if frame is None:
                top = stack[-1]
                top.newest_beneath = max(top.newest_beneath, sequence)
                continue
            # The events of one key come in tar order.
            frame.newest = sequence
            if sequence > frame.cutoff:
                frame.latest = event
                frame.latest_offset = offset
            if event[offset + _SEQUENCE_SIZE] != _DIR and sequence > frame.cutoff:
                frame.children_cutoff = sequence
        while len(stack) > 1:
            self._leave()
        return stack[0].children

    def _enter(self, key: bytes) -> Frame:
        """Close the frames that are not ancestors of ``key``; open its own."""
        cut = key.rfind(SEPARATOR)
        parent_end = max(cut, 0)
        self._close_to(key, parent_end)
        self._path = key
        top = self._stack[-1].end
        if top != parent_end:
            # Open the ancestors that have no entry of their own.
            start = top + 1 if top else 0
            for name in key[start:parent_end].split(SEPARATOR):
                self._open(name, start + len(name))
                start += len(name) + 1
        return self._open(key[cut + 1 :], len(key))

    def _close_to(self, key: bytes, end: int) -> None:
        """Close frames until the top one is ``key[:end]`` or an ancestor of it."""
        stack = self._stack
        path = self._path
        while True:
            top = stack[-1].end
            if top == 0:
                return
            at_boundary = top == end or (top < end and key[top] == 0)
            if at_boundary and key.startswith(path[:top]):
                return
            self._leave()

    def _open(self, name: bytes, end: int) -> Frame:
        frame = Frame(name, end, self._stack[-1].children_cutoff)
        self._stack.append(frame)
        return frame

    def _leave(self) -> None:
        """Close the top frame and give its final state, if any, to its parent."""
        stack = self._stack
        frame = stack.pop()
        parent = stack[-1]
        beneath = frame.newest_beneath
        parent.newest_beneath = max(parent.newest_beneath, frame.newest, beneath)
        latest = frame.latest
        # The latest event beneath remains, because only a later non-directory
        # entry at an ancestor could have removed it, and that would be a later
        # cutoff.
        if beneath > frame.children_cutoff:
            if latest and latest[frame.latest_offset + _SEQUENCE_SIZE] != _DIR:
                self._warn_beneath(frame)
                frame.latest = None
        elif latest is None:
            return
        parent.children.append(self._visit(frame, self._path))

    def _warn_beneath(self, frame: Frame) -> None:
        log.warning(
            "entry beneath non-directory %r in %s; the tree keeps it as a directory",
            self._path[: frame.end].replace(SEPARATOR, b"/"),
            self._source,
        )
