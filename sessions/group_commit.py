"""Group commit: the turns of one busy item, applied by one writer in order, several per write.

The serialised path holds a busy item's turns in order (``handlers.serial``); instead of a
read and a write per turn, it hands them here in groups (at most :data:`MAX_BATCH`)::

    turns t1..tn of item K ──► load_batch: one read of K (and each event's record)
                               fold in memory, in order: each turn as if committed alone
                                 a duplicate (recorded, or earlier in the same batch): skipped
                                 an event at or before the user's delete: ignored
                                 a moot turn (NOTHING): nothing for it
                                 a turn that raises: left out, run alone afterwards
                               commit_batch: one conditional write, every record with it
                               send each turn's replies, in order, after that write

Every promise of a single turn holds per event: its record is written with the state change
it made, in one atomic write, or nothing is (a lost race reads and folds again); a duplicate
is never applied twice, even inside one batch; replies are sent after the write, at most once
(a crash between the write and the sends loses them, as it does for one turn: redeliveries are
duplicates); a delete between two batches is judged by the second's read, as by a turn's.
Turns the fold leaves out (a turn that raised: a dead letter; one over several scopes; the
sent-mark mode, whose records need items of their own) run one at a time, through
:meth:`Sessions.run`, after the batch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sessions.batches import MAX_BATCH, BatchEvent, BatchWrite
from sessions.errors import (
    BusyError,
    ConflictError,
    DuplicateEventError,
    PermanentError,
)
from sessions.keys import ConversationKey
from sessions.outcomes import NOTHING, TurnResult
from sessions.privacy import conversation_hash, private
from sessions.sealing import STATE
from sessions.store import CLOSED, EventRecord, StoredState, Tombstone, at_or_before, live_tombstone

if TYPE_CHECKING:
    from sessions.runner import Sender, Sessions, Turn

log = private(logging.getLogger("sessions.group_commit"))


@dataclass(frozen=True, slots=True)
class Batched:
    """One turn of a group commit: what :meth:`Sessions.run` takes for one event."""

    idempotency_key: str
    turn: Turn
    event: Any
    event_time: float | None = None
    sender: Sender | None = None
    dead_letter: Any = None
    #: A partition whose tombstone also judges the event (the user's, for a turn on a
    #: shared item whose membership mark was just written): at or before that delete, the
    #: event is ignored (``late``), as it is in the user's own partition.
    user: str | None = None


@dataclass(slots=True)
class _Applied:
    index: int
    event_sk: str
    record: EventRecord
    response: Any
    replies: tuple[Any, ...]
    effects: tuple[Any, ...]
    state: Any
    version: int


def run_batch(
    sessions: Sessions,
    key: ConversationKey,
    items: Sequence[Batched],
    *,
    initial: Callable[[], Any] | None = None,
    keep: Callable[[Any], float | None] | None = None,
) -> list[TurnResult]:
    """Run ``items`` (turns of ``key``'s item, in order) as group commits of at most
    :data:`MAX_BATCH`; one result per item, in order. Raises what :meth:`Sessions.run`
    raises for an error that can heal (``StoreError``, ``BusyError``): nothing of the group
    that failed was written, and the earlier groups' were."""
    store = sessions._store
    if sessions.sent_mark or not hasattr(store, "commit_batch"):
        return [_alone(sessions, key, item, initial, keep) for item in items]
    results: list[TurnResult] = []
    for start in range(0, len(items), MAX_BATCH):
        results += _group(sessions, key, items[start : start + MAX_BATCH], initial, keep)
    return results


#: The response of a turn ignored because its ``user`` was deleted at or after the event.
LATE = "late"


def _late(stone: Tombstone | None, event_time: float | None, now: int) -> bool:
    found = live_tombstone(stone, now)
    return found is not None and (
        found.generation >= CLOSED or (event_time is not None and at_or_before(event_time, found))
    )


def _alone(
    sessions: Sessions,
    key: ConversationKey,
    item: Batched,
    initial: Callable[[], Any] | None,
    keep: Callable[[Any], float | None] | None,
) -> TurnResult:
    return sessions.run(
        key,
        item.idempotency_key,
        item.turn,
        item.event,
        event_time=item.event_time,
        sender=item.sender,
        dead_letter=item.dead_letter,
        initial=initial,
        keep=keep,
    )


def _group(
    sessions: Sessions,
    key: ConversationKey,
    items: Sequence[Batched],
    initial: Callable[[], Any] | None,
    keep: Callable[[Any], float | None] | None,
) -> list[TurnResult]:
    store: Any = sessions._store
    sks = [key.event_sk(item.idempotency_key) for item in items]
    learnt: Tombstone | None = None
    for attempt in range(1, sessions.max_attempts + 1):
        read = store.load_batch(
            key,
            [(sk, item.event_time) for sk, item in zip(sks, items, strict=True)],
            [item.user for item in items if item.user],
        )
        snap, records = read.snapshot, read.records
        now = int(sessions.clock())
        stone = max(
            (s for s in (live_tombstone(snap.tombstone, now), live_tombstone(learnt, now)) if s),
            key=lambda s: s.generation,
            default=None,
        )
        stored = snap.state
        floor = stone.generation if stone else 0
        live = stored is not None and stored.expires_at > now and stored.generation >= floor
        generation = max(floor, stored.generation if live and stored else 0)
        state = (
            sessions.sealing.decode(stored.blob, key.pk, key.sk, STATE)
            if live and stored
            else (initial or sessions.initial)()
        )
        version = stored.version if stored else 0
        results: list[TurnResult | None] = [None] * len(items)
        applied: list[_Applied] = []
        alone: list[int] = []
        seen: dict[str, int] = {}
        for index, (item, sk) in enumerate(zip(items, sks, strict=True)):
            record = records[index]
            if record is not None and record.expires_at > now:
                results[index] = sessions._duplicate(key, sk, record, now, attempt, None)
                continue
            if sk in seen:  # delivered twice inside this batch: the first counts
                results[index] = TurnResult(response=None, duplicate=True, attempts=attempt)
                continue
            seen[sk] = index
            if stone is not None and (
                stone.generation >= CLOSED
                or (item.event_time is not None and at_or_before(item.event_time, stone))
            ):
                results[index] = TurnResult(response=None, ignored=True, attempts=attempt)
                continue
            if item.user and _late(read.users.get(item.user), item.event_time, now):
                results[index] = TurnResult(response=LATE, ignored=True, attempts=attempt)
                continue
            try:
                output = item.turn(state, item.event)
            except Exception:
                alone.append(index)  # it raises again alone, and is a dead letter there
                continue
            new_state, replies, response = output[:3]
            if new_state is NOTHING:
                results[index] = TurnResult(response=response, ignored=True, attempts=attempt)
                continue
            effects = tuple(output[3]) if len(output) > 3 else ()
            version += 1
            try:
                record = sessions._record(
                    key, version, now, generation, response, tuple(replies), effects
                )
            except PermanentError:
                version -= 1
                alone.append(index)
                continue
            applied.append(
                _Applied(index, sk, record, response, tuple(replies), effects, new_state, version)
            )
            state = new_state
        if applied:
            try:
                blob = sessions.sealing.encode(state, key, STATE)
            except PermanentError:
                # The folded state is too large (or does not encode): each turn alone.
                return [_alone(sessions, key, item, initial, keep) for item in items]
            expires_at = now + sessions.idle_ttl
            kept = keep(state) if keep is not None else None
            if kept is not None and math.isfinite(kept):
                expires_at = max(expires_at, math.ceil(kept) + sessions.event_ttl)
            write = BatchWrite(
                key=key,
                expected=stored,
                state=StoredState(
                    version=version,
                    blob=blob,
                    expires_at=expires_at,
                    updated_at=now,
                    enterprise=key.enterprise,
                    generation=generation,
                ),
                events=tuple(
                    BatchEvent(a.event_sk, a.record, items[a.index].event_time) for a in applied
                ),
                tombstone=snap.tombstone,
                now=now,
                loaded=snap,
            )
            try:
                store.commit_batch(write)
            except DuplicateEventError:
                continue  # another writer committed one of them: read again, it is a duplicate
            except ConflictError as exc:
                if exc.tombstone is not None:
                    learnt = exc.tombstone
                    continue
                if attempt < sessions.max_attempts:
                    sessions.sleep(
                        sessions.rand() * min(sessions.max_backoff, sessions.backoff * 2**attempt)
                    )
                continue
        for done in applied:
            item = items[done.index]
            sent, send_error = sessions._send(key, done.event_sk, done.replies, item.sender)
            results[done.index] = TurnResult(
                response=done.response,
                replies=done.replies,
                effects=done.effects,
                state=done.state,
                version=done.version,
                attempts=attempt,
                sent=sent,
                send_error=send_error,
            )
        for index in alone:
            try:
                results[index] = _alone(sessions, key, items[index], initial, keep)
            except PermanentError as exc:  # now a dead letter (the caller tells the user)
                if not exc.recorded:
                    raise
                results[index] = TurnResult(
                    response=None, failed=True, error=type(exc).__name__, attempts=attempt
                )
        if applied:
            log.info(
                "group commit of %d turns",
                len(applied),
                extra={"conversation": conversation_hash(key.pk, key.sk)},
            )
        return [r if r is not None else TurnResult(response=None) for r in results]
    raise BusyError(
        f"conversation {key.pk}/{key.sk} stayed busy through {sessions.max_attempts} group commits",
        attempts=sessions.max_attempts,
    )
