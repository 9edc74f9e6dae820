"""Spilled and in-memory trees compared on adversarial entry sequences.

The in-memory tree is the reference: for every sequence, each spilling setting
of :class:`TreeBuilder` must give the same rootfs CID, Tsize, content size and
root entry, or the same error. Names come from a small set, so that paths
collide, replace each other and nest often. The set has names that sort near
the separator (``\\x01``, ``-``, ``.``) or last (``\\xff``), names that are
prefixes of others, whiteouts and opaque markers.
"""

from __future__ import annotations

import logging
import random

import pytest

from ipcs_fs.errors import IpcsError, ResourceExhaustedError
from ipcs_fs.layer import spill
from ipcs_fs.layer.tree import TreeBuilder
from ipcs_fs.store import MemoryStore
from ipcs_fs.tar.entry import EntryKind
from tests.layer.test_tree import _directory, _entry, _file, _link

SPILLING = [
    {"spill_threshold": 0},
    {"spill_threshold": 0, "memory_limit": 0},
    {"spill_threshold": 1, "memory_limit": 100},
    {"spill_threshold": 3, "memory_limit": 200},
]

_NAMES = [
    b"a",
    b"a.b",
    b"a-",
    b"a\x01",
    b"a\x7f",
    b"\x01",
    b"\xff",
    b".wh.a",
    b".wh..wh..opq",
    b".wh..wh.plnk",
]
_ODD_TARGETS = [b"./", b"", b"a/../..", b"a\x00b", b"\xff/\xff"]


def _random_path(rng: random.Random) -> bytes:
    path = b"/".join(rng.choice(_NAMES) for _ in range(rng.choice([1, 1, 2, 3, 4])))
    if rng.random() < 0.2:
        path = b"./" + path
    if rng.random() < 0.1:
        path += b"/"
    if rng.random() < 0.05:
        path = b"x/../" + path.replace(b"/", b"//")
    return path


def _random_entry(rng: random.Random, store: MemoryStore, index: int) -> tuple:
    path = _random_path(rng)
    roll = rng.random()
    if roll < 0.3:
        return _file(store, path, rng.choice([b"", b"x", bytes([index % 256])]))
    if roll < 0.55:
        return _directory(path, rng.choice([0o755, 0o700]))
    if roll < 0.75:
        target = rng.choice([_random_path(rng), rng.choice(_ODD_TARGETS)])
        return _link(path, target, EntryKind.HARDLINK)
    if roll < 0.85:
        return _link(path, _random_path(rng), EntryKind.SYMLINK)
    if roll < 0.95:
        return _entry(path, EntryKind.FIFO), None
    return _directory(rng.choice([b"./", b".", b"/"]))


def _outcome(entries: list, store: MemoryStore, **options) -> tuple:
    builder = TreeBuilder("test layer", **options)
    try:
        for entry, content in entries:
            builder.add(entry, content)
        result = builder.finish(store.put)
    except IpcsError as error:
        return type(error).__name__, str(error)
    finally:
        builder.close()
    return str(result.cid), result.tsize, result.content_size, result.root


def _assert_same_in_every_setting(entries: list, store: MemoryStore) -> None:
    expected = _outcome(entries, store)
    for options in SPILLING:
        assert _outcome(entries, store, **options) == expected, options


@pytest.fixture(autouse=True)
def _quiet_tree_warnings():
    # Each entry beneath a non-directory logs a warning, and these tests make
    # hundreds.
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


@pytest.mark.parametrize("first_seed", [0, 100])
def test_random_sequences_match_objects(first_seed: int) -> None:
    for seed in range(first_seed, first_seed + 100):
        rng = random.Random(seed)
        store = MemoryStore()
        entries = [_random_entry(rng, store, index) for index in range(25)]

        _assert_same_in_every_setting(entries, store)


def _sequence(store: MemoryStore, case: str) -> list:
    """Hand-picked sequences that stress one rule each."""
    cases = {
        "prefix names": [
            _file(store, b"a-", b"1"),
            _file(store, b"a/b", b"2"),
            _file(store, b"a.b", b"3"),
            _file(store, b"a\x01/c", b"4"),
            _file(store, b"\xff/a", b"5"),
            _link(b"a/c", b"a-", EntryKind.HARDLINK),
        ],
        "file dir file": [
            _file(store, b"p", b"1"),
            _file(store, b"p/q", b"2"),
            _directory(b"p"),
            _file(store, b"p/r", b"3"),
            _file(store, b"p", b"4"),
            _file(store, b"p/s", b"5"),
        ],
        "hardlink to replaced path": [
            _file(store, b"t", b"old"),
            _link(b"h", b"t", EntryKind.HARDLINK),
            _directory(b"t"),
            _file(store, b"t/u", b"x"),
            _link(b"g", b"t/u", EntryKind.HARDLINK),
            _file(store, b"t", b"new"),
        ],
        "hardlink chain and loop": [
            _file(store, b"f", b"data"),
            _link(b"h1", b"f", EntryKind.HARDLINK),
            _link(b"h2", b"h1", EntryKind.HARDLINK),
            _link(b"h3", b"h2", EntryKind.HARDLINK),
            _link(b"l1", b"l2", EntryKind.HARDLINK),
            _link(b"l2", b"l1", EntryKind.HARDLINK),
            _link(b"d", b"dir", EntryKind.HARDLINK),
            _directory(b"dir"),
        ],
        "whiteout then re-creation": [
            (_entry(b"w/.wh.x"), None),
            _file(store, b"w/x", b"back"),
            (_entry(b"w/.wh..wh..opq"), None),
            _file(store, b"w/.wh.x/y", b"beneath a whiteout"),
        ],
        "duplicates and root": [
            _directory(b"./"),
            _file(store, b"./d/f", b"1"),
            _file(store, b"d//f", b"1"),
            _directory(b"/", 0o700),
            _directory(b"d/"),
            _directory(b"d"),
        ],
    }
    return cases[case]


@pytest.mark.parametrize(
    "case",
    [
        "prefix names",
        "file dir file",
        "hardlink to replaced path",
        "hardlink chain and loop",
        "whiteout then re-creation",
        "duplicates and root",
    ],
)
def test_adversarial_sequence_matches_objects(case: str) -> None:
    store = MemoryStore()

    _assert_same_in_every_setting(_sequence(store, case), store)


def test_deep_path_builds_in_every_setting() -> None:
    # 1,200 components make a 2,399-byte path, which a tar stores in a PAX
    # header. Writing the objects once recursed a level per component.
    store = MemoryStore()
    entries = [_file(store, b"/".join([b"d"] * 1200), b"deep")]

    expected = _outcome(entries, store)
    assert expected[0].startswith("bafybei")
    for options in SPILLING:
        assert _outcome(entries, store, **options) == expected, options


def test_buffered_full_disk_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # Writes to /dev/full fail with ENOSPC, as on a full file system. The run
    # file is buffered, so the failure comes when its buffer is flushed, and
    # closing it flushes and fails once more.
    opened = []

    def temporary_file(**options: object):
        opened.append(open("/dev/full", "w+b"))  # noqa: SIM115
        return opened[-1]

    monkeypatch.setattr(spill.tempfile, "TemporaryFile", temporary_file)
    builder = TreeBuilder("test layer", spill_threshold=0, memory_limit=0)

    with pytest.raises(ResourceExhaustedError) as raised:
        builder.add(_entry(b"f"), None)

    assert str(raised.value).startswith("failed to write a temporary file in ")
    assert str(raised.value).endswith(
        " for the entries of test layer: No space left on device"
    )
    assert opened[0].closed
