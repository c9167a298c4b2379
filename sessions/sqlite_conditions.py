"""The conditions of the embedded store's writes (:mod:`sessions.sqlite`), checked inside
the write's transaction (``BEGIN IMMEDIATE``), so that the check and the write are one atomic
step: what DynamoDB's condition expressions check for :mod:`sessions.dynamodb`.
"""

from __future__ import annotations

import sqlite3

from sessions.errors import ConflictError
from sessions.keys import TOMBSTONE_SK, ConversationKey
from sessions.sqlite_schema import STONE, stone_of
from sessions.store import StoredItem, StoredState, Tombstone, stones_of


def identity(state: StoredState | None) -> tuple[int, int, int] | None:
    """What tells one stored state item from another (see ``Store.commit``)."""
    return None if state is None else (state.version, state.generation, state.updated_at)


def check_creation(found: StoredItem | None, event_time: float | None, now: int) -> None:
    """Refuse creating an item in a partition whose live tombstone is as recent as the event
    (the event may have happened before the delete): DynamoDB's condition on the user's
    record when a commit creates an item there (``gen < `` the event's milliseconds), so a
    multi-scope turn writes nothing in a deleted partition on either store.

    Raises:
        ConflictError: with the tombstone (the runner learns it, and ignores the event).
    """
    event_ms = round(event_time * 1000) if event_time is not None else now * 1000
    if isinstance(found, Tombstone) and found.expires_at > now and found.generation >= event_ms:
        raise ConflictError("the user was deleted at or after the event", tombstone=found)


def same_tombstone(found: StoredItem | None, seen: Tombstone | None) -> bool:
    if seen is None:
        return found is None
    return isinstance(found, Tombstone) and found.generation == seen.generation


def check_stones(
    conn: sqlite3.Connection, key: ConversationKey, event_time: float | None, now: int
) -> None:
    """Refuse creating a conversation in a closed (uninstalled) workspace.

    Raises:
        ConflictError: with the workspace's stone as a tombstone.
    """
    event_ms = round(event_time * 1000) if event_time is not None else now * 1000
    for pk in stones_of(key):
        stone = stone_of(conn.execute(STONE, (pk, TOMBSTONE_SK)).fetchone())
        if stone is not None and stone.blocks(event_ms, now):
            raise ConflictError("the workspace was uninstalled", tombstone=stone.as_tombstone())
