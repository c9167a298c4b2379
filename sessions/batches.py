"""A group commit's write: several turns of one item, folded in memory, stored at once.

When one item is written by many at once (a poll everyone votes in), optimistic turns cost
re-reads and re-writes in proportion to how many race. A single writer that holds the item's
turns in order (the serialised path) applies them several per write instead: one read, the
turns folded over the state in memory, each with its own event record, and one conditional
write of the item and every record (:meth:`BatchStore.commit_batch`). The conditions are a
commit's, for the batch as a whole: the state is still the one read, no event of the batch is
recorded yet (else :class:`~sessions.errors.DuplicateEventError`, and the writer reads again),
the user's tombstone is still the one the read saw. All the records or none are written.

DynamoDB: one conditional ``PutItem`` of the conversation item with every record inline (a
transaction only when the batch creates the item, or a record needs an item of its own).
SQLite: one write transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sessions.keys import ConversationKey
from sessions.store import EventRecord, Snapshot, StoredState, Tombstone

#: The most turns a group commit writes at once (SQS FIFO hands a consumer up to 10 messages
#: of a group; a transaction takes 100 items; ten inline records add 160 bytes).
MAX_BATCH = 10


@dataclass(frozen=True, slots=True)
class BatchEvent:
    """One turn's record in a group commit, filed under its event's time."""

    event_sk: str
    event: EventRecord
    event_time: float | None = None


@dataclass(frozen=True, slots=True)
class BatchWrite:
    """A group commit: ``state`` (after every turn of the batch) replaces ``expected`` (what
    ``loaded`` read), with every event's record, atomically."""

    key: ConversationKey
    expected: StoredState | None
    state: StoredState
    events: tuple[BatchEvent, ...]
    tombstone: Tombstone | None
    now: int
    loaded: Snapshot | None = None

    @property
    def first_time(self) -> float | None:
        """The earliest event time of the batch (``None``: one is unknown): a conversation the
        batch creates must be later than the user's tombstone for each of its events."""
        times = [e.event_time for e in self.events]
        if any(t is None for t in times):
            return None
        return min(t for t in times if t is not None)


@dataclass(frozen=True, slots=True)
class BatchRead:
    """What a group commit's read found: the item (as :meth:`Store.load` finds it), each
    event's record (in order), and the tombstones of the ``users`` partitions asked for (the
    absent ones left out)."""

    snapshot: Snapshot
    records: tuple[EventRecord | None, ...]
    users: dict[str, Tombstone]


class BatchStore(Protocol):
    """What a store adds for group commits (both stores implement it)."""

    def load_batch(
        self,
        key: ConversationKey,
        events: Sequence[tuple[str, float | None]],
        users: Sequence[str] = (),
    ) -> BatchRead:
        """One consistent read of the item, its tombstone where it may matter (as
        :meth:`Store.load`), the record of each ``(event_sk, event_time)``, and the
        tombstones of the ``users`` partitions (DynamoDB: in the same request as the item)."""
        ...

    def commit_batch(self, write: BatchWrite) -> None:
        """Write ``write.state`` and every record at once, or nothing.

        Raises:
            DuplicateEventError: an event of the batch is recorded already (read again).
            ConflictError: the state or the tombstone moved.
            StoreError: the engine failed.
        """
        ...

    def put_events(self, records: Sequence[tuple[str, str, EventRecord]]) -> None:
        """Plain writes of records ``(pk, sk, record)`` that need no condition (membership
        marks: writing one again says the same), several per request."""
        ...

    def tombstones(self, pks: Sequence[str]) -> dict[str, Tombstone]:
        """The tombstones of these partitions, read consistently (one request): the absent
        ones are left out."""
        ...
