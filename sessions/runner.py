"""The turn runner: load, run the pure turn, commit with a condition, then hand off replies.

One delivered event is one *turn*. On DynamoDB a new event of an existing conversation costs
two requests, a read unit and (state under 1 KB) one billed write unit; a duplicate one request
and one read unit::

    delivery ──► load ────────────► turn(state, event) ──► commit ──────────► send replies
                 GetItem of the       pure; may run          one PutItem          after the
                 conversation item    again after a          conditioned on the   commit only
                 (state + recent      lost race              item the load saw
                 event records)

    duplicate ─► load: record found inline ─► recorded response (nothing written or sent)

Where event records live, and why (the DynamoDB store; ``make bench`` measures it): inline in
the conversation item, 16 bytes each (8 bytes of the id's SHA-256, commit and expiry times),
for as long as they fit in the KB the state already bills; DynamoDB bills writes per started
KB, so records that fit there are free. A record that does not fit, or a conversation busy
enough to fill its item within the event TTL (24 h: Slack's delayed-event retries), moves its
oldest record to a sibling item in the same ``TransactWriteItems`` (4 billed write units for
that turn, what every turn cost before) and notes in the item the latest time of an event kept
outside; an event that happened after that time needs no second read, so new events and fresh
retries stay at one read. Dead letters and sent-mark outboxes always have an item of their
own. Alternatives measured: sibling items for every record (exact, but 4 billed write units
per turn and 3 read units per load: the transaction bills double, and the load read three
keys); a single item with the last N ids (1 write unit, but a redelivery older than N events
is applied again). A user delete no longer needs a read of its tombstone on every turn: it
removes the conversation items in the same transaction as it writes the tombstone, so an
existing item proves no delete came since it was created; creating an item is a transaction
that checks the tombstone.

Guarantees (the README's "Guarantees, precisely" states them for users):

1. state changes once per idempotency key: the record's ``attribute_not_exists`` condition;
2. no lost update: the commit is conditioned on the state item the load saw (version,
   generation, write time: a version repeats after a delete or a TTL sweep); a lost race
   re-reads and re-runs the pure turn, with jittered backoff, and raises
   :class:`BusyError` after ``max_attempts``;
3. a duplicate writes and sends nothing and gets the first delivery's response;
4. replies are sent after the commit, at most once; in ``sent_mark`` mode the replies are
   kept in the record until a third request marks them sent, so a redelivery after a crash
   between commit and send sends them (at least once: a possible repeat instead of a loss);
5. a failure before the commit writes nothing, and the redelivery completes the turn.

Two kinds of failure (who retries what):

- errors that can heal (store unavailable or throttled, a lost race past ``max_attempts`` or
  the turn's ``deadline``) raise and write nothing: the edge answers 5xx, the platform
  redelivers, the event id makes that safe;
- errors that would recur on every delivery (:class:`PermanentError`: the bot raised, the
  stored state no longer decodes, a state or record too large for one item) are recorded
  once as a *dead letter*: an event record marked failed, with the error and the edge's
  replay payload, written under the same conditions as a commit but with no state. Then the
  error is raised with ``recorded = True``; the edge answers 200 (and apologises where it
  can). A redelivery finds the dead letter and is a duplicate; ``run(..., retry_failed=True)``
  (the admin CLI's ``retry``) runs the event again and, if it succeeds, replaces the dead
  letter with an ordinary record.

A user delete (:meth:`Sessions.delete_user`) leaves a tombstone whose generation is the delete's
time in milliseconds. An event that happened at or before it is ignored, compared at the
platform's own resolution (a Slack ``event_time`` in whole seconds counts as at or before a
delete in the same second; a Messenger timestamp in milliseconds one millisecond later does
not); state older than the tombstone reads as absent; and the commit checks the tombstone is
the one the turn loaded, so a turn in flight during a delete re-reads instead of writing the
user's data back. See :mod:`sessions.store` for the generation rule.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sessions import blobs, codec
from sessions.blobs import BlobStore
from sessions.encryption import DecryptError, Envelope, sealed
from sessions.errors import (
    BusyError,
    CodecError,
    ConflictError,
    DuplicateEventError,
    ItemTooLargeError,
    PermanentError,
    StateTooLargeError,
    StoreError,
    TurnError,
)
from sessions.keys import EVENT_MARK, ConversationKey, UserKey
from sessions.privacy import conversation_hash, fingerprint, private
from sessions.store import FAILED, EventRecord, Snapshot, Store, StoredState, Tombstone

log = private(logging.getLogger("sessions"))

#: ``(state, event) -> (new_state, replies, response)``, or ``(new_state, replies, response,
#: effects)``. Must be pure: it may run more than once for one event (after a lost race); only
#: the committed run's outputs are used. ``effects`` (JSON-compatible, as replies) are work
#: to start after the commit: never sent, returned in :attr:`TurnResult.effects`.
Turn = Callable[
    [Any, Any],
    tuple[Any, Sequence[Any], Any] | tuple[Any, Sequence[Any], Any, Sequence[Any]],
]
#: Receives the committed turn's replies. Called at most once per event (default mode).
Sender = Callable[[ConversationKey, Sequence[Any]], None]

DAY = 86_400
#: Keys, version, expiry and attribute names of an event record, with room to spare: what a
#: record holds besides its recorded response and outbox.
RECORD_OVERHEAD = 2048
#: A dead letter keeps its replay payload only up to this size (the event itself, bounded by
#: the platforms' own message limits; anything larger is recorded without it).
MAX_PAYLOAD_BYTES = 128 * 1024
#: What a stored value is (part of what an encrypted value is bound to).
STATE, RESPONSE, OUTBOX, PAYLOAD, ERROR = "state", "response", "outbox", "payload", "error"
#: Between a dead letter's error classes (in clear) and its sealed description.
SEALED = " sealed:"


@dataclass(frozen=True, slots=True)
class TurnResult:
    """What happened to one delivery.

    ``duplicate``: the event was already committed; ``response`` is the first delivery's
    (``None`` once it is older than the response TTL). ``failed``: (with ``duplicate``) the
    event is a dead letter, ``error`` says why. ``ignored``: the user was deleted after the
    event happened; nothing was stored. ``send_error``: the sender raised after the commit
    (logged; the state change stands).
    """

    response: Any
    replies: tuple[Any, ...] = ()
    #: What the committed turn asked to start after it (also on a duplicate that resent an
    #: unmarked outbox in ``sent_mark`` mode: claims keep each effect to one run).
    effects: tuple[Any, ...] = ()
    #: ``hold_mark`` left the sent mark to the caller (:meth:`Sessions.mark_sent`).
    mark_pending: bool = False
    state: Any = None
    version: int | None = None
    duplicate: bool = False
    ignored: bool = False
    failed: bool = False
    error: str | None = None
    attempts: int = 1
    sent: bool = False
    send_error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class TurnReport:
    """One delivery as the observer sees it (after the turn, whatever its outcome).

    ``outcome``: ``applied`` (committed), ``duplicate`` (already committed; ``replayed``
    when its recorded response was served), ``ignored`` (the user was deleted after the
    event), ``dead_lettered`` (a permanent error, recorded once; also a redelivery of a dead
    letter), ``busy`` (every attempt lost a race) or ``error`` (the store or the key service
    failed; the platform redelivers). ``store_ms``/``store_calls``: time in, and calls to,
    the store; ``large_reads``/``large_writes``: large-state objects read and written (S3);
    ``key_requests``: key-service (KMS) requests the turn made; ``read_units``/
    ``write_units``: capacity the store reported (DynamoDB; ``None`` for a store that does
    not report it).
    """

    key: ConversationKey
    idempotency_key: str
    outcome: str
    attempts: int
    turn_ms: float
    store_ms: float
    store_calls: int
    large_reads: int = 0
    large_writes: int = 0
    read_units: float | None = None
    write_units: float | None = None
    replayed: bool = False
    sent: bool | None = None
    send_error: str | None = None
    error: str | None = None
    key_requests: int = 0


#: Receives a :class:`TurnReport` after every delivery; its errors are logged, never raised.
Observer = Callable[[TurnReport], None]


class _Timed:
    """The store, timed: every call's duration and count, per thread (one turn at a time on a
    thread), for the turn's report."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._local = threading.local()

    def take(self) -> tuple[float, int]:
        taken = (getattr(self._local, "ms", 0.0), getattr(self._local, "calls", 0))
        self._local.ms, self._local.calls = 0.0, 0
        return taken

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr
        local = self._local

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                local.ms = getattr(local, "ms", 0.0) + (time.perf_counter() - started) * 1000
                local.calls = getattr(local, "calls", 0) + 1

        return timed


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
        dead_letter_ttl: seconds a dead letter is kept (and blocks redeliveries) for replay.
        max_attempts: reads+turns+commits tried on lost races before :class:`BusyError`.
        backoff: first backoff in seconds; doubles per attempt, full jitter, capped at
            ``max_backoff``.
        sent_mark: opt-in third request after sending, trading loss for a possible repeat.
        resend_after: in ``sent_mark`` mode, a duplicate resends an unmarked outbox only when
            the commit is at least this old (younger: the first delivery is likely still
            sending, and resending would double it).
        initial: factory for a new (or expired) conversation's state.
        large: where a state past ``large_above`` bytes (encoded, compressed and sealed) goes,
            written before the commit under a content-addressed name, the item keeping a
            pointer (S3, or a directory); without it a state must fit in its item.
        large_above: the threshold, in bytes.
        max_large_state: the largest state ``large`` takes (a bot's runaway state is refused,
            not stored).
        observer: gets a :class:`TurnReport` after every delivery (logs, metrics).
        encryption: seals everything stored from the conversation (state, recorded responses,
            outboxes, replay payloads, dead letters' descriptions) bound to its key; values
            stored in clear before it was turned on still read, and are sealed on their next
            write.
        require_sealed: with ``encryption``, refuse a value stored in clear (a permanent
            error: the event becomes a dead letter) instead of reading it and sealing it on
            the next write, which would let whoever can write the table plant state. Turn it
            on once every clear value was rewritten or expired (the migration: encryption on
            first, strict mode after the idle TTL, or after touching each conversation).
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
        dead_letter_ttl: int = 14 * DAY,
        max_attempts: int = 8,
        backoff: float = 0.01,
        max_backoff: float = 0.5,
        sent_mark: bool = False,
        resend_after: float = 10.0,
        initial: Callable[[], Any] = dict,
        encryption: Envelope | None = None,
        require_sealed: bool = False,
        large: BlobStore | None = None,
        large_above: int = 64 * 1024,
        max_large_state: int = 32 * 1024 * 1024,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.observer = observer
        self._timed = _Timed(store) if observer is not None else None
        #: What the runner calls: the store itself, or timed for the observer.
        self._store: Store = self._timed if self._timed is not None else store
        self.store = store
        self.idle_ttl = idle_ttl
        self.event_ttl = event_ttl
        self.response_ttl = response_ttl
        self.tombstone_ttl = tombstone_ttl
        self.dead_letter_ttl = dead_letter_ttl
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sent_mark = sent_mark
        self.resend_after = resend_after
        self.initial = initial
        self.encryption = encryption
        self.require_sealed = require_sealed and encryption is not None
        self.large = large
        self.large_above = large_above
        self.max_large_state = max_large_state
        self._io = threading.local()  # large-state reads and writes of this thread's turn
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
        dead_letter: Any = None,
        retry_failed: bool = False,
        deadline: float | None = None,
        initial: Callable[[], Any] | None = None,
        hold_mark: bool = False,
    ) -> TurnResult:
        """Run one delivered event through ``turn`` exactly once.

        Args:
            key: the conversation.
            idempotency_key: the platform's id for this event, identical on redelivery.
            turn: pure ``(state, event) -> (new_state, replies, response)``.
            event: passed to ``turn`` as is (a platform-neutral value).
            event_time: when the platform says the event happened (epoch seconds, at the
                platform's resolution); a user delete at or after it makes the event a no-op.
                ``None``: treated as new, so every edge passes it.
            sender: gets the replies after the commit; its errors are logged, not raised.
            dead_letter: JSON-compatible data kept with a dead letter so that the event can be
                replayed (the edges pass their deferred-job form of the event).
            retry_failed: run the event even if it is a dead letter (a replay).
            deadline: ``time.monotonic()`` value after which no lost race is retried
                (:class:`BusyError`), so a webhook answers before the platform gives up.
            initial: the state ``turn`` gets for a new conversation, instead of the
                ``Sessions``' own ``initial``.
            hold_mark: in ``sent_mark`` mode, when the turn has effects, leave the sent mark
                to the caller (:meth:`mark_sent`, once it started them), so that a crash
                before they started resends the outbox and starts them on redelivery
                (``TurnResult.mark_pending``).

        Raises:
            InvalidKeyError: bad idempotency key (nothing read or written).
            PermanentError: ``TurnError`` (the turn raised; ``__cause__`` is its error),
                ``CodecError`` or ``ItemTooLargeError``: no state was written, and the event
                was recorded as a dead letter (``recorded``) unless a race made that moot.
            BusyError: every attempt lost a race; nothing was written by this delivery.
            StoreError: the store failed; a redelivery is safe.
        """
        if self.observer is None:
            return self._run(
                key, idempotency_key, turn, event, event_time, sender, dead_letter,
                retry_failed, deadline, initial, hold_mark,
            )  # fmt: skip
        assert self._timed is not None
        self._timed.take()
        self._io.reads = self._io.writes = 0
        capacity = getattr(self.store, "take_capacity", None)
        if capacity is not None:
            capacity()
        keys_before = self.encryption.key_requests if self.encryption else 0
        started = time.perf_counter()
        result: TurnResult | None = None
        failure: BaseException | None = None
        try:
            result = self._run(
                key, idempotency_key, turn, event, event_time, sender, dead_letter,
                retry_failed, deadline, initial, hold_mark,
            )  # fmt: skip
            return result
        except BaseException as exc:
            failure = exc
            raise
        finally:
            turn_ms = (time.perf_counter() - started) * 1000
            store_ms, store_calls = self._timed.take()
            keys = (self.encryption.key_requests if self.encryption else 0) - keys_before
            report = dataclasses.replace(
                _report(key, idempotency_key, result, failure, turn_ms, store_ms, store_calls),
                key_requests=keys,
                large_reads=self._io.reads,
                large_writes=self._io.writes,
            )
            if capacity is not None:
                read_units, write_units = capacity()
                report = dataclasses.replace(report, read_units=read_units, write_units=write_units)
            self._observe(report)

    def _observe(self, report: TurnReport) -> None:
        try:
            assert self.observer is not None
            self.observer(report)
        except Exception:  # an observer's bug must not fail a committed turn
            log.exception("turn observer failed")

    def _run(
        self,
        key: ConversationKey,
        idempotency_key: str,
        turn: Turn,
        event: Any,
        event_time: float | None,
        sender: Sender | None,
        dead_letter: Any,
        retry_failed: bool,
        deadline: float | None,
        initial: Callable[[], Any] | None,
        hold_mark: bool = False,
    ) -> TurnResult:
        event_sk = key.event_sk(idempotency_key)
        # A tombstone learnt from a refused commit (a store may not read it on every load).
        learnt: Tombstone | None = None
        for attempt in range(1, self.max_attempts + 1):
            snap = self._store.load(key, event_sk, event_time=event_time, exact=retry_failed)
            now = int(self.clock())
            seen = snap.event
            if seen is not None and seen.expires_at > now and not (seen.failed and retry_failed):
                return self._duplicate(key, event_sk, seen, now, attempt, sender, hold_mark)
            stone = _live_tombstone(snap.tombstone or learnt, now)
            if stone is not None and event_time is not None and _at_or_before(event_time, stone):
                log.info(
                    "event for a deleted user ignored",
                    extra={"conversation": conversation_hash(key.pk, key.sk)},
                )
                return TurnResult(response=None, ignored=True, attempts=attempt)

            stored = snap.state
            floor = stone.generation if stone else 0
            try:
                live = (
                    stored is not None
                    and stored.expires_at > now
                    and stored.generation >= floor  # older: pre-delete data
                )
                # Items keep the generation they were written under (a store that skipped the
                # tombstone still knows the item is newer than it).
                generation = max(floor, stored.generation if live and stored else 0)
                state = (
                    self._decode(stored.blob, key.pk, key.sk, STATE)
                    if live and stored
                    else (initial or self.initial)()
                )
                try:
                    output = turn(state, event)
                except Exception as exc:
                    raise TurnError(f"turn failed: {type(exc).__name__}: {exc}") from exc
                new_state, replies, response = output[:3]
                replies = tuple(replies)
                effects = tuple(output[3]) if len(output) > 3 else ()
                version = (stored.version if stored else 0) + 1
                blob = self._encode(new_state, key, STATE)
                record = self._record(key, version, now, generation, response, replies, effects)
            except PermanentError as exc:
                generation = floor
                try:
                    self._record_failure(
                        key, event_sk, snap, exc, now, generation, dead_letter, event_time
                    )
                except DuplicateEventError as dup:  # a racing delivery committed the event
                    if dup.record is not None:
                        return self._duplicate(
                            key, event_sk, dup.record, now, attempt, sender, hold_mark
                        )
                    continue
                except ConflictError as conflict:  # a delete ran meanwhile: judge it again
                    learnt = conflict.tombstone or learnt
                    continue
                raise exc from exc.__cause__

            try:
                self._store.commit(
                    key,
                    expected=stored,
                    state=StoredState(
                        version=version,
                        blob=blob,
                        expires_at=now + self.idle_ttl,
                        updated_at=now,
                        enterprise=key.enterprise,
                        generation=generation,
                    ),
                    event_sk=event_sk,
                    event=record,
                    tombstone=snap.tombstone,
                    now=now,
                    loaded=snap,
                    event_time=event_time,
                )
            except DuplicateEventError as exc:
                # Another delivery of this event committed first: we are the duplicate.
                if exc.record is not None:
                    return self._duplicate(
                        key, event_sk, exc.record, now, attempt, sender, hold_mark
                    )
                continue  # the engine did not return the record: the next load reads it
            except ConflictError as exc:
                if exc.tombstone is not None:
                    learnt = exc.tombstone
                    continue  # no backoff: judge the event against the delete at once
                if attempt < self.max_attempts:
                    pause = self.rand() * min(self.max_backoff, self.backoff * 2**attempt)
                    if deadline is not None and time.monotonic() + pause >= deadline:
                        raise BusyError(
                            f"conversation {key.pk}/{key.sk} still busy at the turn's deadline",
                            attempts=attempt,
                        ) from None
                    self.sleep(pause)
                continue

            hold = hold_mark and self.sent_mark and bool(effects)
            sent, send_error = self._send(key, event_sk, replies, sender, hold=hold)
            return TurnResult(
                response=response,
                replies=replies,
                effects=effects,
                mark_pending=hold,
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

    def _record(
        self,
        key: ConversationKey,
        version: int,
        now: int,
        generation: int,
        response: Any,
        replies: tuple[Any, ...],
        effects: tuple[Any, ...] = (),
    ) -> EventRecord:
        """The event record of a successful turn, refused (as the state is) when it would not
        fit in one item, so that both stores fail alike and before anything is written."""
        encoded = None if response is None else self._encode(response, key, RESPONSE)
        outbox = None
        if self.sent_mark and (replies or effects):
            kept: Any = {"replies": list(replies), "effects": list(effects)}
            outbox = self._encode(kept if effects else list(replies), key, OUTBOX)
        size = RECORD_OVERHEAD + len(encoded or b"") + len(outbox or b"")
        if size > codec.ITEM_LIMIT:
            raise ItemTooLargeError(
                f"the event record (recorded response {len(encoded or b'')} bytes, outbox "
                f"{len(outbox or b'')} bytes) would not fit in one item of {codec.ITEM_LIMIT}",
                size=size,
                limit=codec.ITEM_LIMIT,
            )
        return EventRecord(
            version=version,
            committed_at=now,
            expires_at=now + self.event_ttl,
            response=encoded,
            response_expires_at=now + self.response_ttl,
            outbox=outbox,
            generation=generation,
        )

    def _record_failure(
        self,
        key: ConversationKey,
        event_sk: str,
        snap: Snapshot,
        error: PermanentError,
        now: int,
        generation: int,
        dead_letter: Any,
        event_time: float | None,
    ) -> None:
        """Record the event as a dead letter (one conditional write, no state), then mark
        ``error`` recorded. Raises what ``commit`` raises."""
        payload = None
        note = ""
        if dead_letter is not None:
            try:
                payload = self._encode(dead_letter, key, PAYLOAD, limit=MAX_PAYLOAD_BYTES)
            except (CodecError, ItemTooLargeError) as exc:
                note = f" (replay payload not kept: {exc})"
        description = f"{type(error).__name__}: {error}"[:2000] + note
        if self.encryption is not None:
            # The message may quote the user: sealed like the payload, the classes in clear.
            sealed_text = self._encode(description, key, ERROR)
            description = _error_classes(error) + SEALED + base64.b64encode(sealed_text).decode()
        self._store.commit(
            key,
            expected=None,
            state=None,
            event_sk=event_sk,
            event=EventRecord(
                version=snap.state.version if snap.state else 0,
                committed_at=now,
                expires_at=now + self.dead_letter_ttl,
                status=FAILED,
                error=description,
                payload=payload,
                generation=generation,
            ),
            tombstone=snap.tombstone,
            now=now,
            loaded=snap,
            event_time=event_time,
        )
        error.recorded = True
        # The description (kept in the dead letter) quotes the error's message: not here.
        log.error(
            "event recorded as a dead letter: %s",
            _error_classes(error),
            extra={"conversation": conversation_hash(key.pk, key.sk)},
        )

    def _duplicate(
        self,
        key: ConversationKey,
        event_sk: str,
        record: EventRecord,
        now: int,
        attempt: int,
        sender: Sender | None,
        hold_mark: bool = False,
    ) -> TurnResult:
        if record.failed:
            return TurnResult(
                response=None,
                version=record.version,
                duplicate=True,
                failed=True,
                error=self._error_text(record.error, key.pk, key.sk),
                attempts=attempt,
            )
        response = None
        if record.response is not None and record.response_expires_at > now:
            response = self._decode(record.response, key.pk, key.sk, RESPONSE)
        sent, send_error = False, None
        effects: tuple[Any, ...] = ()
        hold = False
        if (
            self.sent_mark
            and record.outbox is not None
            and record.sent_at is None
            and now - record.committed_at >= self.resend_after
            # Two redeliveries may race here: only the one that claims the outbox resends.
            and self._store.claim_outbox(
                key, event_sk, now=now, stale=now - math.ceil(self.resend_after)
            )
        ):
            # The first delivery committed but never marked its replies sent (it crashed, or
            # its send failed): send them now. This is the "possible repeat" of sent-mark mode.
            replies, effects = _outbox(self._decode(record.outbox, key.pk, key.sk, OUTBOX))
            hold = hold_mark and bool(effects)
            sent, send_error = self._send(key, event_sk, replies, sender, hold=hold)
        return TurnResult(
            response=response,
            effects=effects,
            mark_pending=hold,
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
        *,
        hold: bool = False,
    ) -> tuple[bool, BaseException | None]:
        if sender is None or not replies:
            return False, None
        try:
            sender(key, replies)
        except Exception as exc:
            # Committed already: the state change stands and the replies are not retried
            # here (at most once). Sent-mark mode leaves the outbox for a redelivery.
            log.exception(
                "sending replies failed after commit",
                extra={"conversation": conversation_hash(key.pk, key.sk)},
            )
            return False, exc
        if self.sent_mark and not hold:
            try:
                self._store.mark_sent(key, event_sk, sent_at=int(self.clock()))
            except StoreError:
                # Sent already: failing the delivery now would only make the platform
                # redeliver and (after resend_after) repeat the replies.
                log.exception(
                    "replies sent but the sent mark failed",
                    extra={"conversation": conversation_hash(key.pk, key.sk)},
                )
        return True, None

    def mark_sent(self, key: ConversationKey, idempotency_key: str) -> None:
        """Mark a committed event's outbox sent (``sent_mark`` mode, after ``hold_mark``):
        redeliveries stop resending it. Never raises (a failed mark only means a possible
        repeat, which this mode accepts)."""
        try:
            self._store.mark_sent(key, key.event_sk(idempotency_key), sent_at=int(self.clock()))
        except StoreError:
            log.exception(
                "the sent mark failed",
                extra={"conversation": conversation_hash(key.pk, key.sk)},
            )

    def claim(self, key: ConversationKey, token: str, *, event_time: float | None) -> bool:
        """Whether this caller is the first to claim ``token`` in the conversation (within
        ``event_ttl``): an "at most once" gate for work outside the store, such as a bot's
        effect. One conditional write (a second one, after a read, if the user was deleted
        recently). ``False`` too when the user was deleted after ``event_time``.

        Raises:
            StoreError: the store failed; whether the token is claimed is unknown, so the
                caller must not do the work now (a retry claims it or learns it is taken).
        """
        event_sk = key.event_sk(token)
        now = int(self.clock())
        record = EventRecord(version=0, committed_at=now, expires_at=now + self.event_ttl)
        stone: Tombstone | None = None
        for _ in range(self.max_attempts):
            try:
                self._store.commit(
                    key,
                    expected=None,
                    state=None,
                    event_sk=event_sk,
                    event=dataclasses.replace(record, generation=stone.generation if stone else 0),
                    tombstone=stone,
                    now=now,
                )
                return True
            except DuplicateEventError:
                return False
            except ConflictError:  # a tombstone that we did not expect: read it
                snap = self._store.load(key, event_sk, exact=True)
                if snap.event is not None and snap.event.expires_at > now:
                    return False
                stone = _live_tombstone(snap.tombstone, now)
                if (
                    stone is not None
                    and event_time is not None
                    and _at_or_before(event_time, stone)
                ):
                    return False
                stone = snap.tombstone
        raise BusyError(f"could not claim {token!r}", attempts=self.max_attempts)

    # -- encoding: codec, then sealing ----------------------------------------------------

    def _encode(
        self, value: Any, key: ConversationKey, kind: str, *, limit: int = codec.MAX_STATE_BYTES
    ) -> bytes:
        large = self.large if kind == STATE else None
        if large is not None:
            limit = self.max_large_state
        blob = codec.encode(value, limit=limit)
        if self.encryption is not None:
            blob = self.encryption.seal(blob, aad=_aad(key.pk, key.sk, kind))
            if len(blob) > limit:
                raise StateTooLargeError(
                    f"encrypted {kind} is {len(blob)} bytes; at most {limit} are kept",
                    size=len(blob),
                    limit=limit,
                )
        if large is None or len(blob) <= self.large_above:
            return blob
        # Before the commit, under its content's name: until the commit points at it, the
        # object is invisible (a crash or a lost race leaves an orphan the lifecycle removes).
        name = blobs.name_for(key.pk, blob)
        large.put(name, blob)
        self._io.writes = getattr(self._io, "writes", 0) + 1
        return blobs.POINTER + name.encode()

    def _error_text(self, error: str | None, pk: str, sk: str) -> str | None:
        """A dead letter's error description, opened when it was sealed (its classes alone,
        saying so, when it cannot be)."""
        if error is None or SEALED not in error:
            return error
        classes, _, text = error.partition(SEALED)
        try:
            opened = self._decode(base64.b64decode(text, validate=True), pk, sk, ERROR)
        except (CodecError, ValueError):
            return f"{classes} (description sealed; cannot open it here)"
        return opened if isinstance(opened, str) else classes

    def _open(self, blob: bytes, pk: str, sk: str, kind: str) -> bytes:
        if blobs.is_pointer(blob):
            if self.large is None:
                raise CodecError(
                    f"the stored {kind} is in the large-state store, and none is configured "
                    "(SESSIONS_LARGE_STATE_BUCKET or SESSIONS_LARGE_STATE_DIR)"
                )
            name = blobs.pointed(blob, pk)
            blob = blobs.check(name, pk, self.large.get(name))
            self._io.reads = getattr(self._io, "reads", 0) + 1
        if not sealed(blob):
            if self.require_sealed:
                # Whoever can write the table could plant state: refused, never re-sealed.
                raise DecryptError(f"the stored {kind} is in clear and sealed values are required")
            return blob  # stored in clear (before encryption was turned on)
        if self.encryption is None:
            raise DecryptError(
                f"the stored {kind} is encrypted and no key is configured "
                "(SESSIONS_KMS_KEY_ID or SESSIONS_ENCRYPTION_KEY)"
            )
        return self.encryption.open(blob, aad=_aad(pk, sk, kind))

    def _decode(self, blob: bytes, pk: str, sk: str, kind: str) -> Any:
        return codec.decode(self._open(blob, pk, sk, kind))

    def _decoded(self, blob: bytes | None, pk: str, sk: str, kind: str) -> Any:
        """For export: the value, or why it does not decode."""
        if blob is None:
            return None
        try:
            return self._decode(blob, pk, sk, kind)
        except CodecError as exc:
            return {"undecodable": str(exc)}

    def _conversation(self, key: ConversationKey, item: StoredState) -> Conversation:
        return Conversation(
            key=key,
            state=self._decode(item.blob, key.pk, key.sk, STATE),
            version=item.version,
            updated_at=item.updated_at,
            expires_at=item.expires_at,
        )

    # -- reading and user records -----------------------------------------------------------

    def get(self, key: ConversationKey) -> Conversation | None:
        """The live conversation, or ``None`` when absent, expired or deleted."""
        snap = self._store.load(key, None)
        now = int(self.clock())
        if snap.state is None or not _live(snap.state, _live_tombstone(snap.tombstone, now), now):
            return None
        return self._conversation(key, snap.state)

    def conversations(self, user: UserKey) -> list[Conversation]:
        """The user's live conversations (one Query on DynamoDB)."""
        now = int(self.clock())
        items = self.store.user_items(user)
        stone = _live_tombstone(_tombstone_of(items), now)
        found = []
        for sk, item in items:
            if isinstance(item, StoredState) and _live(item, stone, now):
                key = ConversationKey(user.platform, user.workspace, sk, user.user, item.enterprise)
                found.append(self._conversation(key, item))
        return found

    def dead_letters(
        self, user: UserKey, *, unopened: list[str] | None = None
    ) -> list[tuple[str, EventRecord]]:
        """The user's unexpired dead letters as ``(sort key, record)`` (one Query); a record's
        ``payload`` is opened (decrypted) for :func:`sessions.codec.decode`.

        Every dead letter is listed: one whose payload does not open (a key no longer
        configured, a damaged or planted value) comes with ``payload=None``, and its sort key
        is appended to ``unopened`` with the reason's class.
        """
        now = int(self.clock())
        letters = []
        for sk, item in self.store.user_items(user):
            if not (isinstance(item, EventRecord) and item.failed and item.expires_at > now):
                continue
            payload = item.payload
            if payload:
                try:
                    payload = self._open(payload, user.pk, _channel_of(sk), PAYLOAD)
                except CodecError as exc:
                    payload = None
                    if unopened is not None:
                        unopened.append(f"{sk}: {type(exc).__name__}")
            error = self._error_text(item.error, user.pk, _channel_of(sk))
            letters.append((sk, dataclasses.replace(item, payload=payload, error=error)))
        return letters

    def export(self, user: UserKey) -> dict[str, Any]:
        """Everything stored for the user, as JSON-compatible data (one Query on DynamoDB).

        Nothing is left out: items that the rest of the API no longer shows are included and
        say why, ``"expired": true`` (past their expiry, waiting for DynamoDB's TTL sweep) or
        ``"deleted": true`` (older than a user delete that is still removing them).
        """
        now = int(self.clock())
        items = self.store.user_items(user)
        stone = _live_tombstone(_tombstone_of(items), now)
        conversations: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        tombstone: dict[str, Any] | None = None
        for sk, item in items:
            if isinstance(item, StoredState):
                conversations.append(
                    {
                        "channel": sk,
                        "enterprise": item.enterprise,
                        "version": item.version,
                        "updated_at": item.updated_at,
                        "expires_at": item.expires_at,
                        "expired": item.expires_at <= now,
                        "deleted": _pre_delete(item.generation, stone),
                        "state": self._decoded(item.blob, user.pk, sk, STATE),
                    }
                )
            elif isinstance(item, EventRecord):
                channel = _channel_of(sk)
                events.append(
                    {
                        "sk": sk,
                        "status": item.status,
                        "error": self._error_text(item.error, user.pk, channel),
                        "version": item.version,
                        "committed_at": item.committed_at,
                        "expires_at": item.expires_at,
                        "expired": item.expires_at <= now,
                        "deleted": _pre_delete(item.generation, stone),
                        "response": self._decoded(item.response, user.pk, channel, RESPONSE),
                        "replies": self._decoded(item.outbox, user.pk, channel, OUTBOX),
                        "sent_at": item.sent_at,
                        "payload": self._decoded(item.payload, user.pk, channel, PAYLOAD),
                    }
                )
            else:
                tombstone = {
                    "deleted_at": item.deleted_at,
                    "expires_at": item.expires_at,
                    "expired": item.expires_at <= now,
                }
        return {
            "user": user.pk,
            "platform": user.platform,
            "exported_at": now,
            "conversations": conversations,
            "events": events,
            "tombstone": tombstone,
        }

    def delete_user(self, user: UserKey, *, settle: float = 0.0) -> int:
        """Delete everything stored for the user and leave a short-lived tombstone.

        A late redelivery of an event that happened before this call is then ignored instead
        of recreating the user's data, and a turn in flight cannot commit pre-delete state
        back. The delete's time is kept in milliseconds and compared with each event's time
        at its platform's resolution. Returns how many items were deleted (large-state objects,
        also deleted, are not counted).

        A turn in flight during the delete may still write what it writes *before* its commit
        (a large state's object, a busy conversation's page of event records) after the delete
        has removed everything: its commit then fails, and what it wrote is unreachable, but
        it is there. ``settle``: wait that long (the longest a turn can still be running: the
        function's timeout) and delete again under the same tombstone, which removes exactly
        those leftovers and nothing written since by genuine new events.
        """
        now = self.clock()
        stone = Tombstone(generation=int(now * 1000), expires_at=int(now) + self.tombstone_ttl)
        deleted, objects = self._delete_once(user, stone)
        if settle > 0:
            self.sleep(settle)
            more, more_objects = self._delete_once(user, stone)
            deleted, objects = deleted + more, objects + more_objects
        log.info(
            "user deleted",
            extra={"user": fingerprint(user.pk), "items": deleted, "objects": objects},
        )
        return deleted

    def _delete_once(self, user: UserKey, stone: Tombstone) -> tuple[int, int]:
        deleted = self.store.delete_user(user, tombstone=stone)
        objects = 0
        if self.large is not None:  # after the tombstone: nothing can point at them again
            objects = self.large.delete_prefix(blobs.user_prefix(user.pk))
        return deleted, objects


def _error_classes(error: BaseException) -> str:
    """An error and its causes by class (``TurnError < KeyError``): what a log line may say."""
    names = [type(error).__name__]
    cause = error.__cause__
    while cause is not None and len(names) < 5:
        names.append(type(cause).__name__)
        cause = cause.__cause__
    return " < ".join(names)


def _at_or_before(event_time: float, stone: Tombstone) -> bool:
    """Whether an event happened at or before the delete. An event time is the platform's
    clock truncated to its resolution (Slack: seconds, Messenger: milliseconds), so an event
    whose truncated time is at or before the delete's exact time may have happened before it;
    in milliseconds that is the comparison below, for both resolutions."""
    return round(event_time * 1000) <= stone.generation


def _live_tombstone(stone: Tombstone | None, now: int) -> Tombstone | None:
    return stone if stone is not None and stone.expires_at > now else None


def _tombstone_of(items: Sequence[tuple[str, Any]]) -> Tombstone | None:
    return next((item for _, item in items if isinstance(item, Tombstone)), None)


def _pre_delete(generation: int, stone: Tombstone | None) -> bool:
    return stone is not None and generation < stone.generation


def _live(state: StoredState, stone: Tombstone | None, now: int) -> bool:
    return state.expires_at > now and not _pre_delete(state.generation, stone)


def _outbox(value: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """An outbox's replies and effects (one written before effects were kept apart is a
    list of both; the edges tell them apart by their ``kind``)."""
    if isinstance(value, dict):
        return tuple(value.get("replies") or ()), tuple(value.get("effects") or ())
    return tuple(value), ()


def _report(
    key: ConversationKey,
    idempotency_key: str,
    result: TurnResult | None,
    failure: BaseException | None,
    turn_ms: float,
    store_ms: float,
    store_calls: int,
) -> TurnReport:
    attempts = result.attempts if result else getattr(failure, "attempts", 1)
    common: dict[str, Any] = {
        "key": key,
        "idempotency_key": idempotency_key,
        "attempts": attempts,
        "turn_ms": round(turn_ms, 3),
        "store_ms": round(store_ms, 3),
        "store_calls": store_calls,
    }
    if result is None:
        if isinstance(failure, PermanentError):
            outcome = "dead_lettered"
        elif isinstance(failure, BusyError):
            outcome = "busy"
        else:
            outcome = "error"
        error = f"{type(failure).__name__}: {failure}"[:300] if failure else None
        return TurnReport(outcome=outcome, error=error, **common)
    if result.ignored:
        outcome = "ignored"
    elif result.failed:
        outcome = "dead_lettered"
    elif result.duplicate:
        outcome = "duplicate"
    else:
        outcome = "applied"
    sent = result.sent if (result.replies or result.sent or result.send_error) else None
    return TurnReport(
        outcome=outcome,
        replayed=result.duplicate and result.response is not None,
        sent=sent,
        send_error=type(result.send_error).__name__ if result.send_error else None,
        error=result.error,
        **common,
    )


def _aad(pk: str, sk: str, kind: str) -> bytes:
    """What a sealed value is bound to: its user, its conversation and its role."""
    return f"{pk}\0{sk}\0{kind}".encode()


def _channel_of(event_sk: str) -> str:
    """The conversation's sort key in an event record's (``<channel>#evt#<hash>``)."""
    return event_sk.split(EVENT_MARK, 1)[0]


__all__ = [
    "Conversation",
    "Sender",
    "Sessions",
    "Turn",
    "TurnReport",
    "TurnResult",
]
