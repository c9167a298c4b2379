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

Where event records live (the DynamoDB store; ``sessions.dynamodb_layout`` has the whole
rule, ``make bench`` the figures): inline in the conversation item, 16 bytes each, filed under
the platform's event time, in the KB the state already bills; when the item as read is full,
the next write moves them all out, to one page item written before the commit, so a
redelivery reads exactly one page. Dead letters, sent-mark outboxes and effect claims have
an item of their own. A user delete removes the conversation items in the same transaction
as it writes the tombstone, so an existing item proves no delete came since it was created;
creating an item is a transaction that checks the tombstone.

The rest of the session's surface lives beside this module: ``sealing`` (codec, encryption,
large states), ``views`` (the admin tools' reads and the user delete), ``outcomes`` (what a
delivery came to, for the caller and the observer).

Guarantees (docs/guarantees.md, "Guarantees, precisely", states them for users):

1. state changes once per idempotency key: the record's ``attribute_not_exists`` condition;
2. no lost update: the commit is conditioned on the state item the load saw (version,
   generation, write time: a version repeats after a delete or a TTL sweep); a lost race
   re-reads and re-runs the pure turn, with jittered backoff, and raises
   :class:`BusyError` after ``max_attempts``;
3. a duplicate writes and sends nothing and gets the first delivery's recorded response
   (when the turn recorded one);
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

import dataclasses
import functools
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

from sessions import codec, group_commit
from sessions.blobs import BlobStore
from sessions.encryption import Envelope
from sessions.errors import (
    BusyError,
    CodecError,
    ConflictError,
    DuplicateEventError,
    ItemTooLargeError,
    PermanentError,
    StoreError,
    TurnError,
)
from sessions.group_commit import Batched
from sessions.installations import Installations
from sessions.keys import ConversationKey
from sessions.outcomes import NOTHING, Observer, Timed, TurnReport, TurnResult, report_of
from sessions.privacy import conversation_hash, private
from sessions.schedules import Scheduler
from sessions.sealing import OUTBOX, PAYLOAD, RESPONSE, STATE, Sealing
from sessions.store import (
    CLOSED,
    FAILED,
    EventRecord,
    EventWrite,
    Side,
    Snapshot,
    Store,
    StoredState,
    Tombstone,
    at_or_before,
    live_tombstone,
)
from sessions.views import Conversation, Views

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

#: What :meth:`Sessions.claim_outcome` found.
ClaimOutcome = Literal["claimed", "taken", "late"]
#: This caller claimed the token first.
CLAIMED: Final = "claimed"
#: The token was claimed already.
TAKEN: Final = "taken"
#: The user was deleted at or after the event (or the workspace is closed): nothing written.
LATE: Final = "late"


