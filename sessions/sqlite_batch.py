"""Group commits on SQLite (``sessions.batches``): the reads and writes, for
:class:`~sessions.sqlite.SQLiteStore`.

A batch's read is one statement (one consistent snapshot of the conversation's state, its
tombstone and every event's record); its write is one ``BEGIN IMMEDIATE`` transaction that
checks what the read saw (no event committed since, the same tombstone, the same state) and
writes the state and every record, as one turn's commit does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sessions.batches import BatchRead, BatchWrite
from sessions.errors import ConflictError, DuplicateEventError
from sessions.keys import TOMBSTONE_SK, ConversationKey
from sessions.sqlite_conditions import check_creation, check_stones, identity, same_tombstone
from sessions.sqlite_schema import INSERT, event_row, state_row
from sessions.store import EventRecord, Snapshot, StoredState, Tombstone

if TYPE_CHECKING:
    from sessions.sqlite import SQLiteStore


def load_batch(
    store: SQLiteStore,
    key: ConversationKey,
    events: Sequence[tuple[str, float | None]],
    users: Sequence[str] = (),
) -> BatchRead:
    sks = [key.sk, TOMBSTONE_SK, *dict.fromkeys(sk for sk, _ in events)]
    try:
        found = store._rows(key.pk, sks)  # one statement: one consistent snapshot
    except sqlite3.Error as exc:
        raise store._convert(exc) from exc
    state, stone = found.get(key.sk), found.get(TOMBSTONE_SK)
    records = tuple(found.get(sk) for sk, _ in events)
    return BatchRead(
        Snapshot(
            state=state if isinstance(state, StoredState) else None,
            event=None,
            tombstone=stone if isinstance(stone, Tombstone) else None,
        ),
        tuple(r if isinstance(r, EventRecord) else None for r in records),
        tombstones(store, users),
    )


def commit_batch(store: SQLiteStore, write: BatchWrite) -> None:
    key, now, state = write.key, write.now, write.state
    with store._write() as conn:
        sks = [e.event_sk for e in write.events]
        found = store._rows(key.pk, [key.sk, TOMBSTONE_SK, *sks])
        for sk in sks:
            seen = found.get(sk)
            if isinstance(seen, EventRecord) and seen.expires_at > now and not seen.failed:
                raise DuplicateEventError("an event of the batch is committed", record=seen)
        if not same_tombstone(found.get(TOMBSTONE_SK), write.tombstone):
            raise ConflictError("the user was deleted since the batch's read")
        current = found.get(key.sk)
        current = current if isinstance(current, StoredState) else None
        if identity(current) != identity(write.expected):
            raise ConflictError("stored state moved", current=current)
        if current is None or current.expires_at <= now:
            check_stones(conn, key, write.first_time, now)
            check_creation(found.get(TOMBSTONE_SK), write.first_time, now)
        conn.execute(INSERT, state_row(key.pk, key.sk, state))
        for one in write.events:
            conn.execute(INSERT, event_row(key.pk, one.event_sk, one.event))


def put_events(store: SQLiteStore, records: Sequence[tuple[str, str, EventRecord]]) -> None:
    if not records:
        return
    with store._write() as conn:
        for pk, sk, event in records:
            conn.execute(INSERT, event_row(pk, sk, event))


def tombstones(store: SQLiteStore, pks: Sequence[str]) -> dict[str, Tombstone]:
    if not pks:
        return {}
    marks = ",".join("?" * len(pks))
    sql = (
        f"SELECT pk, expires_at, generation FROM items WHERE sk = ? AND kind = 'tombstone' "
        f"AND pk IN ({marks})"
    )
    try:
        rows = store._conn().execute(sql, (TOMBSTONE_SK, *pks)).fetchall()
    except sqlite3.Error as exc:
        raise store._convert(exc) from exc
    return {pk: Tombstone(generation=gen, expires_at=exp) for pk, exp, gen in rows}
