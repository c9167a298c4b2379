"""The store protocol: the few primitives a storage engine fills for the turn runner.

The session core (``sessions.runner``) owns keys, TTL, versions, idempotency records and the
outbox; a store only moves these records in and out, atomically where the turn needs it:

- ``load``: one consistent read of the conversation's state, the event's record and the
  user's tombstone (DynamoDB: one ``GetItem`` of the conversation item, which carries them);
- three conditional writes, each taking one :class:`EventWrite` (the record, what the turn's
  load saw, and the turn's state when it has one), each raising :class:`DuplicateEventError`
  when the event is already recorded and :class:`ConflictError` when the state or the
  tombstone moved, never overwriting either: ``commit`` (a turn: state + event record
  atomically; DynamoDB: one conditional ``PutItem``, a transaction only where one item cannot
  do), ``record_failure`` (a dead letter: the record alone, the state untouched) and
  ``claim`` (a record of its own: an effect's claim);
- ``claim_outbox`` / ``mark_sent``: the opt-in third request of "sent mark" mode;
- ``user_items`` / ``delete_user``: everything under one platform user (GDPR).

Generations (why a user delete cannot be undone): a delete writes a tombstone whose
``generation`` is its time in milliseconds, then removes the user's items. Every item a turn
writes carries the generation of the tombstone that turn saw (0: none). An item older than the
tombstone's generation is pre-delete data: the runner reads it as absent, and the delete removes
it; an item of the tombstone's generation or newer was written after the delete by a genuine
new event, and the delete leaves it alone. The commit checks that the tombstone is the one the
turn saw, so a turn that loaded before a delete cannot commit after it.

The contract is declared once, as the :class:`Store` protocol: a store conforms by its
methods, not by inheriting (structural typing, so the wrappers that time or fault a store, and a
user's own store, need no base class). Both stores (SQLite, DynamoDB) run the same contract suite
in ``tests/contract``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sessions.keys import ConversationKey, Partition

DONE = "done"
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class StoredState:
    """The conversation item. ``blob`` is :mod:`sessions.codec` output."""

    version: int
    blob: bytes
    expires_at: int
    updated_at: int
    enterprise: str | None = None
    generation: int = 0


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A committed event: proof that its turn happened, and what replay needs.

    ``response`` (encoded) is served to duplicates only until ``response_expires_at``;
    ``outbox`` (encoded replies) exists only in sent-mark mode, until ``sent_at`` is set;
    ``claimed_at`` is when a redelivery last claimed the outbox to resend it.

    A *dead letter* has ``status`` ``"failed"``: the turn could not complete and would fail
    again on every delivery. It changes no state; ``error`` names the failure and ``payload``
    (encoded) is what the edge needs to replay the event. A later successful commit of the
    same event replaces it.
    """

    version: int
    committed_at: int
    expires_at: int
    response: bytes | None = None
    response_expires_at: int = 0
    outbox: bytes | None = None
    sent_at: int | None = None
    status: str = DONE
    error: str | None = None
    payload: bytes | None = None
    generation: int = 0
    claimed_at: int | None = None

    @property
    def failed(self) -> bool:
        return self.status == FAILED


@dataclass(frozen=True, slots=True)
class Tombstone:
    """Left by a user delete. ``generation`` is the delete's time in milliseconds: events that
    happened at or before it are ignored, items of an older generation are pre-delete data."""

    generation: int
    expires_at: int

    @property
    def deleted_at(self) -> float:
        """The delete's time in epoch seconds (millisecond resolution)."""
        return self.generation / 1000


#: A closed workspace's stone, as a user's tombstone: later than any event can be.
CLOSED = 2**62


@dataclass(frozen=True, slots=True)
class WorkspaceStone:
    """Left by an uninstall (``Sessions.close_workspace``): no conversation of the workspace
    is created while it is ``closed``, nor, once it is open again (installed again), for an
    event at or before ``generation`` (the uninstall's time in milliseconds)."""

    generation: int
    closed: bool
    expires_at: int

    def blocks(self, event_ms: int, now: int) -> bool:
        """Whether it refuses the creation of a conversation by an event at ``event_ms``."""
        return self.expires_at > now and (self.closed or event_ms <= self.generation)

    def as_tombstone(self) -> Tombstone:
        """The stone as the runner judges a user's: a closed workspace is later than every
        event, so its events are ignored."""
        return Tombstone(CLOSED if self.closed else self.generation, self.expires_at)


def workspace_pk(platform: str, workspace: str) -> str:
    """Where a workspace's stone is kept (sk ``#tombstone``): ``<platform>#<workspace>``, a
    key no user or channel partition has (theirs have a third part)."""
    return f"{platform}#{workspace}"


#: Platforms whose workspaces are closed by an uninstall (a Messenger page has no such event:
#: its conversations' creation checks no stone, and costs no more).
CLOSABLE = frozenset({"slack"})


