"""The store protocol: the few primitives a storage engine fills for the turn runner.

The session core (``sessions.runner``) owns keys, TTL, versions, idempotency records and the
outbox; a store only moves these records in and out, atomically where the turn needs it:

- ``load``: one consistent read of the conversation's state, the event's record and the
  user's tombstone (DynamoDB: one ``BatchGetItem``);
- ``commit``: state + event record in one atomic, conditional write (DynamoDB: one
  ``TransactWriteItems``); it raises :class:`DuplicateEventError` when the event is already
  recorded and :class:`ConflictError` when the version moved, never overwriting either;
- ``mark_sent``: the opt-in third request of "sent mark" mode;
- ``user_items`` / ``delete_user``: everything under one platform user (GDPR).

Both stores (SQLite, DynamoDB) run the same contract suite in ``tests/contract``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sessions.keys import ConversationKey, UserKey


@dataclass(frozen=True, slots=True)
class StoredState:
    """The conversation item. ``blob`` is :mod:`sessions.codec` output."""

    version: int
    blob: bytes
    expires_at: int
    updated_at: int
    enterprise: str | None = None


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A committed event: proof that its turn happened, and what replay needs.

    ``response`` (encoded) is served to duplicates only until ``response_expires_at``;
    ``outbox`` (encoded replies) exists only in sent-mark mode, until ``sent_at`` is set.
    """

    version: int
    committed_at: int
    expires_at: int
    response: bytes | None = None
    response_expires_at: int = 0
    outbox: bytes | None = None
    sent_at: int | None = None


@dataclass(frozen=True, slots=True)
class Tombstone:
    """Left by a user delete: events older than ``deleted_at`` must not recreate data."""

    deleted_at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one consistent read returns. Records are as stored: expiry is the caller's call."""

    state: StoredState | None
    event: EventRecord | None
    tombstone: Tombstone | None


StoredItem = StoredState | EventRecord | Tombstone


class Store(Protocol):
    """Primitives a storage engine implements. See the module docstring for the contract."""

    def load(self, key: ConversationKey, event_sk: str | None) -> Snapshot:
        """Read state, event record (when ``event_sk`` is given) and tombstone at once.

        Raises:
            StoreError: the engine failed (``StoreUnavailableError`` when retryable).
        """
        ...

    def commit(
        self,
        key: ConversationKey,
        *,
        expected_version: int | None,
        state: StoredState,
        event_sk: str,
        event: EventRecord,
        now: int,
    ) -> None:
        """Write state and event record atomically, or nothing.

        The state is written only if its stored version equals ``expected_version`` (``None``:
        no item stored); the record only if no unexpired record (at ``now``) exists.

        Raises:
            DuplicateEventError: the event is already recorded (checked first).
            ConflictError: the stored version is not ``expected_version``.
            StoreError: the engine failed.
        """
        ...

    def mark_sent(self, key: ConversationKey, event_sk: str, *, sent_at: int) -> None:
        """Record that the event's replies went out, and drop its outbox."""
        ...

    def user_items(self, user: UserKey) -> list[tuple[str, StoredItem]]:
        """Every item under the user's partition, as ``(sort key, record)``, sort-key order."""
        ...

    def delete_user(self, user: UserKey, *, tombstone: Tombstone) -> int:
        """Write ``tombstone`` first, then delete every other item of the user.

        Returns:
            How many items were deleted (the tombstone excluded).
        """
        ...

    def close(self) -> None:
        """Release connections. The store must not be used afterwards."""
        ...
