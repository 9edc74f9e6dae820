"""EmbeddedStore: its directory, locking, concurrency and crash safety."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from ipcs_fs.errors import (
    DataLossError,
    FailedPreconditionError,
    NotFoundError,
    UnavailableError,
)
from ipcs_fs.ids import RAW, Cid, Digest
from ipcs_fs.store import EmbeddedStore, StoreStat, default_store_path, verified
from ipcs_fs.store._sqlite import INLINE_READ_MAX
from ipcs_fs.store.embedded import DATABASE_NAME, PAGE_SIZE

WRITERS = 4
BLOCKS_PER_WRITER = 2000


def writer_block(writer: int, index: int) -> tuple[Cid, bytes]:
    """Return a deterministic block of 32 bytes to 8 KiB for one writer."""
    seed = hashlib.sha256(f"{writer}/{index}".encode()).digest()
    block = seed * (1 + index % 256)
    return Cid.for_block(RAW, block), block


@contextmanager
def raw_database(path: Path) -> Iterator[sqlite3.Connection]:
    """Open the store's database directly; commit and close it at the end."""
    connection = sqlite3.connect(path / DATABASE_NAME)
    try:
        with connection:
            yield connection
    finally:
        connection.close()


def integrity(path: Path) -> str:
    with raw_database(path) as connection:
        result: str = connection.execute("PRAGMA integrity_check").fetchone()[0]
    return result


def assert_every_block_verifies(store: EmbeddedStore) -> int:
    count = 0
    for cid in store.cids():
        block = store.get(cid)
        assert cid.matches(block), f"block {cid} does not match its CID"
        count += 1
    return count


# Directory and database