class Sessions(Views):
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
        scheduler: where the bots' timers wait (``sessions.schedules``); a user delete and a
            workspace erase cancel theirs. ``None``: no timers.
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
        scheduler: Scheduler | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.observer = observer
        self.scheduler = scheduler
        self._timed = Timed(store) if observer is not None else None
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
        self.large = large
        #: Codec, encryption and large states: what a value goes through to and from the store.
        self.sealing = Sealing(
            encryption=encryption,
            require_sealed=require_sealed,
            large=large,
            large_above=large_above,
            max_large_state=max_large_state,
        )
        self.require_sealed = self.sealing.require_sealed
        self.clock = clock
        #: Sealed records outside any conversation (pages' tokens, installations).
        self.installations = Installations(store, self.sealing, clock)
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
        scopes: Sequence[ConversationKey] = (),
        keep: Callable[[Any], float | None] | None = None,
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
                replayed (the edges pass their deferred-job form of the event), or a function
                of no arguments that makes it: called only when the event fails.
            retry_failed: run the event even if it is a dead letter (a replay).
            deadline: ``time.monotonic()`` value after which no lost race is retried
                (:class:`BusyError`), so a webhook answers before the platform gives up.
            initial: the state ``turn`` gets for a new conversation, instead of the
                ``Sessions``' own ``initial``.
            hold_mark: in ``sent_mark`` mode, when the turn has effects, leave the sent mark
                to the caller (:meth:`mark_sent`, once it started them), so that a crash
                before they started resends the outbox and starts them on redelivery
                (``TurnResult.mark_pending``).
            scopes: more items the turn reads and writes beside ``key``'s (other scopes of
                the same event: a channel's state and the user's). ``turn`` then gets a
                tuple of states, ``key``'s first, ``None`` for one not stored (``initial``
                is not called for them), and returns one in the same order; all are
                committed atomically with the event's record, which ``key``'s item holds.
                :data:`NOTHING` for another scope's state leaves that item unwritten.
            keep: given the new state (``key``'s), the epoch seconds it must outlive (its
                pending timers' last due time), ``None`` for none: the item then expires
                no sooner than an event TTL after it, even past the idle TTL.

        A turn whose new state is :data:`NOTHING` writes nothing (the event is moot).

        Raises:
            InvalidKeyError: bad idempotency key (nothing read or written).
            PermanentError: ``TurnError`` (the turn raised; ``__cause__`` is its error),
                ``CodecError`` or ``ItemTooLargeError``: no state was written, and the event
                was recorded as a dead letter (``recorded``) unless a race made that moot.
            BusyError: every attempt lost a race; nothing was written by this delivery.
            StoreError: the store failed; a redelivery is safe.
        """
        attempt = functools.partial(
            self._run, key, idempotency_key, turn, event, event_time, sender, dead_letter,
            retry_failed, deadline, initial, hold_mark, tuple(scopes), keep,
        )  # fmt: skip
        if self.observer is None:
            return attempt()
        assert self._timed is not None
        self._timed.take()
        self.sealing.reset_io()
        capacity = getattr(self.store, "take_capacity", None)
        if capacity is not None:
            capacity()
        keys_before = self.encryption.key_requests if self.encryption else 0
        started = time.perf_counter()
        result: TurnResult | None = None
        failure: BaseException | None = None
        try:
            result = attempt()
            return result
        except BaseException as exc:
            failure = exc
            raise
        finally:
            turn_ms = (time.perf_counter() - started) * 1000
            store_ms, store_calls = self._timed.take()
            keys = (self.encryption.key_requests if self.encryption else 0) - keys_before
            report = dataclasses.replace(
                report_of(key, idempotency_key, result, failure, turn_ms, store_ms, store_calls),
                key_requests=keys,
                large_reads=self.sealing.reads,
                large_writes=self.sealing.writes,
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
        scopes: tuple[ConversationKey, ...] = (),
        keep: Callable[[Any], float | None] | None = None,
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
            # The later of the user's tombstone and one learnt from a refused commit (a
            # closed workspace's stone is later than every event).
            stone = max(
                (
                    s
                    for s in (live_tombstone(snap.tombstone, now), live_tombstone(learnt, now))
                    if s
                ),
                key=lambda s: s.generation,
                default=None,
            )
            if stone is not None and (
                stone.generation >= CLOSED
                or (event_time is not None and at_or_before(event_time, stone))
            ):
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
                    self.sealing.decode(stored.blob, key.pk, key.sk, STATE)
                    if live and stored
                    else (initial or self.initial)()
                )
                sides = [self._side(side, stone, key, now) for side in scopes]
                if sides:
                    state = (state, *(side[1] for side in sides))
                try:
                    output = turn(state, event)
                except Exception as exc:
                    raise TurnError(f"turn failed: {type(exc).__name__}: {exc}") from exc
                new_state, replies, response = output[:3]
                if new_state is NOTHING:
                    # Nothing written; the turn's response says why, for the caller (a
                    # timer's fire whose timer is gone: its schedule goes too).
                    return TurnResult(response=response, ignored=True, attempts=attempt)
                replies = tuple(replies)
                effects = tuple(output[3]) if len(output) > 3 else ()
                version = (stored.version if stored else 0) + 1
                also: tuple[Side, ...] = ()
                if sides:
                    new_state, also = self._sides(scopes, sides, new_state, now)
                expires_at = now + self.idle_ttl
                kept = keep(new_state) if keep is not None else None
                if kept is not None and math.isfinite(kept):
                    expires_at = max(expires_at, math.ceil(kept) + self.event_ttl)
                blob = self.sealing.encode(new_state, key, STATE)
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
                    EventWrite(
                        key,
                        event_sk,
                        record,
                        tombstone=snap.tombstone,
                        now=now,
                        state=StoredState(
                            version=version,
                            blob=blob,
                            expires_at=expires_at,
                            updated_at=now,
                            enterprise=key.enterprise,
                            generation=generation,
                        ),
                        expected=stored,
                        loaded=snap,
                        event_time=event_time,
                        also=also,
                    )
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

    def _side(
        self, side: ConversationKey, stone: Tombstone | None, key: ConversationKey, now: int
    ) -> tuple[Snapshot, Any, int]:
        """Another scope's item for a multi-scope turn: its load, its state (``None``: none
        live) and the generation its write carries."""
        snap = self._store.load(side, None)
        own = live_tombstone(snap.tombstone, now) or (stone if side.pk == key.pk else None)
        floor = own.generation if own else 0
        stored = snap.state
        live = stored is not None and stored.expires_at > now and stored.generation >= floor
        generation = max(floor, stored.generation if live and stored else 0)
        value = (
            self.sealing.decode(stored.blob, side.pk, side.sk, STATE) if live and stored else None
        )
        return snap, value, generation

    def _sides(
        self,
        scopes: tuple[ConversationKey, ...],
        sides: list[tuple[Snapshot, Any, int]],
        new_state: Any,
        now: int,
    ) -> tuple[Any, tuple[Side, ...]]:
        """Split a multi-scope turn's new states: ``key``'s, and the others' writes."""
        if not isinstance(new_state, (tuple, list)) or len(new_state) != 1 + len(scopes):
            raise TurnError(
                f"a turn over {1 + len(scopes)} scopes returned {type(new_state).__name__} "
                "as its state; expected one state per scope, in order"
            )
        also = []
        for side, (snap, _, generation), value in zip(scopes, sides, new_state[1:], strict=True):
            if value is NOTHING:
                continue  # left as it is: not written (a deleted user's item stays deleted)
            stored = snap.state
            also.append(
                Side(
                    key=side,
                    expected=stored,
                    state=StoredState(
                        version=(stored.version if stored else 0) + 1,
                        blob=self.sealing.encode(value, side, STATE),
                        expires_at=now + self.idle_ttl,
                        updated_at=now,
                        enterprise=side.enterprise,
                        generation=generation,
                    ),
                    loaded=snap,
                )
            )
        return new_state[0], tuple(also)

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
        encoded = None if response is None else self.sealing.encode(response, key, RESPONSE)
        outbox = None
        if self.sent_mark and (replies or effects):
            kept: Any = {"replies": list(replies), "effects": list(effects)}
            outbox = self.sealing.encode(kept if effects else list(replies), key, OUTBOX)
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
        if callable(dead_letter):
            dead_letter = dead_letter()  # only a failed turn serialises its event
        if dead_letter is not None:
            try:
                payload = self.sealing.encode(dead_letter, key, PAYLOAD, limit=MAX_PAYLOAD_BYTES)
            except (CodecError, ItemTooLargeError) as exc:
                note = f" (replay payload not kept: {exc})"
        description = f"{type(error).__name__}: {error}"[:2000] + note
        # The message may quote the user: sealed like the payload, the classes in clear.
        description = self.sealing.describe(_error_classes(error), description, key)
        record = EventRecord(
            version=snap.state.version if snap.state else 0,
            committed_at=now,
            expires_at=now + self.dead_letter_ttl,
            status=FAILED,
            error=description,
            payload=payload,
            generation=generation,
        )
        self._store.record_failure(
            EventWrite(
                key,
                event_sk,
                record,
                tombstone=snap.tombstone,
                now=now,
                loaded=snap,
                event_time=event_time,
            )
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
                error=self.sealing.error_text(record.error, key.pk, key.sk),
                attempts=attempt,
            )
        response = None
        if record.response is not None and record.response_expires_at > now:
            response = self.sealing.decode(record.response, key.pk, key.sk, RESPONSE)
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
            replies, effects = _outbox(self.sealing.decode(record.outbox, key.pk, key.sk, OUTBOX))
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

    def claim(
        self,
        key: ConversationKey,
        token: str,
        *,
        event_time: float | None,
        ttl: int | None = None,
        payload: Any = None,
    ) -> bool:
        """Whether this caller is the first to claim ``token`` in the conversation (within
        ``ttl``, default ``event_ttl``): an "at most once" gate for work outside the store,
        such as a bot's effect. One conditional write (a second one, after a read, if the user
        was deleted recently). ``False`` too when the user was deleted after ``event_time``.
        ``payload``: JSON-compatible, kept sealed with the claim (:meth:`claimed` reads it).

        :meth:`claim_outcome` tells the two ``False`` apart.

        Raises:
            StoreError: the store failed; whether the token is claimed is unknown, so the
                caller must not do the work now (a retry claims it or learns it is taken).
        """
        return (
            self.claim_outcome(key, token, event_time=event_time, ttl=ttl, payload=payload)
            == CLAIMED
        )

    def claim_outcome(
        self,
        key: ConversationKey,
        token: str,
        *,
        event_time: float | None,
        ttl: int | None = None,
        payload: Any = None,
    ) -> ClaimOutcome:
        """:meth:`claim`, telling why a claim was refused: :data:`CLAIMED` (this caller is
        the first), :data:`TAKEN` (claimed already) or :data:`LATE` (the user was deleted at
        or after ``event_time``, at the platform's resolution, or their workspace is closed:
        the event counts as one from before the delete, nothing is written).

        Raises:
            StoreError: as :meth:`claim`.
        """
        event_sk = key.event_sk(token)
        now = int(self.clock())
        record = EventRecord(
            version=0,
            committed_at=now,
            expires_at=now + (self.event_ttl if ttl is None else ttl),
            payload=None if payload is None else self.sealing.encode(payload, key, PAYLOAD),
        )
        stone: Tombstone | None = None
        for _ in range(self.max_attempts):
            try:
                self._store.claim(
                    EventWrite(
                        key,
                        event_sk,
                        dataclasses.replace(record, generation=stone.generation if stone else 0),
                        tombstone=stone,
                        now=now,
                    )
                )
                return CLAIMED
            except DuplicateEventError:
                return TAKEN
            except ConflictError:  # a tombstone that we did not expect: read it
                snap = self._store.load(key, event_sk, exact=True)
                if snap.event is not None and snap.event.expires_at > now:
                    return TAKEN
                stone = live_tombstone(snap.tombstone, now)
                if stone is not None and (
                    stone.generation >= CLOSED
                    or (event_time is not None and at_or_before(event_time, stone))
                ):
                    return LATE
                stone = snap.tombstone
        raise BusyError(f"could not claim {token!r}", attempts=self.max_attempts)

    def run_batch(
        self,
        key: ConversationKey,
        items: Sequence[Batched],
        *,
        initial: Callable[[], Any] | None = None,
        keep: Callable[[Any], float | None] | None = None,
    ) -> list[TurnResult]:
        """Run several events of one item, in order, as group commits (one read and one write
        for up to ten turns; ``sessions.group_commit``): one result per item, as
        :meth:`run` would give it."""
        return group_commit.run_batch(self, key, items, initial=initial, keep=keep)

    def claimed(self, key: ConversationKey, record: EventRecord) -> Any:
        """The payload kept with a claim (``None``: none), as a user's items list it.

        Raises:
            CodecError: it does not open.
        """
        if record.payload is None:
            return None
        return self.sealing.decode(record.payload, key.pk, key.sk, PAYLOAD)


def _error_classes(error: BaseException) -> str:
    """An error and its causes by class (``TurnError < KeyError``): what a log line may say."""
    names = [type(error).__name__]
    cause = error.__cause__
    while cause is not None and len(names) < 5:
        names.append(type(cause).__name__)
        cause = cause.__cause__
    return " < ".join(names)


def _outbox(value: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """An outbox's replies and effects (one written before effects were kept apart is a
    list of both; the edges tell them apart by their ``kind``)."""
    if isinstance(value, dict):
        return tuple(value.get("replies") or ()), tuple(value.get("effects") or ())
    return tuple(value), ()


__all__ = [
    "CLAIMED",
    "LATE",
    "TAKEN",
    "ClaimOutcome",
    "Conversation",
    "Sender",
    "Sessions",
    "Turn",
    "TurnReport",
    "TurnResult",
]
