"""The embedded store's file (:mod:`sessions.sqlite`): its tables, how an older file is
brought up to date, and how a row becomes a stored item. Pure values and functions of rows,
no connection of their own: :class:`~sessions.sqlite.SQLiteStore` runs them.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from sessions.store import EventRecord, StoredItem, StoredState, Tombstone, WorkspaceStone

ITEMS = """
CREATE TABLE IF NOT EXISTS items (
    pk TEXT NOT NULL,
    sk TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('state', 'event', 'tombstone')),
    version INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    data BLOB,
    response BLOB,
    response_expires_at INTEGER NOT NULL DEFAULT 0,
    outbox BLOB,
    sent_at INTEGER,
    enterprise TEXT,
    status TEXT,
    error TEXT,
    payload BLOB,
    generation INTEGER NOT NULL DEFAULT 0,
    claimed_at INTEGER,
    PRIMARY KEY (pk, sk)
) WITHOUT ROWID
"""
#: Records outside any conversation (``sessions.installations``): a table of their own.
RECORDS = """
CREATE TABLE IF NOT EXISTS records (
    pk TEXT NOT NULL,
    sk TEXT NOT NULL,
    data BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (pk, sk)
) WITHOUT ROWID
"""
#: Columns added after the first release: ``ALTER TABLE`` brings an older file up to date
#: (under the write lock: several processes may open the same old file at once).
#: ``generation`` is the tombstone generation an item was written in (for a tombstone, its own).
ADDED = {
    "status": "TEXT",
    "error": "TEXT",
    "payload": "BLOB",
    "generation": "INTEGER NOT NULL DEFAULT 0",
    "claimed_at": "INTEGER",
}
COLUMNS = (
    "sk, kind, version, expires_at, updated_at, data, response, response_expires_at, "
    "outbox, sent_at, enterprise, status, error, payload, generation, claimed_at"
)
INSERT = (
    f"INSERT OR REPLACE INTO items (pk, {COLUMNS}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
#: A workspace's stone, in ``records`` (``pk``, ``TOMBSTONE_SK``).
STONE = "SELECT data, expires_at FROM records WHERE pk = ? AND sk = ?"
Row = tuple[Any, ...]


def create(conn: sqlite3.Connection) -> None:
    """Create the tables, or bring an older file's up to date (call it under the write lock)."""
    conn.execute(ITEMS)
    conn.execute(RECORDS)
    have = {row[1] for row in conn.execute("PRAGMA table_info(items)")}
    for column, kind in ADDED.items():
        if column not in have:
            conn.execute(f"ALTER TABLE items ADD COLUMN {column} {kind}")


def item_of(row: Row) -> StoredItem:
    """The stored item of a row of ``items`` (its :data:`COLUMNS`)."""
    (_sk, kind, version, expires_at, updated_at, data, response, resp_exp, outbox, sent_at, ent,
     status, error, payload, generation, claimed_at) = row  # fmt: skip
    if kind == "state":
        return StoredState(
            version=version,
            blob=bytes(data or b""),
            expires_at=expires_at,
            updated_at=updated_at,
            enterprise=ent,
            generation=generation,
        )
    if kind == "event":
        return EventRecord(
            version=version,
            committed_at=updated_at,
            expires_at=expires_at,
            response=None if response is None else bytes(response),
            response_expires_at=resp_exp,
            outbox=None if outbox is None else bytes(outbox),
            sent_at=sent_at,
            status=status or "done",
            error=error,
            payload=None if payload is None else bytes(payload),
            generation=generation,
            claimed_at=claimed_at,
        )
    return Tombstone(generation=generation, expires_at=expires_at)


def state_row(pk: str, sk: str, state: StoredState) -> Row:
    """The row of ``items`` holding ``state``, for :data:`INSERT` (:func:`item_of` inverts it)."""
    return (pk, sk, "state", state.version, state.expires_at, state.updated_at, state.blob,
            None, 0, None, None, state.enterprise, None, None, None, state.generation,
            None)  # fmt: skip


def event_row(pk: str, sk: str, event: EventRecord) -> Row:
    """The row of ``items`` holding ``event``, for :data:`INSERT` (:func:`item_of` inverts it)."""
    return (pk, sk, "event", event.version, event.expires_at, event.committed_at, None,
            event.response, event.response_expires_at, event.outbox, event.sent_at, None,
            event.status, event.error, event.payload, event.generation,
            event.claimed_at)  # fmt: skip


def stone_of(row: Any) -> WorkspaceStone | None:
    """A workspace's stone from its row of ``records`` (JSON: its generation, closed)."""
    if row is None:
        return None
    data = json.loads(bytes(row[0]))
    return WorkspaceStone(int(data["gen"]), bool(data["closed"]), int(row[1]))
