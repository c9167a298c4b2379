"""An SQLite file written by the first release opens in this one: ``SQLiteStore`` adds the
columns added since (``sessions.sqlite_schema.create``), and what the old file holds reads
back as it was written."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sessions import ConversationKey
from sessions.keys import partition_from_pk
from sessions.sqlite import SQLiteStore
from sessions.store import EventRecord, StoredState

KEY = ConversationKey.slack(team="T0001", channel="C0001", user="U0001")

#: The first release's table, written out here rather than derived from the module: the
#: point is a file the current code did not create.
FIRST_RELEASE = """
CREATE TABLE items (
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
    PRIMARY KEY (pk, sk)
) WITHOUT ROWID
"""


def old_file(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute(FIRST_RELEASE)
    conn.execute(
        "INSERT INTO items (pk, sk, kind, version, expires_at, updated_at, data) "
        "VALUES (?, ?, 'state', 3, 4102444800, 1700000000, ?)",
        (KEY.pk, KEY.sk, b"old state"),
    )
    conn.commit()
    conn.close()


def test_a_first_release_file_is_brought_up_to_date_and_reads_as_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sessions.sqlite3"
    old_file(path)
    store = SQLiteStore(path)
    try:
        state = store.load(KEY, None).state
        assert state == StoredState(
            version=3, blob=b"old state", expires_at=4102444800, updated_at=1700000000
        )
        # A dead letter needs the columns added since (status, error, payload, generation,
        # claimed_at): it is written and read back whole.
        letter = EventRecord(
            version=1, committed_at=1700000001, expires_at=4102444800, status="failed",
            error="ValueError", payload=b"replay me", generation=7, claimed_at=1700000002,
        )  # fmt: skip
        store.put_events([(KEY.pk, f"{KEY.sk}#evt#e1", letter)])
        assert dict(store.user_items(partition_from_pk(KEY.pk)))[f"{KEY.sk}#evt#e1"] == letter
    finally:
        store.close()


def test_opening_an_up_to_date_file_again_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite3"
    old_file(path)
    SQLiteStore(path).close()
    before = sqlite3.connect(path).execute("PRAGMA table_info(items)").fetchall()
    store = SQLiteStore(path)  # a second open: no ALTER fails on a column already there
    try:
        assert store.load(KEY, None).state is not None
    finally:
        store.close()
    assert sqlite3.connect(path).execute("PRAGMA table_info(items)").fetchall() == before