def test_creates_directory_0700(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "store"
    old_umask = os.umask(0o277)
    try:
        EmbeddedStore(path).close()
    finally:
        os.umask(old_umask)

    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert (path / DATABASE_NAME).is_file()


def test_keeps_mode_of_existing_directory(tmp_path: Path) -> None:
    path = tmp_path / "store"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    EmbeddedStore(path).close()

    assert stat.S_IMODE(path.stat().st_mode) == 0o755


def test_path_is_file(tmp_path: Path) -> None:
    path = tmp_path / "store"
    path.write_bytes(b"")

    with pytest.raises(FailedPreconditionError, match="is not a directory"):
        EmbeddedStore(path)


def test_foreign_database_rejected(tmp_path: Path) -> None:
    path = tmp_path / "store"
    path.mkdir()
    with raw_database(path) as connection:
        connection.execute("CREATE TABLE notes (text TEXT)")

    with pytest.raises(FailedPreconditionError) as raised:
        EmbeddedStore(path)
    assert str(raised.value) == (
        f"failed to open store {path / DATABASE_NAME}: it is a SQLite database"
        " of another application, so choose another store directory"
    )


def test_newer_schema_rejected(tmp_path: Path) -> None:
    path = tmp_path / "store"
    EmbeddedStore(path).close()
    with raw_database(path) as connection:
        connection.execute("PRAGMA user_version = 2")

    with pytest.raises(FailedPreconditionError) as raised:
        EmbeddedStore(path)
    assert str(raised.value) == (
        f"failed to open store {path / DATABASE_NAME}: it has schema version 2,"
        " but this ipcs-fs reads only version 1"
    )


def test_database_in_wal_mode(tmp_path: Path) -> None:
    EmbeddedStore(tmp_path / "store").close()

    with raw_database(tmp_path / "store") as connection:
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_new_database_page_size(tmp_path: Path) -> None:
    EmbeddedStore(tmp_path / "store").close()

    with raw_database(tmp_path / "store") as connection:
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    assert page_size == PAGE_SIZE


def test_existing_database_keeps_page_size(tmp_path: Path) -> None:
    path = tmp_path / "store"
    path.mkdir()
    cid, block = writer_block(0, 3)
    with raw_database(path) as connection:
        connection.execute("PRAGMA page_size = 4096")
        connection.execute("CREATE TABLE scratch (x)")
        connection.execute("DROP TABLE scratch")

    with EmbeddedStore(path) as store:
        store.put(cid, block)
        assert store.get(cid) == block
    with raw_database(path) as connection:
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    assert page_size == 4096


def test_reopen_keeps_blocks_and_pins(tmp_path: Path) -> None:
    cid, block = writer_block(0, 7)
    with EmbeddedStore(tmp_path / "store") as store:
        store.put(cid, block)
        store.pin(cid)

    with EmbeddedStore(tmp_path / "store") as store:
        assert store.get(cid) == block
        assert list(store.pins()) == [cid]
        assert store.stat() == StoreStat(blocks=1, bytes=len(block))


# Verified layers

_DIFF_ID = Digest("ab" * 32)


def test_verified_layer_recorded_and_forgotten(tmp_path: Path) -> None:
    root, other = writer_block(0, 1)[0], writer_block(0, 2)[0]
    with EmbeddedStore(tmp_path / "store") as store:
        store.record_verified(root, _DIFF_ID)
        recorded = store.verified_diff_id(root)
        unrecorded = store.verified_diff_id(other)
        store.forget_verified(root)

        assert recorded == _DIFF_ID
        assert unrecorded is None
        assert store.verified_diff_id(root) is None


def test_verified_layer_survives_reopen(tmp_path: Path) -> None:
    root = writer_block(0, 1)[0]
    with EmbeddedStore(tmp_path / "store") as store:
        store.record_verified(root, _DIFF_ID)

    with EmbeddedStore(tmp_path / "store") as store:
        assert store.verified_diff_id(root) == _DIFF_ID


def test_delete_drops_verified_record(tmp_path: Path) -> None:
    (root, block), (kept, kept_block) = writer_block(0, 1), writer_block(0, 2)
    with EmbeddedStore(tmp_path / "store") as store:
        store.put(root, block)
        store.put(kept, kept_block)
        store.record_verified(root, _DIFF_ID)
        store.record_verified(kept, _DIFF_ID)

        deleted = store.delete([root])

        assert deleted == 1
        assert store.verified_diff_id(root) is None
        assert store.verified_diff_id(kept) == _DIFF_ID


def test_store_without_verified_table_gets_it(tmp_path: Path) -> None:
    root, block = writer_block(0, 1)
    with EmbeddedStore(tmp_path / "store") as store:
        store.put(root, block)
    # A store made before the table existed.
    with raw_database(tmp_path / "store") as connection:
        connection.execute("DROP TABLE verified_layers")

    with EmbeddedStore(tmp_path / "store") as store:
        store.record_verified(root, _DIFF_ID)

        assert store.verified_diff_id(root) == _DIFF_ID
        assert store.get(root) == block


# Read snapshots


def test_snapshot_keeps_deleted_blocks(tmp_path: Path) -> None:
    (small, small_block), (large, large_block) = writer_block(0, 1), _large_block()
    with EmbeddedStore(tmp_path / "store") as store:
        store.put_many([(small, small_block), (large, large_block)])
        with EmbeddedStore(tmp_path / "store") as other, store.snapshot():
            other.delete([small, large])
            inside = [store.get(small), store.get(large)]

        assert inside == [small_block, large_block]
        with pytest.raises(NotFoundError):
            store.get(small)


def test_lookups_keep_snapshot(tmp_path: Path) -> None:
    cid, block = writer_block(0, 1)
    with EmbeddedStore(tmp_path / "store") as store:
        store.put(cid, block)
        with EmbeddedStore(tmp_path / "store") as other, store.snapshot():
            other.delete([cid])
            found = store.has(cid)
            recorded = store.verified_diff_id(cid)
            listed = list(store.cids())
            read = store.get(cid)

    assert found
    assert recorded is None
    assert listed == [cid]
    assert read == block


def test_write_ends_snapshot(tmp_path: Path) -> None:
    (first, first_block), (second, second_block) = writer_block(0, 1), _large_block()
    with EmbeddedStore(tmp_path / "store") as store:
        store.put(first, first_block)
        with store.snapshot():
            read = store.get(first)
            store.put(second, second_block)
            after_write = store.get(second)

        assert read == first_block
        assert after_write == second_block
        assert store.stat() == StoreStat(2, len(first_block) + len(second_block))


def test_nested_snapshot(tmp_path: Path) -> None:
    cid, block = writer_block(0, 1)
    with EmbeddedStore(tmp_path / "store") as store:
        store.put(cid, block)
        with store.snapshot(), store.snapshot():
            inner = store.get(cid)
        outer_ended = store.get(cid)

    assert inner == block
    assert outer_ended == block


def _large_block() -> tuple[Cid, bytes]:
    """A block read through the blob API: longer than INLINE_READ_MAX."""
    block = os.urandom(INLINE_READ_MAX + 1)
    return Cid.for_block(RAW, block), block


# Default path


def test_default_path_as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("XDG_DATA_HOME", "/data")

    assert default_store_path() == Path("/var/lib/ipcs-fs")


@pytest.mark.parametrize(
    "data_home, expected",
    [
        ("/data", "/data/ipcs-fs"),
        (None, "/home/user/.local/share/ipcs-fs"),
        ("", "/home/user/.local/share/ipcs-fs"),
        ("relative/dir", "/home/user/.local/share/ipcs-fs"),
    ],
)
def test_default_path_as_user(
    monkeypatch: pytest.MonkeyPatch, data_home: str | None, expected: str
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("HOME", "/home/user")
    if data_home is None:
        monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_DATA_HOME", data_home)

    assert default_store_path() == Path(expected)


# Batches as seen by another connection


def test_batch_visible_per_commit(tmp_path: Path) -> None:
    blocks = [writer_block(0, index) for index in range(5)]
    with EmbeddedStore(tmp_path / "s") as store, EmbeddedStore(tmp_path / "s") as other:
        with store.batch(max_blocks=2) as batch:
            for cid, block in blocks[:3]:
                batch.put(cid, block)
            assert other.stat().blocks == 2
            assert not other.has(blocks[2][0])

            for cid, block in blocks[3:]:
                batch.put(cid, block)
            assert other.stat().blocks == 4

        assert other.stat().blocks == 5
        assert other.get(blocks[4][0]) == blocks[4][1]


def test_batch_commits_at_max_bytes(tmp_path: Path) -> None:
    with EmbeddedStore(tmp_path / "s") as store, EmbeddedStore(tmp_path / "s") as other:
        with store.batch(max_blocks=1000, max_bytes=3000) as batch:
            for index in range(4):
                batch.put(*writer_block(1, 31 + index * 256))  # 1 KiB each
            assert other.stat() == StoreStat(blocks=3, bytes=3072)
        assert other.stat() == StoreStat(blocks=4, bytes=4096)


# Locks


def test_locked_database_raises_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "store"
    cid, block = writer_block(0, 1)
    with EmbeddedStore(path, lock_timeout=0.3) as store:
        holder = sqlite3.connect(path / DATABASE_NAME, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        try:
            with pytest.raises(UnavailableError) as raised:
                store.put(cid, block)
        finally:
            holder.execute("ROLLBACK")
            holder.close()

        waited = time.monotonic() - started
        message = str(raised.value)
        assert message.startswith(f"failed to put block {cid}: ")
        assert str(path / DATABASE_NAME) in message
        assert "stayed locked" in message
        assert 0.3 <= waited < 5
        assert not store.has(cid)


def test_put_waits_for_lock_release(tmp_path: Path) -> None:
    path = tmp_path / "store"
    cid, block = writer_block(0, 1)
    with EmbeddedStore(path, lock_timeout=10) as store:
        holder = sqlite3.connect(
            path / DATABASE_NAME, isolation_level=None, check_same_thread=False
        )
        holder.execute("BEGIN IMMEDIATE")
        releaser = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
        releaser.start()
        store.put(cid, block)
        releaser.join()
        holder.close()

        assert store.get(cid) == block


def test_reads_proceed_during_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "store"
    cid, block = writer_block(0, 1)
    with EmbeddedStore(path, lock_timeout=0.2) as store:
        store.put(cid, block)
        holder = sqlite3.connect(path / DATABASE_NAME, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("DELETE FROM blocks")
        try:
            assert store.get(cid) == block
            assert store.stat().blocks == 1
        finally:
            holder.execute("ROLLBACK")
            holder.close()


# Threads


def test_threads_share_store(tmp_path: Path) -> None:
    with EmbeddedStore(tmp_path / "store") as store:

        def work(writer: int) -> int:
            with store.batch(max_blocks=50) as batch:
                for index in range(500):
                    batch.put(*writer_block(writer, index))
            for index in range(0, 500, 7):
                cid, block = writer_block(writer, index)
                assert store.get(cid) == block
            return writer

        with ThreadPoolExecutor(max_workers=8) as pool:
            finished = list(pool.map(work, range(8)))

        assert finished == list(range(8))
        assert store.stat().blocks == 8 * 500
        assert assert_every_block_verifies(store) == 8 * 500


def test_thread_connection_closed_on_exit(tmp_path: Path) -> None:
    with EmbeddedStore(tmp_path / "store") as store:
        before = len(store._handles)
        thread = threading.Thread(target=store.stat)
        thread.start()
        thread.join()
        del thread

        assert before == 1
        assert len(store._handles) == before


def test_close_from_other_thread(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "store")
    store.put(*writer_block(0, 1))
    closer = threading.Thread(target=store.close)
    closer.start()
    closer.join()

    with pytest.raises(FailedPreconditionError, match="it is closed"):
        store.stat()


# Processes


def write_blocks(path: str, writer: int) -> None:
    with EmbeddedStore(path) as store, store.batch(max_blocks=100) as batch:
        for index in range(BLOCKS_PER_WRITER):
            batch.put(*writer_block(writer, index))


def read_blocks(
    path: str, stop: threading.Event, found: multiprocessing.Queue[int]
) -> None:
    hits = 0
    rng = random.Random(os.getpid())
    with EmbeddedStore(path) as store:
        while not stop.is_set():
            cid, block = writer_block(rng.randrange(WRITERS), rng.randrange(2000))
            if store.has(cid):
                if store.get(cid) != block:
                    raise AssertionError(f"block {cid} read back wrong")
                hits += 1
            listed = sum(1 for _ in store.cids())
            if listed > WRITERS * BLOCKS_PER_WRITER:
                raise AssertionError(f"store lists {listed} blocks")
    found.put(hits)


def test_processes_write_and_read_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "store")
    EmbeddedStore(path).close()
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    found = context.Queue()
    writers = [
        context.Process(target=write_blocks, args=(path, n)) for n in range(WRITERS)
    ]
    readers = [
        context.Process(target=read_blocks, args=(path, stop, found)) for _ in range(2)
    ]

    for process in readers + writers:
        process.start()
    for process in writers:
        process.join(timeout=120)
    stop.set()
    hits = [found.get(timeout=60) for _ in readers]
    for process in readers:
        process.join(timeout=60)

    assert [process.exitcode for process in writers] == [0] * WRITERS
    assert [process.exitcode for process in readers] == [0, 0]
    assert sum(hits) > 0
    with verified(EmbeddedStore(path)) as store:
        assert store.stat().blocks == WRITERS * BLOCKS_PER_WRITER
        for writer in range(WRITERS):
            for index in range(BLOCKS_PER_WRITER):
                cid, block = writer_block(writer, index)
                assert store.get(cid) == block
    assert integrity(Path(path)) == "ok"


def use_store_in_child(store: EmbeddedStore, writer: int) -> None:
    for index in range(200):
        store.put(*writer_block(writer, index))
    assert store.get(writer_block(0, 3)[0]) == writer_block(0, 3)[1]
    store.close()


def test_forked_child_uses_own_connection(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    with EmbeddedStore(tmp_path / "store") as store:
        store.put(*writer_block(0, 3))
        child = context.Process(target=use_store_in_child, args=(store, 1))
        child.start()
        child.join(timeout=60)

        assert child.exitcode == 0
        for index in range(200):
            store.put(*writer_block(2, index))
        assert store.stat().blocks == 401
        assert assert_every_block_verifies(store) == 401
    assert integrity(tmp_path / "store") == "ok"


# Crashes

# The child writes block i of 1 KiB (every 10th of 64 KiB) in batches and
# prints how many blocks it has committed after each commit. With "hang", it
# writes 500 blocks (3.7 MB), then starts a group of 128 blocks of 256 KiB and
# stops inside that transaction after 64 of them. 16 MiB is far more than
# SQLite's default 2 MB page cache, so the uncommitted pages spill into the WAL.
CRASH_WRITER = textwrap.dedent(
    """
    import sys, time
    from ipcs_fs.ids import RAW, Cid
    from ipcs_fs.store import EmbeddedStore

    def block(i):
        size = 65536 if i % 10 == 0 else 1024
        data = i.to_bytes(8, "big") * (size // 8)
        return Cid.for_block(RAW, data), data

    def hang_block(n):
        data = (10**6 + n).to_bytes(8, "big") * 32768
        return Cid.for_block(RAW, data), data

    class HangMidway(list):
        def __iter__(self):
            for n, item in enumerate(list.__iter__(self)):
                if n == len(self) // 2:
                    print("inside", flush=True)
                    time.sleep(600)
                yield item

    path, start, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    store = EmbeddedStore(path)
    i = start
    with store.batch(max_blocks=2000) as batch:
        while mode == "loop" or i < start + 500:
            before = batch.committed
            batch.put(*block(i))
            i += 1
            if batch.committed != before:
                print("committed", start + batch.committed, flush=True)
    print("committed", i, flush=True)
    store._write_blocks(HangMidway(hang_block(n) for n in range(128)))
    """
)


def hang_block(index: int) -> tuple[Cid, bytes]:
    data = (10**6 + index).to_bytes(8, "big") * 32768
    return Cid.for_block(RAW, data), data


def crash_block(index: int) -> tuple[Cid, bytes]:
    size = 65536 if index % 10 == 0 else 1024
    data = index.to_bytes(8, "big") * (size // 8)
    return Cid.for_block(RAW, data), data


def run_and_kill(path: Path, start: int, mode: str, delay: float) -> int:
    """Run the crash writer, SIGKILL it, and return the blocks it committed."""
    child = subprocess.Popen(
        [sys.executable, "-c", CRASH_WRITER, str(path), str(start), mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    committed = start
    for line in child.stdout:
        if line.startswith("committed"):
            committed = int(line.split()[1])
            if mode == "loop" and committed > start:
                break
        elif line.startswith("inside"):
            break
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    for line in child.stdout:
        if line.startswith("committed"):
            committed = int(line.split()[1])
    assert child.wait(timeout=30) == -signal.SIGKILL
    return committed


def test_kill_inside_transaction(tmp_path: Path) -> None:
    path = tmp_path / "store"
    committed = run_and_kill(path, 0, "hang", 0.0)
    wal_size = (path / (DATABASE_NAME + "-wal")).stat().st_size

    assert committed == 500
    assert wal_size >= 12 * 1024 * 1024
    assert integrity(path) == "ok"
    with EmbeddedStore(path) as store:
        assert store.stat().blocks == 500
        assert assert_every_block_verifies(store) == 500
        for index in range(128):
            assert not store.has(hang_block(index)[0])


@pytest.mark.parametrize("round_", range(4))
def test_kill_at_random_time(tmp_path: Path, round_: int) -> None:
    path = tmp_path / "store"
    rng = random.Random(round_)
    start = 0
    for _ in range(3):
        committed = run_and_kill(path, start, "loop", rng.uniform(0.0, 0.3))

        assert integrity(path) == "ok"
        with EmbeddedStore(path) as store:
            present = assert_every_block_verifies(store)
            assert present >= committed
            for index in range(committed):
                assert store.has(crash_block(index)[0])
        start = present


def test_verified_detects_tampered_row(tmp_path: Path) -> None:
    path = tmp_path / "store"
    cid, block = writer_block(0, 40)
    with verified(EmbeddedStore(path)) as store:
        store.put(cid, block)
        with raw_database(path) as connection:
            connection.execute("UPDATE blocks SET data = ?", (b"X" + block[1:],))

        with pytest.raises(DataLossError, match=f"failed to read block {cid}: "):
            store.get(cid)
        assert store.inner.get(cid) == b"X" + block[1:]
