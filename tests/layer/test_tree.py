"""The rootfs tree: its rules in both stages, and the temporary files it spills.

Each rule is checked in four settings of :class:`TreeBuilder`: all objects (the
default for small layers), all events held in memory, all events spilled to one
run per event, and a switch from objects to events after two nodes. Every
setting must give the same tree, down to the rootfs CID.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from ipcs_fs.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    ResourceExhaustedError,
)
from ipcs_fs.ids import DAG_PB, Cid
from ipcs_fs.layer import spill
from ipcs_fs.layer.records import Kind, decode_entry
from ipcs_fs.layer.tree import TreeBuilder, TreeResult
from ipcs_fs.store import MemoryStore
from ipcs_fs.tar.entry import EntryKind, TarEntry
from ipcs_fs.unixfs import (
    DataType,
    FileBuilder,
    FileDag,
    UnixfsData,
    encode_data,
    encode_node,
    iter_directory,
)

SETTINGS = {
    "objects": {},
    "events": {"spill_threshold": 0},
    "runs": {"spill_threshold": 0, "memory_limit": 0},
    "switch": {"spill_threshold": 2, "memory_limit": 300},
}

_TYPEFLAGS = {
    EntryKind.FILE: b"0",
    EntryKind.HARDLINK: b"1",
    EntryKind.SYMLINK: b"2",
    EntryKind.DIR: b"5",
    EntryKind.FIFO: b"6",
}

EMPTY_FILE = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def _entry(
    name: bytes,
    kind: EntryKind = EntryKind.FILE,
    *,
    linkname: bytes = b"",
    mode: int = 0o644,
    size: int = 0,
) -> TarEntry:
    return TarEntry(
        name=name,
        kind=kind,
        typeflag=_TYPEFLAGS[kind],
        mode=mode,
        uid=0,
        gid=0,
        uname=b"",
        gname=b"",
        mtime_ns=1_700_000_000 * 1_000_000_000,
        size=size,
        data_size=size,
        linkname=linkname,
    )


def _file(store: MemoryStore, name: bytes, data: bytes) -> tuple[TarEntry, FileDag]:
    builder = FileBuilder(store.put)
    builder.write(data)
    return _entry(name, size=len(data)), builder.finish()


def _directory(name: bytes, mode: int = 0o755) -> tuple[TarEntry, None]:
    return _entry(name, EntryKind.DIR, mode=mode), None


def _link(name: bytes, target: bytes, kind: EntryKind) -> tuple[TarEntry, None]:
    return _entry(name, kind, linkname=target), None


def _build(
    setting: str, entries: list, store: MemoryStore, **options
) -> tuple[TreeResult, dict]:
    builder = TreeBuilder("test layer", **SETTINGS[setting], **options)
    for entry, content in entries:
        builder.add(entry, content)
    result = builder.finish(store.put)
    return result, _listing(store, result.cid)


def _listing(store: MemoryStore, cid: Cid, prefix: bytes = b"") -> dict:
    """Map each path under ``cid`` to (kind, mode, implied, CID)."""
    found = {}
    for item in iter_directory(store.get, cid):
        entry = decode_entry(item.record)
        path = prefix + item.name
        found[path] = (entry.kind, entry.mode, entry.implied, str(item.cid))
        if entry.kind is Kind.DIR:
            found.update(_listing(store, item.cid, path + b"/"))
    return found


def _symlink_cid(target: bytes) -> str:
    block = encode_node([], encode_data(UnixfsData(DataType.SYMLINK, data=target)))
    return str(Cid.for_block(DAG_PB, block))


def _mixed_tree(store: MemoryStore) -> list:
    """Entries that use every rule at least once."""
    return [
        _directory(b"./etc/", 0o700),
        _file(store, b"etc/passwd", b"root:x:0:0\n"),
        _directory(b"etc", 0o750),
        _file(store, b"usr/bin/tool", b"tool v1\n"),
        _link(b"usr/bin/alias", b"/usr/bin/tool", EntryKind.HARDLINK),
        _link(b"usr/bin/link", b"tool", EntryKind.SYMLINK),
        _file(store, b"usr/bin/tool", b"tool v2\n"),
        _file(store, b"var", b"not a directory yet\n"),
        _file(store, b"var/log/syslog", b""),
        _directory(b"opt/old"),
        _file(store, b"opt/old/gone", b"gone\n"),
        _file(store, b"opt/old", b"a file now\n"),
        (_entry(b"home/.wh.user"), None),
        (_entry(b"srv/.wh..wh..opq"), None),
        (_entry(b"srv/.wh..wh.plnk"), None),
        (_entry(b"dev/null", EntryKind.FIFO), None),
    ]


@pytest.fixture(params=sorted(SETTINGS))
def setting(request) -> str:
    return request.param


def test_mixed_tree_pins_rootfs_cid(setting: str) -> None:
    store = MemoryStore()
    entries = _mixed_tree(store)

    result, listing = _build(setting, entries, store)

    assert str(result.cid) == (
        "bafybeif653wobtj3g6wi7e74bmz4ty5yr547ih7aw3qlpeecgtn5lwjdnq"
    )
    assert result.content_size == 11 + 8 + 11
    assert sorted(listing) == [
        b"dev",
        b"dev/null",
        b"etc",
        b"etc/passwd",
        b"home",
        b"home/.wh.user",
        b"opt",
        b"opt/old",
        b"srv",
        b"srv/.wh..wh..opq",
        b"usr",
        b"usr/bin",
        b"usr/bin/alias",
        b"usr/bin/link",
        b"usr/bin/tool",
        b"var",
        b"var/log",
        b"var/log/syslog",
    ]


def test_mixed_tree_keeps_final_entries(setting: str) -> None:
    store = MemoryStore()
    entries = _mixed_tree(store)
    tool = str(entries[6][1].cid)

    _, listing = _build(setting, entries, store)

    assert listing[b"etc"][:3] == (Kind.DIR, 0o750, False)
    assert listing[b"usr/bin/tool"][3] == tool
    assert listing[b"usr/bin/alias"] == (Kind.HARDLINK, 0o644, False, tool)
    assert listing[b"usr/bin/link"][3] == _symlink_cid(b"tool")
    assert listing[b"var"][:3] == (Kind.DIR, 0o755, True)
    assert listing[b"opt/old"][0] is Kind.FILE
    assert listing[b"home/.wh.user"][0] is Kind.WHITEOUT
    assert listing[b"srv/.wh..wh..opq"][0] is Kind.OPAQUE


def test_directory_over_directory_keeps_children(setting: str) -> None:
    store = MemoryStore()
    entries = [
        _directory(b"d", 0o700),
        _file(store, b"d/x", b"x"),
        _directory(b"d/", 0o711),
    ]

    _, listing = _build(setting, entries, store)

    assert sorted(listing) == [b"d", b"d/x"]
    assert listing[b"d"][:3] == (Kind.DIR, 0o711, False)


def test_file_over_directory_drops_children(setting: str) -> None:
    store = MemoryStore()
    entries = [
        _directory(b"d"),
        _file(store, b"d/x", b"x"),
        _file(store, b"d", b"file"),
    ]

    _, listing = _build(setting, entries, store)

    assert sorted(listing) == [b"d"]
    assert listing[b"d"][0] is Kind.FILE


def test_entry_beneath_file_implies_directory(setting: str) -> None:
    store = MemoryStore()
    entries = [
        _directory(b"d"),
        _file(store, b"d/old", b"old"),
        _file(store, b"d", b"file"),
        _file(store, b"d/new", b"new"),
    ]

    _, listing = _build(setting, entries, store)

    assert sorted(listing) == [b"d", b"d/new"]
    assert listing[b"d"][:3] == (Kind.DIR, 0o755, True)


def test_deep_entry_implies_every_ancestor(setting: str) -> None:
    store = MemoryStore()
    entries = [_file(store, b"a/b/c/d", b"deep")]

    _, listing = _build(setting, entries, store)

    assert sorted(listing) == [b"a", b"a/b", b"a/b/c", b"a/b/c/d"]
    assert listing[b"a/b"][:3] == (Kind.DIR, 0o755, True)


def test_names_sort_by_components(setting: str) -> None:
    # b"a.b" sorts before b"a/b" as a path, but "a" before "a.b" as a name.
    store = MemoryStore()
    entries = [
        _file(store, b"a.b", b"1"),
        _file(store, b"a/b", b"2"),
        _file(store, b"a-", b"3"),
        _file(store, b"a/a/a", b"4"),
    ]

    result, listing = _build(setting, entries, store)

    assert [item.name for item in iter_directory(store.get, result.cid)] == [
        b"a",
        b"a-",
        b"a.b",
    ]
    assert sorted(listing) == [b"a", b"a-", b"a.b", b"a/a", b"a/a/a", b"a/b"]


def test_hardlink_chain_reaches_file(setting: str) -> None:
    store = MemoryStore()
    target = _file(store, b"bin/target", b"content")
    entries = [
        _link(b"bin/second", b"bin/first", EntryKind.HARDLINK),
        _link(b"bin/first", b"./bin/target", EntryKind.HARDLINK),
        target,
    ]

    _, listing = _build(setting, entries, store)

    assert listing[b"bin/second"][3] == str(target[1].cid)
    assert listing[b"bin/first"][3] == str(target[1].cid)


def test_hardlink_to_symlink_links_symlink(setting: str) -> None:
    store = MemoryStore()
    entries = [
        _link(b"l", b"/etc/target", EntryKind.SYMLINK),
        _link(b"h", b"l", EntryKind.HARDLINK),
    ]

    _, listing = _build(setting, entries, store)

    assert listing[b"h"][3] == _symlink_cid(b"/etc/target")


@pytest.mark.parametrize(
    "entries",
    [
        [_link(b"h", b"missing", EntryKind.HARDLINK)],
        [_link(b"h", b"h", EntryKind.HARDLINK)],
        [_link(b"h", b".", EntryKind.HARDLINK)],
        [_directory(b"d"), _link(b"h", b"d", EntryKind.HARDLINK)],
        [(_entry(b"f"), None), _link(b"h", b"f", EntryKind.HARDLINK)],
        [(_entry(b"d/x"), None), _link(b"h", b"d", EntryKind.HARDLINK)],
    ],
    ids=["missing", "itself", "root", "directory", "no content", "implied"],
)
def test_unresolved_hardlink_links_empty_file(setting: str, entries: list) -> None:
    _, listing = _build(setting, entries, MemoryStore())

    assert listing[b"h"] == (Kind.HARDLINK, 0o644, False, EMPTY_FILE)


def test_hardlink_follows_target_replaced_later(setting: str) -> None:
    store = MemoryStore()
    first = _file(store, b"t", b"first")
    second = _file(store, b"t", b"second")
    entries = [first, _link(b"h", b"t", EntryKind.HARDLINK), second]

    _, listing = _build(setting, entries, store)

    assert listing[b"h"][3] == str(second[1].cid)


def test_hardlink_to_removed_target_links_empty_file(setting: str) -> None:
    store = MemoryStore()
    entries = [
        _file(store, b"d/t", b"data"),
        _link(b"h", b"d/t", EntryKind.HARDLINK),
        _file(store, b"d", b"replaces the directory"),
    ]

    _, listing = _build(setting, entries, store)

    assert listing[b"h"][3] == EMPTY_FILE


def test_root_entry_goes_to_result(setting: str) -> None:
    entries = [_directory(b"./", 0o700), _directory(b"/", 0o750)]

    result, listing = _build(setting, entries, MemoryStore())

    assert listing == {}
    assert result.root is not None
    assert result.root.mode == 0o750


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            _entry(b"./"),
            (
                "invalid entry b'./' in test layer: a file entry cannot replace"
                " the layer root"
            ),
        ),
        (
            _entry(b"a/.wh."),
            "invalid whiteout b'a/.wh.' in test layer: it names no file",
        ),
        (
            _entry(b"a/b\0c"),
            "invalid entry b'a/b\\x00c' in test layer: the name contains a NUL byte",
        ),
    ],
)
def test_invalid_entry_is_rejected(setting: str, entry: TarEntry, message: str) -> None:
    builder = TreeBuilder("test layer", **SETTINGS[setting])

    with pytest.raises(InvalidArgumentError) as raised:
        builder.add(entry, None)

    assert str(raised.value) == message


def test_many_entries_merge_runs() -> None:
    store = MemoryStore()
    entries = [_file(store, b"f%03d" % index, b"%d" % index) for index in range(300)]
    objects, _ = _build("objects", entries, store)
    builder = TreeBuilder("test layer", spill_threshold=0, memory_limit=0)
    for entry, content in entries:
        builder.add(entry, content)

    # One run per event, and the 64th run merges all into one: after
    # 300 = 64 + 3 * 63 + 47 events, 48 runs remain.
    assert builder.spilled
    assert builder._events.run_count == 48
    assert builder.finish(store.put).cid == objects.cid


def _spill_files(directory: Path) -> list[str]:
    """The open files of this process in ``directory``."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