def stones_of(key: ConversationKey) -> list[str]:
    """The stones a conversation's creation checks: its workspace's and, on Enterprise Grid,
    its org's (an org-wide install's uninstall closes the org)."""
    if key.platform not in CLOSABLE:
        return []
    found = [workspace_pk(key.platform, key.workspace)]
    if key.enterprise and key.enterprise != key.workspace:
        found.append(workspace_pk(key.platform, key.enterprise))
    return found


# -- the delete rules (the runner and the admin views judge items by them) -----------------


def at_or_before(event_time: float, stone: Tombstone) -> bool:
    """Whether an event happened at or before the delete. An event time is the platform's
    clock truncated to its resolution (Slack: seconds, Messenger: milliseconds), so an event
    whose truncated time is at or before the delete's exact time may have happened before it;
    in milliseconds that is the comparison below, for both resolutions."""
    return round(event_time * 1000) <= stone.generation


def live_tombstone(stone: Tombstone | None, now: int) -> Tombstone | None:
    return stone if stone is not None and stone.expires_at > now else None


def tombstone_of(items: Sequence[tuple[str, Any]]) -> Tombstone | None:
    return next((item for _, item in items if isinstance(item, Tombstone)), None)


def pre_delete(generation: int, stone: Tombstone | None) -> bool:
    return stone is not None and generation < stone.generation


