"""The turn runner: load, run the pure turn, commit with a condition, then hand off replies.

One delivered event is one *turn*. On DynamoDB a new event costs two requests and a duplicate
one::

    delivery ──► load ────────────► turn(state, event) ──► commit ──────────► send replies
                 BatchGetItem         pure; may run          TransactWriteItems   after the
                 (state, event         again after a         (state if version    commit only
                 record, tombstone)    lost race             = v, record if new)

    duplicate ─► load: record found ─► recorded response (nothing written, nothing sent)

Why the event record is a sibling item (``sk = <channel>#evt#<sha256>``) rather than a list
inside the conversation item: the conversation item then holds only the state, so however
chatty a conversation is it never grows toward DynamoDB's 400 KB limit, and dedup is exact for
the whole 24 h redelivery window instead of "the last N ids". The price is the transaction's
double write units (``benchmarks/event_records.py`` measures both layouts); the request count
is the same, 2 per new event and 1 per duplicate.

Guarantees (DESIGN.md, "The turn, and its budget"):

1. state changes once per idempotency key: the record's ``attribute_not_exists`` condition;
2. no lost update: the state's version condition; a lost race re-reads and re-runs the pure
   turn, with jittered backoff, and raises :class:`BusyError` after ``max_attempts``;
3. a duplicate writes and sends nothing and gets the first delivery's response;
4. replies are sent after the commit, at most once; in ``sent_mark`` mode the replies are
   kept in the record until a third request marks them sent, so a redelivery after a crash
   between commit and send sends them (at least once: a possible repeat instead of a loss);
5. a failure before the commit writes nothing, and the redelivery completes the turn.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sessions import codec
from sessions.errors import (
    BusyError,
    ConflictError,
    DuplicateEventError,
    TurnError,
)
from sessions.keys import ConversationKey, UserKey
from sessions.store import EventRecord, Snapshot, Store, StoredState, Tombstone

log = logging.getLogger("sessions")

#: ``(state, event) -> (new_state, replies, response)``. Must be pure: it may run more than
#: once for one event (after a lost race); only the committed run's outputs are used.
Turn = Callable[[Any, Any], tuple[Any, Sequence[Any], Any]]
#: Receives the committed turn's replies. Called at most once per event (default mode).
Sender = Callable[[ConversationKey, Sequence[Any]], None]

DAY = 86_400


@dataclass(frozen=True, slots=True)
class TurnResult:
    """What happened to one delivery.

    ``duplicate``: the event was already committed; ``response`` is the first delivery's
    (``None`` once it is older than the response TTL). ``ignored``: the user was deleted after
    the event happened; nothing was stored. ``send_error``: the sender raised after the
    commit (logged; the state change stands).
    """

    response: Any
    replies: tuple[Any, ...] = ()
    state: Any = None
    version: int | None = None
    duplicate: bool = False
    ignored: bool = False
    attempts: int = 1
    sent: bool = False
    send_error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class Conversation:
    """A stored conversation, as the admin tools and exports show it."""

    key: ConversationKey
    state: Any
    version: int
    updated_at: int
    expires_at: int


class Sessions:
    """Conversation sessions over a :class:`~sessions.store.Store`.

    Args:
        store: where state and event records live.
        idle_ttl: seconds a conversation lives after its last turn (``expires_at``).
        event_ttl: seconds an event id is remembered (24 h covers Slack's delayed retries).
        response_ttl: seconds a recorded response is served to duplicates.
        tombstone_ttl: seconds a user delete blocks late redeliveries of older events.
        max_attempts: reads+turns+commits tried on lost races before :class:`BusyError`.
        backoff: first backoff in seconds; doubles per attempt, full jitter, capped at
            ``max_backoff``.
        sent_mark: opt-in third request after sending, trading loss for a possible repeat.
        resend_after: in ``sent_mark`` mode, a duplicate resends an unmarked outbox only when
            the commit is at least this old (younger: the first delivery is likely still
            sending, and resending would double it).
        initial: factory for a new (or expired) conversation's state.
        clock, sleep, rand: injectable for tests.
    """

    def __init__(
        self,
        store: Store,
        *,
        idle_ttl: int = 7 * DAY,
        event_ttl: int = DAY,
        response_ttl: int = 15 * 60,
        tombstone_ttl: int = DAY + 3600,
        max_attempts: int = 8,
        backoff: float = 0.01,
        max_backoff: float = 0.5,
        sent_mark: bool = False,
        resend_after: float = 10.0,
        initial: Callable[[], Any] = dict,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.store = store
        self.idle_ttl = idle_ttl
        self.event_ttl = event_ttl
        self.response_ttl = response_ttl
        self.tombstone_ttl = tombstone_ttl
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sent_mark = sent_mark
        self.resend_after = resend_after
        self.initial = initial
        self.clock = clock
        self.sleep = sleep
        self.rand = rand

    # -- the turn ---------------------------------------------------------------------------

    def run(
        self,
        key: ConversationKey,
        idempotency_key: str,
        turn: Turn,
        event: Any,
        *,
        event_time: float | None = None,
        sender: Sender | None = None,
    ) -> TurnResult:
        """Run one delivered event through ``turn`` exactly once.

        Args:
            key: the conversation.
            idempotency_key: the platform's id for this event, identical on redelivery.
            turn: pure ``(state, event) -> (new_state, replies, response)``.
            event: passed to ``turn`` as is (a platform-neutral value).
            event_time: when the platform says the event happened (epoch seconds); a user
                delete after it makes the event a no-op. ``None``: treated as new.
            sender: gets the replies after the commit; its errors are logged, not raised.

        Raises:
            InvalidKeyError: bad idempotency key.
            TurnError: ``turn`` raised; nothing was written (``__cause__`` is its error).
            CodecError, StateTooLargeError: the new state cannot be stored; nothing written.
            BusyError: every attempt lost a race; nothing was written by this delivery.
            StoreError: the store failed; a redelivery is safe.
        """
        event_sk = key.event_sk(idempotency_key)
        for attempt in range(1, self.max_attempts + 1):
            snap = self.store.load(key, event_sk)
            now = int(self.clock())
            if snap.event is not None and snap.event.expires_at > now:
                return self._duplicate(key, event_sk, snap.event, now, attempt, sender)
            if _blocked_by_tombstone(snap, now, event_time):
                log.info("event for a deleted user ignored", extra={"pk": key.pk})
                return TurnResult(response=None, ignored=True, attempts=attempt)

            stored = snap.state
            live = stored is not None and stored.expires_at > now
            state = codec.decode(stored.blob) if live and stored else self.initial()
            try:
                new_state, replies, response = turn(state, event)
            except Exception as exc:
                raise TurnError(f"turn failed: {type(exc).__name__}: {exc}") from exc
            replies = tuple(replies)

            version = (stored.version if stored else 0) + 1
            blob = codec.encode(new_state)
            record = EventRecord(
                version=version,
                committed_at=now,
                expires_at=now + self.event_ttl,
                response=None if response is None else codec.encode(response),
                response_expires_at=now + self.response_ttl,
                outbox=codec.encode(list(replies)) if self.sent_mark and replies else None,
            )
            try:
                self.store.commit(
                    key,
                    expected_version=stored.version if stored else None,
                    state=StoredState(
                        version=version,
                        blob=blob,
                        expires_at=now + self.idle_ttl,
                        updated_at=now,
                        enterprise=key.enterprise,
                    ),
                    event_sk=event_sk,
                    event=record,
                    now=now,
                )
            except DuplicateEventError as exc:
                # Another delivery of this event committed first: we are the duplicate.
                if exc.record is not None:
                    return self._duplicate(key, event_sk, exc.record, now, attempt, sender)
                continue  # the engine did not return the record: the next load reads it
            except ConflictError:
                if attempt < self.max_attempts:
                    self.sleep(self.rand() * min(self.max_backoff, self.backoff * 2**attempt))
                continue

            sent, send_error = self._send(key, event_sk, replies, sender)
            return TurnResult(
                response=response,
                replies=replies,
                state=new_state,
                version=version,
                attempts=attempt,
                sent=sent,
                send_error=send_error,
            )
        raise BusyError(
            f"conversation {key.pk}/{key.sk} stayed busy through {self.max_attempts} attempts",
            attempts=self.max_attempts,
        )

    def _duplicate(
        self,
        key: ConversationKey,
        event_sk: str,
        record: EventRecord,
        now: int,
        attempt: int,
        sender: Sender | None,
    ) -> TurnResult:
        response = None
        if record.response is not None and record.response_expires_at > now:
            response = codec.decode(record.response)
        sent, send_error = False, None
        if (
            self.sent_mark
            and record.outbox is not None
            and record.sent_at is None
            and now - record.committed_at >= self.resend_after
        ):
            # The first delivery committed but never marked its replies sent (it crashed, or
            # its send failed): send them now. This is the "possible repeat" of sent-mark mode.
            replies = tuple(codec.decode(record.outbox))
            sent, send_error = self._send(key, event_sk, replies, sender)
        return TurnResult(
            response=response,
            version=record.version,
            duplicate=True,
            attempts=attempt,
            sent=sent,
            send_error=send_error,
        )

    def _send(
        self,
        key: ConversationKey,
        event_sk: str,
        replies: tuple[Any, ...],
        sender: Sender | None,
    ) -> tuple[bool, BaseException | None]:
        if sender is None or not replies:
            return False, None
        try:
            sender(key, replies)
        except Exception as exc:
            # Committed already: the state change stands and the replies are not retried
            # here (at most once). Sent-mark mode leaves the outbox for a redelivery.
            log.exception("sending replies failed after commit", extra={"pk": key.pk})
            return False, exc
        if self.sent_mark:
            self.store.mark_sent(key, event_sk, sent_at=int(self.clock()))
        return True, None

    # -- reading and user records -----------------------------------------------------------

    def get(self, key: ConversationKey) -> Conversation | None:
        """The live conversation, or ``None`` when absent or expired."""
        snap = self.store.load(key, None)
        now = int(self.clock())
        if snap.state is None or snap.state.expires_at <= now:
            return None
        return _conversation(key, snap.state)

    def conversations(self, user: UserKey) -> list[Conversation]:
        """The user's live conversations (one Query on DynamoDB)."""
        now = int(self.clock())
        found = []
        for sk, item in self.store.user_items(user):
            if isinstance(item, StoredState) and item.expires_at > now:
                key = ConversationKey(user.platform, user.workspace, sk, user.user, item.enterprise)
                found.append(_conversation(key, item))
        return found

    def export(self, user: UserKey) -> dict[str, Any]:
        """Everything stored for the user, as JSON-compatible data (one Query on DynamoDB)."""
        conversations: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        tombstone: dict[str, Any] | None = None
        for sk, item in self.store.user_items(user):
            if isinstance(item, StoredState):
                conversations.append(
                    {
                        "channel": sk,
                        "enterprise": item.enterprise,
                        "version": item.version,
                        "updated_at": item.updated_at,
                        "expires_at": item.expires_at,
                        "state": codec.decode(item.blob),
                    }
                )
            elif isinstance(item, EventRecord):
                events.append(
                    {
                        "sk": sk,
                        "version": item.version,
                        "committed_at": item.committed_at,
                        "expires_at": item.expires_at,
                        "response": None if item.response is None else codec.decode(item.response),
                        "replies": None if item.outbox is None else codec.decode(item.outbox),
                        "sent_at": item.sent_at,
                    }
                )
            else:
                tombstone = {"deleted_at": item.deleted_at, "expires_at": item.expires_at}
        return {
            "user": user.pk,
            "platform": user.platform,
            "exported_at": int(self.clock()),
            "conversations": conversations,
            "events": events,
            "tombstone": tombstone,
        }

    def delete_user(self, user: UserKey) -> int:
        """Delete everything stored for the user and leave a short-lived tombstone.

        A late redelivery of an event that happened before this call is then ignored instead
        of recreating the user's data. Returns how many items were deleted.
        """
        # Rounded up: an event in the same second as the delete counts as older.
        now = math.ceil(self.clock())
        deleted = self.store.delete_user(
            user, tombstone=Tombstone(deleted_at=now, expires_at=now + self.tombstone_ttl)
        )
        log.info("user deleted", extra={"pk": user.pk, "items": deleted})
        return deleted


def _blocked_by_tombstone(snap: Snapshot, now: int, event_time: float | None) -> bool:
    stone = snap.tombstone
    if stone is None or stone.expires_at <= now or event_time is None:
        return False
    return event_time <= stone.deleted_at


def _conversation(key: ConversationKey, item: StoredState) -> Conversation:
    return Conversation(
        key=key,
        state=codec.decode(item.blob),
        version=item.version,
        updated_at=item.updated_at,
        expires_at=item.expires_at,
    )


__all__ = [
    "Conversation",
    "Sender",
    "Sessions",
    "Turn",
    "TurnResult",
]
