"""The external sort of events and the walk over them."""

from __future__ import annotations

import random

import pytest

from ipcs_fs.errors import FailedPreconditionError
from ipcs_fs.layer.records import Entry, Kind
from ipcs_fs.layer.spill import (
    ExternalSorter,
    Frame,
    decode_event,
    encode_event,
    walk_events,
)
from ipcs_fs.unixfs import FileBuilder


def _items() -> list[bytes]:
    rng = random.Random(7)
    items = [rng.randbytes(rng.randrange(0, 40)) for _ in range(2000)]
    return items + [b"", b"", b"same", b"same", bytes(200_000)]


@pytest.mark.parametrize("memory_limit", [0, 5000, 1 << 30])
def test_sorter_returns_items_sorted(memory_limit: int) -> None:
    items = _items()

    with ExternalSorter("test", memory_limit=memory_limit) as sorter:
        for item in items:
            sorter.add(item)
        first = list(sorter.sorted_items())
        second = list(sorter.sorted_items())

    assert first == sorted(items)
    assert second == first


def test_sorter_under_limit_writes_no_run() -> None:
    with ExternalSorter("test", memory_limit=1 << 20) as sorter:
        for item in _items():
            sorter.add(item)

        assert sorter.run_count == 0


def test_sorter_close_twice() -> None:
    sorter = ExternalSorter("test", memory_limit=0)
    sorter.add(b"x")
    assert sorter.run_count == 1

    sorter.close()
    sorter.close()

    assert sorter.run_count == 0


def test_truncated_run_is_named() -> None:
    with ExternalSorter("test layer", memory_limit=0) as sorter:
        sorter.add(b"item")
        sorter._runs[0].truncate(6)

        with pytest.raises(FailedPreconditionError) as raised:
            list(sorter.sorted_items())

    assert str(raised.value).startswith("failed to read a temporary file in ")
    assert str(raised.value).endswith(
        " for the entries of test layer: run file ends inside a block"
    )


def _event(path: bytes, sequence: int, kind: Kind) -> bytes:
    key = path.replace(b"/", b"\0")
    return encode_event(key, sequence, Entry(kind=kind, mode=0o600), None, b"")


def _visit_log(events: list[bytes], only: set[bytes] | None = None) -> list:
    visits = []

    def visit(frame: Frame, path: bytes) -> object:
        state = frame.final_state()
        kind = "implied" if state is None else state.kind.name
        visits.append((path[: frame.end].replace(b"\0", b"/"), kind))
        return True

    walk_events(sorted(events), visit, "test layer", only)
    return visits


def test_walk_visits_children_first() -> None:
    events = [
        _event(b"b", 1, Kind.FILE),
        _event(b"a/y", 2, Kind.FILE),
        _event(b"a", 3, Kind.DIR),
        _event(b"a/x/z", 4, Kind.SYMLINK),
        _event(b"a.b", 5, Kind.FIFO),
    ]

    assert _visit_log(events) == [
        (b"a/x/z", "SYMLINK"),
        (b"a/x", "implied"),
        (b"a/y", "FILE"),
        (b"a", "DIR"),
        (b"a.b", "FIFO"),
        (b"b", "FILE"),
    ]


def test_walk_applies_cutoffs() -> None:
    events = [
        _event(b"d", 1, Kind.DIR),
        _event(b"d/removed", 2, Kind.FILE),
        _event(b"d", 3, Kind.FILE),
        _event(b"d/kept", 4, Kind.FILE),
        _event(b"f", 5, Kind.FILE),
        _event(b"f/x", 6, Kind.FILE),
        _event(b"f", 7, Kind.FILE),
    ]

    assert _visit_log(events) == [
        (b"d/kept", "FILE"),
        (b"d", "implied"),
        (b"f", "FILE"),
    ]


def test_walk_with_only_visits_listed_paths() -> None:
    events = [
        _event(b"a/b/c", 1, Kind.FILE),
        _event(b"a/b", 2, Kind.FILE),
        _event(b"a/b/d", 3, Kind.FILE),
        _event(b"a/e", 4, Kind.FILE),
    ]

    assert _visit_log(events, {b"a", b"a\0b"}) == [
        (b"a/b", "implied"),
        (b"a", "implied"),
    ]


def test_event_round_trip() -> None:
    builder = FileBuilder(lambda cid, block: None)
    builder.write(b"content")
    content = builder.finish()
    record = Entry(kind=Kind.FILE, mode=0o644, size=7)

    event = encode_event(b"a\0b", 9, record, content, b"target")
    decoded = decode_event(event, event.index(b"\0\0") + 2)

    assert decoded.kind is Kind.FILE
    assert decoded.cid == content.cid
    assert (decoded.tsize, decoded.size) == (content.tsize, 7)
    assert decoded.link_target == b"target"
    assert decoded.record == b"\x08\x01\x10\xa4\x03\x48\x07"
