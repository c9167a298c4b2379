"""The embedded store: one SQLite file, safe across threads and processes.

Each thread (and each process, after a fork) gets its own connection; the file is in WAL mode
so readers never block the writer. A commit runs in ``BEGIN IMMEDIATE``, which takes the
file's write lock before it checks the version and the event record, so the check and the
write are one atomic step across every process using the file: the same guarantee DynamoDB's
conditional transaction gives.

Its parts: :mod:`sessions.sqlite_schema` (the tables, their migrations, rows into items),
:mod:`sessions.sqlite_conditions` (what a write checks inside its transaction) and
:mod:`sessions.sqlite_batch` (group commits).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sessions import sqlite_batch, sqlite_schema
from sessions.batches import BatchRead, BatchWrite
from sessions.errors import ConflictError, DuplicateEventError, StoreError, StoreUnavailableError
from sessions.keys import TOMBSTONE_SK, ConversationKey, Partition
from sessions.sqlite_conditions import check_creation, check_stones, identity, same_tombstone
from sessions.sqlite_schema import COLUMNS, INSERT, STONE, event_row, item_of, state_row, stone_of
from sessions.store import (
    EventRecord,
    EventWrite,
    Snapshot,
    StoredItem,
    StoredState,
    Tombstone,
    WorkspaceStone,
)


class SQLiteStore:
    """SQLite implementation of :class:`sessions.store.Store`.

    Args:
        path: the database file; its folder is created when missing.
        timeout: seconds to wait for another writer before giving up (StoreUnavailableError).
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        with self._write() as conn:
            sqlite_schema.create(conn)

    # One connection per thread and process: sqlite3 connections must not cross a fork, and
    # sharing one between threads would serialise them on Python's side for nothing.
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        self._local.conn = conn
        self._local.pid = os.getpid()
        with self._lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the file's write lock (``BEGIN IMMEDIATE``, so checks
        made inside it and the writes are one atomic step across processes): committed when
        the block ends, rolled back on any exception; ``sqlite3`` errors leave as ours."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._convert(exc) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._convert(exc) from exc
            raise

    @staticmethod
    def _convert(exc: sqlite3.Error) -> StoreError:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return StoreUnavailableError(f"SQLite stayed locked: {exc}")
        return StoreError(f"SQLite failed: {exc}")

    def _rows(self, pk: str, sks: list[str]) -> dict[str, StoredItem]:
        marks = ",".join("?" * len(sks))
        sql = f"SELECT {COLUMNS} FROM items WHERE pk = ? AND sk IN ({marks})"
        return {row[0]: item_of(row) for row in self._conn().execute(sql, (pk, *sks))}

    def load(
        self,
        key: ConversationKey,
        event_sk: str | None,
        *,
        event_time: float | None = None,
        exact: bool = False,
    ) -> Snapshot:
        # Local reads are free: every load is exact.
        sks = [key.sk, TOMBSTONE_SK] + ([event_sk] if event_sk else [])
        try:
            # One statement reads one consistent snapshot of all three rows.
            found = self._rows(key.pk, sks)
        except sqlite3.Error as exc:
            raise self._convert(exc) from exc
        state = found.get(key.sk)
        event = found.get(event_sk) if event_sk else None
        stone = found.get(TOMBSTONE_SK)
        return Snapshot(
            state=state if isinstance(state, StoredState) else None,
            event=event if isinstance(event, EventRecord) else None,
            tombstone=stone if isinstance(stone, Tombstone) else None,
        )

    def commit(self, write: EventWrite) -> None:
        self._apply(write)

    def record_failure(self, write: EventWrite) -> None:
        self._apply(write)

    def claim(self, write: EventWrite) -> None:
        self._apply(write)  # no state: the record alone, under the same conditions

    def _apply(self, write: EventWrite) -> None:
        """The three conditional writes in one transaction: the checks, then the writes."""
        key, event_sk, event, state = write.key, write.event_sk, write.event, write.state
        now, event_time = write.now, write.event_time
        with self._write() as conn:
            found = self._rows(key.pk, [key.sk, event_sk, TOMBSTONE_SK])
            seen = found.get(event_sk)
            if isinstance(seen, EventRecord) and seen.expires_at > now and not seen.failed:
                raise DuplicateEventError("event already committed", record=seen)
            if not same_tombstone(found.get(TOMBSTONE_SK), write.tombstone):
                raise ConflictError("the user was deleted since the turn's read")
            current = found.get(key.sk)
            current = current if isinstance(current, StoredState) else None
            expected = write.expected
            if state is not None and identity(current) != identity(expected):
                raise ConflictError(
                    f"stored state is {identity(current)}, expected {identity(expected)}",
                    current=current,
                )
            writes = [(key, state)] if state is not None else []
            if state is not None and (current is None or current.expires_at <= now):
                # Creating the conversation: refused in a closed (uninstalled) workspace, or
                # after a delete as recent as the event.
                check_stones(conn, key, event_time, now)
                check_creation(found.get(TOMBSTONE_SK), event_time, now)
            for side in write.also:
                rows = self._rows(side.key.pk, [side.key.sk, TOMBSTONE_SK])
                seen_stone = side.loaded.tombstone if side.loaded is not None else None
                if side.key.pk != key.pk and not same_tombstone(rows.get(TOMBSTONE_SK), seen_stone):
                    raise ConflictError("the user was deleted since the turn's read")
                current = rows.get(side.key.sk)
                current = current if isinstance(current, StoredState) else None
                if identity(current) != identity(side.expected):
                    raise ConflictError("another scope's state moved", current=None)
                if current is None or current.expires_at <= now:
                    check_creation(rows.get(TOMBSTONE_SK), event_time, now)
                writes.append((side.key, side.state))
            for where, value in writes:
                conn.execute(INSERT, state_row(where.pk, where.sk, value))
            conn.execute(INSERT, event_row(key.pk, event_sk, event))

    def claim_outbox(self, key: ConversationKey, event_sk: str, *, now: int, stale: int) -> bool:
        try:
            cur = self._conn().execute(
                "UPDATE items SET claimed_at = ? WHERE pk = ? AND sk = ? AND outbox IS NOT NULL "
                "AND sent_at IS NULL AND (claimed_at IS NULL OR claimed_at <= ?)",
                (now, key.pk, event_sk, stale),
            )
        except sqlite3.Error as exc:
            raise self._convert(exc) from exc
        return cur.rowcount == 1

    def mark_sent(self, key: ConversationKey, event_sk: str, *, sent_at: int) -> None:
        try:
            self._conn().execute(
                "UPDATE items SET sent_at = ?, outbox = NULL WHERE pk = ? AND sk = ?",
                (sent_at, key.pk, event_sk),
            )
        except sqlite3.Error as exc:
            raise self._convert(exc) from exc

    def user_items(self, user: Partition) -> list[tuple[str, StoredItem]]:
        sql = f"SELECT {COLUMNS} FROM items WHERE pk = ? ORDER BY sk"
        try:
            return [(row[0], item_of(row)) for row in self._conn().execute(sql, (user.pk,))]
        except sqlite3.Error as exc:
            raise self._convert(exc) from exc

    def delete_user(self, user: Partition, *, tombstone: Tombstone) -> int:
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO items (pk, sk, kind, expires_at, updated_at, "
                "generation) VALUES (?, ?, 'tombstone', ?, ?, ?)",
                (user.pk, TOMBSTONE_SK, tombstone.expires_at, int(tombstone.deleted_at),
                 tombstone.generation),
            )  # fmt: skip
            # One transaction: no turn commits between the tombstone and the deletes, so
            # every item older than the tombstone's generation is pre-delete data.
            cur = conn.execute(
                "DELETE FROM items WHERE pk = ? AND sk != ? AND generation < ?",
                (user.pk, TOMBSTONE_SK, tombstone.generation),
            )
        return cur.rowcount

    def workspace_partitions(self, platform: str, workspace: str) -> list[str]:
        """The partition keys of a workspace's users and channels: a range of the primary
        key (``<platform>#<workspace>#...``)."""
        low = f"{platform}#{workspace}#"
        high = f"{platform}#{workspace}$"  # "$" follows "#": the range is exactly the prefix
        sql = "SELECT DISTINCT pk FROM items WHERE pk >= ? AND pk < ? ORDER BY pk"
        try:
            return [row[0] for row in self._conn().execute(sql, (low, high))]
        except sqlite3.Error as exc:
            raise self._convert(exc) from exc

    def put_record(self, pk: str, sk: str, blob: bytes, *, expires_at: int) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO records (pk, sk, data, expires_at) VALUES (?, ?, ?, ?)",
                (pk, sk, blob, expires_at),
            )

    def create_record(self, pk: str, sk: str, blob: bytes, *, expires_at: int, now: int) -> bool:
        with self._write() as conn:
            row = conn.execute(
                "SELECT expires_at FROM records WHERE pk = ? AND sk = ?", (pk, sk)
            ).fetchone()
            if row is not None and int(row[0]) > now:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO records (pk, sk, data, expires_at) VALUES (?, ?, ?, ?)",
                (pk, sk, blob, expires_at),
            )
            return True

    def get_record(self, pk: str, sk: str) -> tuple[bytes, int] | None:
        sql = "SELECT data, expires_at FROM records WHERE pk = ? AND sk = ?"
        try:
            row = self._conn().execute(sql, (pk, sk)).fetchone()
        except sqlite3.Error as exc:
            raise self._convert(exc) from exc
        return None if row is None else (bytes(row[0]), int(row[1]))

    def delete_record(self, pk: str, sk: str) -> tuple[bytes, int] | None:
        with self._write() as conn:
            row = conn.execute(
                "SELECT data, expires_at FROM records WHERE pk = ? AND sk = ?", (pk, sk)
            ).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM records WHERE pk = ? AND sk = ?", (pk, sk))
            return bytes(row[0]), int(row[1])

    def close_workspace(self, pk: str, *, generation: int, expires_at: int) -> None:
        data = json.dumps({"gen": generation, "closed": True}).encode()
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO records (pk, sk, data, expires_at) VALUES (?, ?, ?, ?)",
                (pk, TOMBSTONE_SK, data, expires_at),
            )

    def reopen_workspace(self, pk: str, *, expires_at: int) -> None:
        with self._write() as conn:
            stone = stone_of(conn.execute(STONE, (pk, TOMBSTONE_SK)).fetchone())
            if stone is None:
                return
            data = json.dumps({"gen": stone.generation, "closed": False}).encode()
            conn.execute(
                "UPDATE records SET data = ?, expires_at = ? WHERE pk = ? AND sk = ?",
                (data, expires_at, pk, TOMBSTONE_SK),
            )

    def workspace_stone(self, pk: str) -> WorkspaceStone | None:
        try:
            return stone_of(self._conn().execute(STONE, (pk, TOMBSTONE_SK)).fetchone())
        except sqlite3.Error as exc:
            raise self._convert(exc) from exc

    def record_parts(self, pk: str) -> list[str]:
        sql = "SELECT sk FROM records WHERE pk = ? ORDER BY sk"
        try:
            return [row[0] for row in self._conn().execute(sql, (pk,))]
        except sqlite3.Error as exc:
            raise self._convert(exc) from exc

    def health(self) -> None:
        """Raise ``StoreError`` unless the database opens and its table answers."""
        try:
            self._conn().execute("SELECT 1 FROM items LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise self._convert(exc) from exc

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    # -- group commits (``sessions.batches``; the statements in ``sessions.sqlite_batch``) --

    def load_batch(
        self,
        key: ConversationKey,
        events: Sequence[tuple[str, float | None]],
        users: Sequence[str] = (),
    ) -> BatchRead:
        return sqlite_batch.load_batch(self, key, events, users)

    def commit_batch(self, write: BatchWrite) -> None:
        sqlite_batch.commit_batch(self, write)

    def put_events(self, records: Sequence[tuple[str, str, EventRecord]]) -> None:
        sqlite_batch.put_events(self, records)

    def tombstones(self, pks: Sequence[str]) -> dict[str, Tombstone]:
        return sqlite_batch.tombstones(self, pks)
