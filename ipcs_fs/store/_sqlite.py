"""SQLite steps on one connection, shared by the embedded store's methods.

Each function runs on the calling thread's connection, which must have
autocommit on (``isolation_level=None``) so that transactions are explicit.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import TypeVar

__all__ = [
    "INLINE_READ_MAX",
    "begin_read",
    "contains",
    "error_code",
    "fetch_page",
    "is_busy",
    "read_transaction",
    "select_block",
    "select_in_transaction",
    "write_transaction",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Blocks up to this length are read with one SELECT. Longer ones are read
# through the incremental blob API, which copies the pages straight into the
# returned bytes instead of first assembling them in a temporary buffer. For
# 256 KiB blocks read once each, the blob API took half the CPU time. Below
# 64 KiB, its extra statements cost more than the copy saves.
INLINE_READ_MAX = 64 * 1024


def select_block(connection: sqlite3.Connection, key: bytes) -> bytes | None:
    """Return the block stored under the binary CID ``key``, or None."""
    row = connection.execute(
        "SELECT CASE WHEN size <= ? THEN data END, size FROM blocks WHERE cid = ?",
        (INLINE_READ_MAX, key),
    ).fetchone()
    if row is None:
        return None
    data: bytes | None = row[0]
    if data is not None:
        return data
    return read_transaction(connection, lambda c: read_blob(c, key))


def read_blob(connection: sqlite3.Connection, key: bytes) -> bytes | None:
    # Runs in a read transaction, so the row found is the row read even if
    # another process deletes it and its id is reused meanwhile.
    row = connection.execute("SELECT id FROM blocks WHERE cid = ?", (key,)).fetchone()
    if row is None:
        return None
    return _read_row(connection, row[0])


def _read_row(connection: sqlite3.Connection, row_id: int) -> bytes:
    with connection.blobopen("blocks", "data", row_id, readonly=True) as blob:
        return blob.read()


def select_in_transaction(connection: sqlite3.Connection, key: bytes) -> bytes | None:
    """Return the block stored under ``key``, or None, in the open transaction.

    The transaction keeps the row found and the row read the same, so one
    statement finds both the row and, for a short block, its bytes.
    """
    row = connection.execute(
        "SELECT id, CASE WHEN size <= ? THEN data END FROM blocks WHERE cid = ?",
        (INLINE_READ_MAX, key),
    ).fetchone()
    if row is None:
        return None
    data: bytes | None = row[1]
    return data if data is not None else _read_row(connection, row[0])


def begin_read(connection: sqlite3.Connection) -> None:
    """Open a read transaction and take its snapshot of the database now."""
    connection.execute("BEGIN")
    try:
        # A deferred transaction reads nothing until its first statement.
        connection.execute("SELECT blocks FROM totals").fetchone()
    except BaseException:
        rollback(connection)
        raise


def fetch_page(
    connection: sqlite3.Connection, *, query: str, after: bytes
) -> list[tuple[bytes]]:
    """Return the rows of a keyset ``query`` whose key sorts after ``after``."""
    return connection.execute(query, (after,)).fetchall()


def contains(connection: sqlite3.Connection, key: bytes) -> bool:
    """Tell whether a block is stored under the binary CID ``key``."""
    row = connection.execute("SELECT 1 FROM blocks WHERE cid = ?", (key,)).fetchone()
    return row is not None


def write_transaction(
    connection: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]
) -> T:
    """Run ``body`` in a write transaction: commit its work or roll it back."""
    # IMMEDIATE takes the write lock at BEGIN. A deferred transaction that
    # upgrades from read to write gets SQLITE_BUSY at once when another
    # writer got there first, without waiting for the lock.
    return transaction(connection, "BEGIN IMMEDIATE", body)


def read_transaction(
    connection: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]
) -> T:
    return transaction(connection, "BEGIN", body)


def transaction(
    connection: sqlite3.Connection,
    begin: str,
    body: Callable[[sqlite3.Connection], T],
) -> T:
    connection.execute(begin)
    try:
        result = body(connection)
        connection.execute("COMMIT")
    except BaseException:
        rollback(connection)
        raise
    return result


def rollback(connection: sqlite3.Connection) -> None:
    if not connection.in_transaction:
        return
    try:
        connection.execute("ROLLBACK")
    except sqlite3.Error as error:
        # Keep the error that caused the rollback. SQLite rolls the
        # transaction back by itself when the connection closes.
        log.warning("failed to roll back a transaction: %s", error)


def error_code(error: sqlite3.Error) -> int | None:
    """Return the primary SQLite result code of ``error``, if it carries one."""
    code = getattr(error, "sqlite_errorcode", None)
    # Extended result codes carry the primary code in the low byte.
    return code & 0xFF if code is not None else None


def is_busy(error: sqlite3.Error) -> bool:
    """Tell whether ``error`` means that another connection holds a lock."""
    code = error_code(error)
    if code is None:
        return "locked" in str(error)
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