def _spilling_builder(directory: Path) -> TreeBuilder:
    builder = TreeBuilder(
        "test layer", spill_threshold=0, memory_limit=0, spill_directory=str(directory)
    )
    for index in range(10):
        builder.add(_entry(b"f%d" % index), None)
    assert len(_spill_files(directory)) == 10
    return builder


def test_finish_closes_spill_files(tmp_path: Path) -> None:
    builder = _spilling_builder(tmp_path)

    builder.finish(MemoryStore().put)

    assert _spill_files(tmp_path) == []
    assert os.listdir(tmp_path) == []


def test_failed_finish_closes_spill_files(tmp_path: Path) -> None:
    builder = _spilling_builder(tmp_path)

    def put(cid: Cid, block: bytes) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        builder.finish(put)

    assert _spill_files(tmp_path) == []


def test_dropped_builder_closes_spill_files(tmp_path: Path) -> None:
    builder = _spilling_builder(tmp_path)

    del builder
    gc.collect()

    assert _spill_files(tmp_path) == []


def test_missing_spill_directory_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    builder = TreeBuilder(
        "test layer", spill_threshold=0, memory_limit=0, spill_directory=str(missing)
    )

    with pytest.raises(FailedPreconditionError) as raised:
        builder.add(_entry(b"f"), None)

    assert str(raised.value) == (
        f"failed to create a temporary file in {missing} for the entries of"
        " test layer: No such file or directory"
    )


class _FullDisk:
    """A temporary file whose writes fail as on a full file system."""

    def write(self, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    def close(self) -> None:
        self.closed = True


def test_full_disk_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    full = _FullDisk()
    monkeypatch.setattr(spill.tempfile, "TemporaryFile", lambda **options: full)
    builder = TreeBuilder("test layer", spill_threshold=0, memory_limit=0)

    with pytest.raises(ResourceExhaustedError) as raised:
        builder.add(_entry(b"f"), None)

    assert str(raised.value).startswith("failed to write a temporary file in ")
    assert str(raised.value).endswith(
        " for the entries of test layer: No space left on device"
    )
    assert full.closed