def live(state: StoredState, stone: Tombstone | None, now: int) -> bool:
    return state.expires_at > now and not pre_delete(state.generation, stone)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one consistent read returns. Records are as stored: expiry is the caller's call.

    ``tombstone`` is ``None`` both when there is none and when the store did not need to read
    it (a store may skip it when the conversation item proves it irrelevant, see
    ``Store.load``). ``handle`` is the store's own view of what it read, passed back to
    ``commit`` as ``loaded``; callers treat it as opaque.
    """

    state: StoredState | None
    event: EventRecord | None
    tombstone: Tombstone | None
    handle: Any = None


StoredItem = StoredState | EventRecord | Tombstone


@dataclass(frozen=True, slots=True)
class Side:
    """Another scope's item that a commit writes with the turn's own, atomically: ``state``
    only if the stored item is still ``expected`` (what ``loaded``, its load, saw)."""

    key: ConversationKey
    expected: StoredState | None
    state: StoredState
    loaded: Snapshot | None = None


@dataclass(frozen=True, slots=True)
class EventWrite:
    """One conditional write of an event's record, with the turn's state when it has one: what
    :meth:`Store.commit`, :meth:`Store.record_failure` and :meth:`Store.claim` take.

    Attributes:
        key: the conversation whose item (or partition) the record goes to.
        event_sk: the record's sort key (``key.event_sk(idempotency key)``).
        event: the record.
        tombstone: the user's tombstone as the turn's load saw it (``None``: none); the write
            is refused if the stored one is another (a delete ran meanwhile).
        now: the write's time (epoch seconds): a record expired at it does not count.
        state: the conversation's new state (``commit``); ``None``: the record alone (a dead
            letter, a claim), the state untouched.
        expected: the stored state the turn's load returned (``None``: no item stored); the
            state is written only if it is still that one.
        loaded: the turn's load (``None``: the store reads what it needs itself).
        event_time: when the event happened (``None``: now); a conversation this write
            creates must be later than any tombstone of the user.
        also: other scopes' items the turn changed, written in the same atomic write.
    """

    key: ConversationKey
    event_sk: str
    event: EventRecord
    tombstone: Tombstone | None
    now: int
    state: StoredState | None = None
    expected: StoredState | None = None
    loaded: Snapshot | None = None
    event_time: float | None = None
    also: tuple[Side, ...] = ()


class Store(Protocol):
    """Primitives a storage engine implements. See the module docstring for the contract."""

    def load(
        self,
        key: ConversationKey,
        event_sk: str | None,
        *,
        event_time: float | None = None,
        exact: bool = False,
    ) -> Snapshot:
        """Read state, event record (when ``event_sk`` is given) and tombstone at once.

        A store may leave out the tombstone when it cannot matter: the conversation item
        exists and was created after ``event_time`` could have been deleted (a delete removes
        conversation items in the same atomic write as it leaves its tombstone), or the
        conversation item is absent, in which case its creation is conditioned on the
        tombstone and refused with ``ConflictError(tombstone=...)``. ``exact`` asks for the
        event record and tombstone as stored, always.

        Raises:
            StoreError: the engine failed (``StoreUnavailableError`` when retryable).
        """
        ...

    def commit(self, write: EventWrite) -> None:
        """A turn's commit: write ``write.state`` and the event's record atomically, or nothing.

        ``write.also``: other scopes' items the turn changed, written in the same atomic
        write, each under the same state condition as the conversation item (DynamoDB: a
        transaction).

        The state is written only if the stored state item is still ``write.expected``, the
        one the turn's load returned (``None``: no item stored): same version, generation and
        ``updated_at``. The version alone is not enough: it starts again at 1 when a delete or
        DynamoDB's TTL sweep removes an item and a new event recreates it, and a commit that
        read the old item must not take the new one for it. The record is written only if no
        unexpired record (at ``write.now``) exists, or the one that exists is a dead letter;
        both only if the user's tombstone is still ``write.tombstone`` (what the turn's load
        saw; ``None``: no tombstone). A conversation this commit creates must be later than
        any tombstone of the user (``write.event_time``).

        Raises:
            DuplicateEventError: the event is already recorded (checked first).
            ConflictError: the stored state is not ``expected``, or the tombstone
                is not the one the turn saw (a delete ran meanwhile).
            ItemTooLargeError: the engine refused an item as too large.
            StoreError: the engine failed.
        """
        ...

    def record_failure(self, write: EventWrite) -> None:
        """Record a dead letter (``write.event`` with status failed; ``write.state`` is
        ``None``): the record alone, the state untouched, under the same conditions as
        :meth:`commit` (no unexpired record, or only a dead letter; the tombstone still
        ``write.tombstone``). Raises as :meth:`commit` does."""
        ...

    def claim(self, write: EventWrite) -> None:
        """Write a claim (an effect's, say): a record of its own, only if none unexpired
        exists and the tombstone is still ``write.tombstone`` (``write.state``, ``loaded``
        and ``event_time`` are not used).

        Raises:
            DuplicateEventError: already claimed.
            ConflictError: the tombstone is not ``tombstone``.
            StoreError: the engine failed.
        """
        ...

    def claim_outbox(self, key: ConversationKey, event_sk: str, *, now: int, stale: int) -> bool:
        """Claim an unsent outbox for resending: set ``claimed_at = now`` if the record still
        has an outbox, no ``sent_at``, and no claim newer than ``stale``. Returns whether this
        caller won the claim (two racing redeliveries: exactly one does)."""
        ...

    def mark_sent(self, key: ConversationKey, event_sk: str, *, sent_at: int) -> None:
        """Record that the event's replies went out, and drop its outbox."""
        ...

    def user_items(self, user: Partition) -> list[tuple[str, StoredItem]]:
        """Every item under the user's partition (or a Slack channel's), as ``(sort key,
        record)``, sort-key order."""
        ...

    def delete_user(self, user: Partition, *, tombstone: Tombstone) -> int:
        """Write ``tombstone`` first, then delete every other item of the user whose
        generation is older than the tombstone's (items of its generation or newer were
        written after the delete began, by genuine new events, and stay).

        Returns:
            How many items were deleted (the tombstone excluded).
        """
        ...

    def workspace_partitions(self, platform: str, workspace: str) -> list[str]:
        """The partition keys of every user and channel of a workspace that stored anything
        (a query of an index, never a scan of the table)."""
        ...

    def put_record(self, pk: str, sk: str, blob: bytes, *, expires_at: int) -> None:
        """Write a record of its own outside any conversation (an installation, a page's
        token, a one-time OAuth state), replacing the one there."""
        ...

    def create_record(self, pk: str, sk: str, blob: bytes, *, expires_at: int, now: int) -> bool:
        """Write a record only if none is there (or the one there expired at ``now``);
        whether this caller wrote it (of racing creators exactly one does: a lock)."""
        ...

    def get_record(self, pk: str, sk: str) -> tuple[bytes, int] | None:
        """A record's ``(blob, expires_at)`` (a consistent read), ``None`` when absent.
        Expiry is the caller's call."""
        ...

    def delete_record(self, pk: str, sk: str) -> tuple[bytes, int] | None:
        """Delete a record and return what it was; ``None`` when there was none. Of two
        racing deletes exactly one gets the record (a one-time state is consumed once)."""
        ...

    def close_workspace(self, pk: str, *, generation: int, expires_at: int) -> None:
        """Leave a workspace's stone (``pk`` from :func:`workspace_pk`), closed: from now on
        no conversation of it is created (checked in the creating commit)."""
        ...

    def reopen_workspace(self, pk: str, *, expires_at: int) -> None:
        """Open a closed workspace again (installed again): its stone stays until
        ``expires_at``, refusing only events at or before the uninstall."""
        ...

    def workspace_stone(self, pk: str) -> WorkspaceStone | None:
        """A workspace's stone (a consistent read), ``None`` when there is none."""
        ...

    def record_parts(self, pk: str) -> list[str]:
        """The sort keys of every record kept under ``pk`` (one installation's bot, latest
        and per-user records), read consistently: one ``Query`` of one partition, never a
        scan."""
        ...

    def health(self) -> None:
        """Check that the store is there and answers (DynamoDB: the table exists).

        Raises:
            StoreError: it is not (``StoreConfigError`` for a missing table).
        """
        ...

    def close(self) -> None:
        """Release connections. The store must not be used afterwards."""
        ...
