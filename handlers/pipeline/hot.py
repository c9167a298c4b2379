"""A hot item: many writers on one item at once (a poll everyone votes in), and its turns in
batches on the serialised path.

Optimistic turns are right for a quiet conversation and wrong for a hot one: each lost race
re-reads and re-writes. So, on a shared item (a Slack channel's or thread's state; a user's own
conversation is written by one user, and retries as before: :func:`eligible`), a webhook's turn
gets one optimistic try, and a container remembers, for :data:`HOT_FOR` seconds, the items on
which one of its turns lost a race (:class:`HotItems`); a webhook's turn on such an item is not
tried at all: it goes straight to the serialised path, behind the item's other turns, and is
acked. The serialised path takes the item's turns in order, up to ten at a time (an SQS FIFO
batch of one message group; locally the per-item worker's queue), and applies them as one
group commit (:func:`run_jobs`, ``Sessions.run_batch``): one read, the turns folded in memory,
one conditional write, each turn's replies after it.

The membership marks of a batch's users (``handlers.pipeline.membership``) are written first,
all in one plain batch write (a mark needs no condition: writing one again says the same), then
the users' tombstones are read in one request, so that an event at or before its user's delete
is still ignored (``LATE``) as the single turn's transactional mark does: 1 write unit per user
and channel, never a transaction.

Platform-neutral, as the rest of ``handlers.pipeline``: it imports no platform.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from handlers.pipeline import membership
from handlers.pipeline.delivery import BadJob, Delivery, deliveries, dump, load
from handlers.pipeline.serial import group_of
from handlers.pipeline.timers import keep_timers
from handlers.pipeline.turn import REMARK, TIMER_GONE, bot_turn, new_conversation, replies_of
from sessions import ConversationKey, SessionError, TurnResult
from sessions.group_commit import LATE as LATE_TURN
from sessions.group_commit import Batched
from sessions.privacy import conversation_hash, private
from sessions.runner import CLAIMED, LATE, ClaimOutcome
from sessions.sealing import PAYLOAD
from sessions.store import CLOSED, EventRecord, at_or_before, live_tombstone

if TYPE_CHECKING:
    from handlers.pipeline.core import Pipeline

log = private(logging.getLogger("handlers.pipeline.hot"))

#: How long a container treats an item as hot after one of its turns lost a race there.
HOT_FOR = 30.0
#: The most items a container remembers as hot (the oldest are forgotten first).
MAX_HOT = 1024
#: The longest a batch of the serialised path waits for its container's webhook turn in
#: flight on the item (one optimistic try: well under a second).
SETTLE_FOR = 2.0


class HotItems:
    """A container's memory of the items where its turns lost races lately (by group)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._until: dict[str, float] = {}
        #: Events this container handed off lately (their queue keeps them): a duplicate
        #: delivery of one is acked with nothing sent again.
        self._handed: dict[str, float] = {}
        self._flying: dict[str, int] = {}
        self._lock = threading.Lock()
        self._landed = threading.Condition(self._lock)

    @contextmanager
    def flying(self, group: str) -> Iterator[None]:
        with self._lock:
            self._flying[group] = self._flying.get(group, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._flying[group] - 1
                if left:
                    self._flying[group] = left
                else:
                    del self._flying[group]
                    self._landed.notify_all()

    def settle(self, group: str, *, timeout: float = SETTLE_FOR) -> None:
        """Wait (at most ``timeout`` s) until no turn of this container is on the item: a
        batch of the serialised path goes behind a webhook's try already in flight there
        (locally, where both run in one process), instead of racing it and costing it a
        refused write and a second hand-off. In the deploy the consumer runs in a function of
        its own, where no webhook's turn flies: it never waits."""
        with self._landed:
            self._landed.wait_for(lambda: group not in self._flying, timeout=timeout)

    def _hand(self, event: str) -> None:
        self._handed[event] = self.clock() + HOT_FOR
        while len(self._handed) > MAX_HOT:
            del self._handed[next(iter(self._handed))]

    def claim(self, event: str) -> bool:
        """Take the hand-off of ``event`` for this delivery: ``False`` when a copy of it was
        handed off (or is being handed off) already, so that it is queued once per container,
        however many copies arrive at once. :meth:`release` if it could not be queued."""
        with self._lock:
            until = self._handed.get(event)
            if until is not None and until > self.clock():
                return False
            self._hand(event)
            return True

    def release(self, event: str) -> None:
        with self._lock:
            self._handed.pop(event, None)

    def hot(self, group: str) -> bool:
        with self._lock:
            until = self._until.get(group)
            if until is None:
                return False
            if until <= self.clock():
                del self._until[group]
                return False
            return True

    def lost(self, group: str) -> None:
        """A turn on the item lost a race: it is hot for :data:`HOT_FOR` seconds more."""
        with self._lock:
            self._until.pop(group, None)
            self._until[group] = self.clock() + HOT_FOR
            while len(self._until) > MAX_HOT:
                del self._until[next(iter(self._until))]


def eligible(pipeline: Pipeline, key: ConversationKey, scopes: Sequence[ConversationKey]) -> bool:
    """Whether a webhook's turn on ``key`` takes the hot item's rules (one optimistic try,
    straight to the serialised path when the item is hot): a turn of one scope on a shared
    item (a Slack channel's or thread's state, written by everyone in it), when there is a
    serialised path. A user's own conversation is written by one user: its lost races are
    mostly a delivery racing its own duplicate, which the next read finds at once, so it
    retries as before."""
    return not scopes and key.shared and pipeline._serialiser is not None


def items_of(pipeline: Pipeline) -> HotItems:
    """The pipeline's (the container's) memory of hot items."""
    found = getattr(pipeline, "_hot_items", None)
    if found is None:
        found = HotItems()
        pipeline._hot_items = found  # type: ignore[attr-defined]
    return found


def enter(
    pipeline: Pipeline, delivery: Delivery, key: ConversationKey
) -> AbstractContextManager[None] | None:
    """In a webhook, before anything is read or written: ``None`` when ``delivery`` was handed
    to the serialised path at once because its item is hot, or another turn of this container
    is on it now (an optimistic try would lose; its membership mark is written in the batch);
    else the context to run it in (other turns then see the item busy)."""
    items = items_of(pipeline)
    group = group_of(key.pk, key.sk)
    if not delivery.replay:
        with items._lock:
            contended = items._flying.get(group, 0) > 0
        if contended or items.hot(group):
            if contended:
                items.lost(group)
            if hand_off(pipeline, delivery, key):
                log.info(
                    "hot item: handed to the serialised path",
                    extra={"conversation": conversation_hash(key.pk, key.sk)},
                )
                pipeline._tell(delivery, "serialised", None)
                return None
    return items.flying(group)


def hand_off(pipeline: Pipeline, delivery: Delivery, key: ConversationKey) -> bool:
    """Queue ``delivery`` behind its item's other turns, once per container: ``True`` when it
    is queued, now or by a copy of it (a delivery of the same event that arrived at the same
    time: its queue holds it, and the copy that queued it runs it itself if the queue refuses);
    ``False`` when it could not be queued."""
    items = items_of(pipeline)
    event = key.event_sk(delivery.idempotency_key)
    if not items.claim(event):
        return True
    if pipeline.serialise(delivery.later(), key):
        return True
    items.release(event)
    return False


def lost_race(pipeline: Pipeline, key: ConversationKey) -> None:
    items_of(pipeline).lost(group_of(key.pk, key.sk))


# -- membership marks, several at once -----------------------------------------------------


def write_marks(
    pipeline: Pipeline, shared: Sequence[tuple[ConversationKey, float | None]]
) -> tuple[list[float | None], list[int]]:
    """Write the membership marks this container does not remember for each ``(shared item
    key, event time)``, all in one plain batch write. Returns, per item, when the container
    last saw the mark (``None``: written now), and the indexes of those written now (their
    users' tombstones must be read after this, and :func:`remember` them if not late)."""
    member = pipeline.membership
    sessions = member.sessions
    now = member.clock()
    out: list[float | None] = []
    fresh: list[int] = []
    for key, _ in shared:
        with member._lock:
            known = member._known.get((key.pk, key.sk, membership.mark_key(key).pk))
        if known is not None and now - known < membership.REMEMBER_FOR:
            out.append(known)
        else:
            out.append(None)
            fresh.append(len(out) - 1)
    if not fresh:
        return out, fresh
    stamp = int(sessions.clock())
    marks = {}
    for index in fresh:
        key = shared[index][0]
        # What ``Membership.mark`` records: the bot, and a thread's ts (its sk is a hash).
        payload: dict[str, str] = {"bot": member.reference} if member.reference else {}
        if key.scope == "thread" and key.thread is not None:
            payload["thread"] = key.thread
        where = membership.mark_key(key)
        sk = where.event_sk(membership.item_token(key))
        marks[(where.pk, sk)] = EventRecord(
            version=0,
            committed_at=stamp,
            expires_at=stamp + membership.MARK_TTL,
            payload=sessions.sealing.encode(payload, where, PAYLOAD) if payload else None,
        )
    store: Any = sessions.store
    store.put_events([(pk, sk, record) for (pk, sk), record in marks.items()])
    return out, fresh


def remember(pipeline: Pipeline, key: ConversationKey, at: float) -> None:
    member = pipeline.membership
    with member._lock:
        member._known[(key.pk, key.sk, membership.mark_key(key).pk)] = at


def mark_all(
    pipeline: Pipeline, shared: Sequence[tuple[ConversationKey, float | None]]
) -> list[float | ClaimOutcome | None]:
    """Mark each ``(shared item key, event time)``'s user as a writer of its channel: one
    plain batch write of the marks this container does not remember, then one read of their
    users' tombstones. Per item: when the container last saw the mark (it only remembered
    it), ``None`` (written just now), or :data:`~sessions.runner.LATE` (the user was deleted
    at or after the event: the turn must not run on the channel)."""
    member = pipeline.membership
    store: Any = member.sessions.store
    if not hasattr(store, "put_events"):
        return [member.mark(key, event_time) for key, event_time in shared]
    now = member.clock()
    seen, fresh = write_marks(pipeline, shared)
    out: list[float | ClaimOutcome | None] = list(seen)
    if not fresh:
        return out
    stones = store.tombstones(list(dict.fromkeys(membership.mark_key(k).pk for k, _ in shared)))
    stamp = int(member.sessions.clock())
    for index in fresh:
        key, event_time = shared[index]
        stone = live_tombstone(stones.get(membership.mark_key(key).pk), stamp)
        if stone is not None and (
            stone.generation >= CLOSED
            or (event_time is not None and at_or_before(event_time, stone))
        ):
            out[index] = LATE
            continue
        remember(pipeline, key, now)
    return out


def mark_one(pipeline: Pipeline, key: ConversationKey, event_time: float | None) -> Any:
    """:func:`mark_all` for one item: ``Membership.mark``'s answer, at 1 write unit."""
    found = mark_all(pipeline, [(key, event_time)])[0]
    return LATE if found == LATE else found


# -- a batch of serialised jobs ------------------------------------------------------------


def run_jobs(pipeline: Pipeline, jobs: Sequence[Any], run_one: Callable[[Any], None]) -> None:
    """Run a serialised batch (one item's jobs, in order): the plain turns of one item as
    group commits, anything else (effects, timers, replays, several scopes) one by one
    through ``run_one``, in order.

    Raises:
        SessionError: what can heal; the jobs not yet run must be retried (those run are
            recorded, and will be duplicates).
    """
    pending: list[Delivery] = []
    for data in jobs:
        unit = _plain(pipeline, data)
        if unit is not None and (not pending or _same_item(pipeline, pending[0], unit)):
            pending.append(unit)
            continue
        _batch(pipeline, pending)
        pending = []
        if unit is not None:
            pending.append(unit)
        else:
            run_one(data)
    _batch(pipeline, pending)


def _plain(pipeline: Pipeline, data: Any) -> Delivery | None:
    """The job's delivery when it is one plain turn of one scope that a batch can take."""
    if not isinstance(data, Mapping) or data.get("retry_failed"):
        return None
    try:
        units = deliveries(load(data))
    except BadJob:
        return None
    if len(units) != 1 or not isinstance(units[0], Delivery):
        return None
    unit = units[0]
    _, scopes = pipeline.keys(unit)
    if scopes or unit.replay:
        return None
    return unit.later()


def _same_item(pipeline: Pipeline, a: Delivery, b: Delivery) -> bool:
    first, second = pipeline.keys(a)[0], pipeline.keys(b)[0]
    return (first.pk, first.sk) == (second.pk, second.sk)


def _batch(pipeline: Pipeline, units: Sequence[Delivery]) -> None:
    if not units:
        return
    key = pipeline.keys(units[0])[0]
    items_of(pipeline).settle(group_of(key.pk, key.sk))
    store: Any = pipeline.sessions.store
    grouped = key.shared and hasattr(store, "put_events") and not pipeline.sessions.sent_mark
    if len(units) == 1 and not grouped:
        pipeline.run(units[0])
        return
    # One turn on a shared item is a group commit of one as well: its mark written, then its
    # user's tombstone read with the item (one request less than a turn and its mark).
    from handlers.pipeline.core import NO_DEADLINE

    marked: list[float | None] = [None] * len(units)
    users: list[str | None] = [None] * len(units)
    if key.shared and hasattr(store, "put_events"):
        # Marks first (one plain write), then the users' tombstones with the item's read.
        picked = [i for i, u in enumerate(units) if u.message.kind != "timer"]
        seen, fresh = write_marks(
            pipeline, [(key_for(pipeline, units[i]), units[i].event_time) for i in picked]
        )
        for i, when in zip(picked, seen, strict=True):
            marked[i] = when
        for f in fresh:
            users[picked[f]] = membership.mark_key(key_for(pipeline, units[picked[f]])).pk
    elif key.shared:
        for i, u in enumerate(units):
            if u.message.kind != "timer":
                found = pipeline.membership.mark(key_for(pipeline, u), u.event_time)
                if found == LATE:
                    users[i] = "late"
                else:
                    marked[i] = found if isinstance(found, float) else None
    batchable = [i for i in range(len(units)) if users[i] != "late"]
    items = []
    for i in batchable:
        unit = units[i]

        def send(_key: Any, replies: Sequence[Any], unit: Delivery = unit) -> None:
            pipeline.platform.deliver(unit, replies_of(replies), None, NO_DEADLINE)

        items.append(
            Batched(
                idempotency_key=unit.idempotency_key,
                turn=bot_turn(
                    pipeline.spec, unit.idempotency_key, marked=marked[i], shared=[key.shared]
                ),
                event=unit.message,
                event_time=unit.event_time,
                sender=send,
                dead_letter=lambda unit=unit: dump(unit),  # made only if it fails
                user=users[i],
            )
        )
    results = pipeline.sessions.run_batch(key, items, initial=new_conversation, keep=keep_timers)
    by_index: dict[int, TurnResult] = dict(zip(batchable, results, strict=True))
    now = pipeline.membership.clock()
    for i, unit in enumerate(units):
        result = by_index.get(i)
        if result is None or (result.ignored and result.response == LATE_TURN):
            # The user was deleted at or after the event: ignored, and no mark remembered.
            pipeline._tell(unit, "ignored", TurnResult(response=None, ignored=True))
            continue
        if users[i]:
            remember(pipeline, key_for(pipeline, unit), now)
        if result.ignored and result.response == REMARK:
            pipeline.membership.unknown(key_for(pipeline, unit))
            pipeline.run(unit)  # marks again, then runs alone
            continue
        if result.ignored and result.response == TIMER_GONE:
            pipeline.unschedule(unit, key)
        if result.failed and not result.duplicate:  # a dead letter now: told once
            pipeline._tell(unit, "dead letter", None)
            pipeline.platform.apologise(unit, None, NO_DEADLINE)
            continue
        outcome = "applied"
        if result.duplicate:
            outcome = "dead letter" if result.failed else "duplicate"
        elif result.ignored:
            outcome = "ignored"
        pipeline._tell(unit, outcome, result)
        if result.effects:
            try:
                pipeline.start_effects(unit, result.effects, NO_DEADLINE)
            except SessionError:
                log.exception("effects of a batched turn could not start")


def key_for(pipeline: Pipeline, unit: Delivery) -> ConversationKey:
    return pipeline.keys(unit)[0]


__all__ = [
    "CLAIMED",
    "HOT_FOR",
    "HotItems",
    "eligible",
    "enter",
    "lost_race",
    "mark_all",
    "run_jobs",
]
