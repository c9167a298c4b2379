"""The one delivery pipeline every edge shares: run a delivery's turn through the session core,
send its replies, start its effects after the turn, defer what is slow, apologise for what
failed, run a handed-off job or a dead letter's replay.

An edge is an adapter (:class:`Platform`): it parses verified requests into
:class:`~handlers.pipeline.delivery.Delivery` values, renders and sends a committed turn's
replies (once), and builds the platform's HTTP answer. Everything between is here, written once::

    edge: verify, parse ─► Delivery ─► Pipeline.run ─► Sessions.run (load, turn, commit)
                                           │              └─► Platform.deliver (render once,
                                           │                  send; the ack's part in Answer)
                                           └─► start effects (after the run returned): fast
                                               ones inline while the webhook's budget lasts,
                                               each follow-up a turn of its own; the rest
                                               handed to the deferral

Who retries what is the caller's: ``run`` raises a :class:`~sessions.SessionError` that can
heal (the edge answers 5xx, or the deferral retries), and answers itself for an error that
would recur (recorded as a dead letter, apology sent once, never raised).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from bot import timers as timer_rules
from bot.base import Effect
from bot.replies import AnyReply
from bot.spec import MAX_FOLLOW_UPS, BotSpec, run_effect
from handlers.pipeline import hot, membership, streams
from handlers.pipeline import timers as scheduling
from handlers.pipeline.deferral import Deferrer
from handlers.pipeline.delivery import (
    BadJob,
    Delivery,
    EffectJob,
    EraseJob,
    Job,
    TimerJob,
    deliveries,
    dump,
    load,
)
from handlers.pipeline.serial import NotConfigured, Serialiser, group_of
from handlers.pipeline.turn import REMARK, TIMER_GONE, bot_turn, new_conversation, replies_of
from sessions import (
    BusyError,
    ConversationKey,
    PermanentError,
    SessionError,
    Sessions,
    TurnResult,
)
from sessions.privacy import conversation_hash, private
from sessions.runner import LATE

log = private(logging.getLogger("handlers.pipeline"))

#: Scheduler calls (creating or deleting a timer's schedule) a webhook makes before its ack;
#: the rest of the turn's timers are scheduled by the deferral.
INLINE_SCHEDULES = 8


@dataclass(frozen=True, slots=True)
class Deadline:
    """``time.monotonic()`` values for one webhook: no lost race retried past ``turns``, no
    send waiting past ``sends``; ``None``: no limit (a deferred job)."""

    turns: float | None = None
    sends: float | None = None

    @classmethod
    def webhook(cls, turns: float, sends: float, *, now: float | None = None) -> Deadline:
        start = time.monotonic() if now is None else now
        return cls(start + turns, start + sends)

    def passed(self) -> bool:
        return self.turns is not None and time.monotonic() >= self.turns


NO_DEADLINE = Deadline()


@dataclass(slots=True)
class Answer:
    """What the platform's synchronous answer carries besides 200 (Slack's ack body: a slash
    command's first message, a submission's form errors). The adapter fills it."""

    body: dict[str, Any] | None = None


class Platform(Protocol):
    """What an edge implements for the pipeline (and all a new platform must write besides
    its request parsing)."""

    #: Seconds a follow-up turn of a webhook may spend retrying lost races.
    turn_budget: float
    #: The name of the function that serves this edge (``handlers.platforms``): a timer set
    #: in one of its turns fires there. Optional: without it, the function named as the
    #: platform.

    def deliver(
        self,
        delivery: Delivery,
        replies: Sequence[AnyReply],
        answer: Answer | None,
        deadline: Deadline,
    ) -> None:
        """Send a committed turn's replies, rendered once and in the bot's order; put what
        belongs in the synchronous answer into ``answer`` (``None``: there is none, e.g. a
        deferred turn). Raise when a reply could not be sent (after logging it)."""
        ...

    def apologise(self, delivery: Delivery, answer: Answer | None, deadline: Deadline) -> None:
        """Tell the user once that their event failed on our side. Never raises."""
        ...

    def stream_target(self, delivery: Delivery) -> streams.StreamTarget:
        """Where a streamed effect's answer to ``delivery`` goes (``handlers.pipeline.streams``)."""
        ...


class Pipeline:
    """Runs deliveries for one edge.

    Args:
        sessions: the session core over the configured store.
        spec: the bot.
        platform: the edge's adapter.
        deferrer: where slow turns, slow effects and work past a webhook's budget go (a
            callable, so an edge may swap its deferrer after construction).
        serialiser: where a delivery still busy at the webhook's deadline goes, behind the
            other turns of its item (``handlers.pipeline.serial``; ``None``: the deferrer).
    """

    def __init__(
        self,
        *,
        sessions: Sessions,
        spec: BotSpec,
        platform: Platform,
        deferrer: Callable[[], Deferrer],
        serialiser: Callable[[], Serialiser] | None = None,
    ) -> None:
        self.sessions = sessions
        self._serialiser = serialiser
        self.spec = spec
        self.platform = platform
        self._deferrer = deferrer
        self.membership = membership.Membership(sessions, spec)
        #: Told of every delivery this pipeline ran and what came of it (``"applied"``,
        #: ``"duplicate"``, ``"ignored"``, ``"dead letter"``, ``"serialised"``): the local
        #: inspector's timeline and transcripts. ``None`` in the deploy.
        self.journal: Callable[[Delivery, str, TurnResult | None], None] | None = None
        #: How streamed effects are buffered and checked for a cancel.
        self.streaming = streams.StreamSettings()

    @property
    def _function(self) -> str | None:
        """Where this platform's timers fire (``None``: the function named as the platform,
        for a platform that does not say)."""
        return getattr(self.platform, "function", None)

    def _tell(self, delivery: Delivery, outcome: str, result: TurnResult | None) -> None:
        if self.journal is None:
            return
        try:
            self.journal(delivery, outcome, result)
        except Exception:  # a tool's bug never fails a delivery
            log.exception("the delivery journal failed")

    # -- a delivery ----------------------------------------------------------------------------

    def run(
        self,
        delivery: Delivery,
        *,
        deadline: Deadline = NO_DEADLINE,
        answer: Answer | None = None,
    ) -> TurnResult | None:
        """Run ``delivery``'s turn once, send its replies, then start its effects.

        Returns the session core's result, or ``None`` when the event is (now) a dead letter
        (the user was told once, not on a replay) or was handed off, busy at the webhook's
        deadline.

        Raises:
            SessionError: nothing was committed and it can heal (store unavailable, busy at
                the deadline): answer 5xx or retry. ``InvalidKeyError`` for a bad id.
        """
        key, scopes = self.keys(delivery)
        if self.spec.cancels and delivery.message.kind == "text" and not delivery.replay:
            streams.note_message(self, delivery)  # it stops a streamed answer of the thread
        if deadline.turns is not None and hot.eligible(self, key, scopes):
            # A hot item's turn (or one while another of this container is on the item) goes
            # behind its other turns, in a batch (``handlers.pipeline.hot``); else it runs,
            # seen busy.
            flight = hot.enter(self, delivery, key)
            if flight is None:
                return None
            return self._run(delivery, key, scopes, deadline, answer, flight)
        return self._run(delivery, key, scopes, deadline, answer, contextlib.nullcontext())

    def _run(
        self,
        delivery: Delivery,
        key: ConversationKey,
        scopes: tuple[ConversationKey, ...],
        deadline: Deadline,
        answer: Answer | None,
        flight: AbstractContextManager[None],
    ) -> TurnResult | None:
        """:meth:`run` after the hot item's check: the turn in ``flight`` (other webhooks of
        this container see the item busy meanwhile), its effects after it."""

        def send(_key: Any, items: Sequence[Any]) -> None:
            self.platform.deliver(delivery, replies_of(items), answer, deadline)

        with flight:
            # The user's mark first: a user delete finds the channel by it (a timer's fire is no
            # user's action: its setter was marked when they set it).
            stored = (key, *scopes)
            shared = []
            if delivery.message.kind != "timer":
                shared = [stored[i] for i in membership.shared_scopes(self.spec, delivery.key)]
            marked = self._mark(shared, delivery)
            try:
                if marked == LATE:
                    result = self._late(delivery, key)
                else:
                    result = self._session_run(delivery, key, scopes, send, deadline, marked)
                if result.ignored and result.response == REMARK:
                    # The user was deleted since this container saw their mark: the delete took
                    # the mark with it. Written again, then the turn runs (once more), unless the
                    # delete is as recent as the event (then it is ignored, as in their partition).
                    for item in shared:
                        self.membership.unknown(item)
                    if self._mark(shared, delivery) == LATE:
                        result = self._late(delivery, key)
                    else:
                        result = self._session_run(delivery, key, scopes, send, deadline, None)
            except PermanentError as exc:
                self._tell(delivery, "dead letter", None)
                if exc.recorded and not delivery.replay:
                    self.platform.apologise(delivery, answer, deadline)
                return None
            except BusyError:
                # Lost every race until the webhook's deadline (many writers on one shared item:
                # a poll everyone votes in at once). Nothing was committed: the delivery goes
                # behind the other busy turns of its item, which run one at a time without the
                # webhook's deadline (and are retried), so the event still counts once; Slack
                # would never redeliver an interaction.
                hot.lost_race(self, key)
                if deadline.turns is None or not hot.hand_off(self, delivery, key):
                    raise
                log.info(
                    "busy at the webhook's deadline; serialised",
                    extra={"conversation": conversation_hash(key.pk, key.sk)},
                )
                self._tell(delivery, "serialised", None)
                return None
        if result.ignored and result.response == TIMER_GONE:
            self.unschedule(delivery, key)
        outcome = "applied"
        if result.duplicate:
            outcome = "dead letter" if result.failed else "duplicate"
        elif result.ignored:
            outcome = "ignored"
        self._tell(delivery, outcome, result)
        if result.effects:
            self.start_effects(delivery, result.effects, deadline)
        if result.mark_pending:
            self.sessions.mark_sent(key, delivery.idempotency_key)
        return result

    def _mark(
        self, shared: Sequence[ConversationKey], delivery: Delivery
    ) -> float | membership.Late | None:
        """Mark the user on each shared item; the oldest time this container only remembered
        a mark (``None``: each was written or found just now). :data:`~sessions.runner.LATE`:
        the user's tombstone refused a mark (the user was deleted at or after the event)."""
        seen = []
        for found in hot.mark_all(self, [(item, delivery.event_time) for item in shared]):
            if found == LATE:
                return LATE
            seen.append(found)
        remembered = [t for t in seen if isinstance(t, float)]
        return min(remembered) if remembered else None

    def _late(self, delivery: Delivery, key: ConversationKey) -> TurnResult:
        """The result of a shared item's turn whose user was deleted at or after the event:
        ignored, nothing written (the channel's state would keep what no mark leads to)."""
        log.info(
            "event for a deleted user ignored on a shared item",
            extra={"conversation": conversation_hash(key.pk, key.sk)},
        )
        return TurnResult(response=None, ignored=True)

    def _session_run(
        self,
        delivery: Delivery,
        key: ConversationKey,
        scopes: tuple[ConversationKey, ...],
        send: Callable[[Any, Sequence[Any]], None],
        deadline: Deadline,
        marked: float | None,
    ) -> TurnResult:
        turns = deadline.turns
        if turns is not None and hot.eligible(self, key, scopes):
            # One optimistic try: a lost race hands the turn to the serialised path (its
            # item is hot: retrying would race the others again, and each loss is billed).
            turns = time.monotonic()
        return self.sessions.run(
            key,
            delivery.idempotency_key,
            bot_turn(
                self.spec,
                delivery.idempotency_key,
                marked=marked,
                shared=[k.shared for k in (key, *scopes)],
            ),
            delivery.message,
            event_time=delivery.event_time,
            sender=send,
            dead_letter=lambda: dump(dataclasses.replace(delivery, replay=False)),
            retry_failed=delivery.replay,
            deadline=turns,
            initial=new_conversation,
            hold_mark=True,  # sent-mark mode: marked once the effects started
            scopes=scopes,
            keep=scheduling.keep_timers,
        )

    def unschedule(self, fire: Delivery, stored: ConversationKey) -> None:
        """Delete the schedule of a fire whose timer is gone (cancelled while its job was
        retried, its user deleted, a recurring one ended): it would fire, and cost a read,
        forever. Never raises: the next fire tries again."""
        scheduler = self.sessions.scheduler
        if scheduler is None:
            return
        try:
            scheduling.cancel(scheduler, stored, [str(fire.message.value or "")])
        except Exception:
            log.warning("the schedule of a gone timer stays until its next fire", exc_info=True)

    def keys(self, delivery: Delivery) -> tuple[ConversationKey, tuple[ConversationKey, ...]]:
        """The stored items of ``delivery``'s turn: the bot's first scope (which holds the
        event's record) and its others, in the bot's namespace."""
        keys = self.stored(delivery.key)
        return keys[0], keys[1:]

    def stored(self, conversation: ConversationKey) -> tuple[ConversationKey, ...]:
        """The items the bot keeps for a conversation's events, one per scope it declared."""
        return tuple(conversation.scoped(s, self.spec.namespace) for s in self.spec.scopes)

    def serialise(self, delivery: Delivery, key: ConversationKey) -> bool:
        """Queue ``delivery`` behind the other busy turns of ``key``'s item; ``False``
        (logged) when it could not be queued."""
        if self._serialiser is None:
            return self.defer(delivery)
        serialiser = self._serialiser()
        try:
            serialiser.submit(dump(delivery), group_of(key.pk, key.sk))
        except NotConfigured:
            return self.defer(delivery)
        except Exception:
            log.exception("could not queue a busy turn; handing it to the deferral")
            return self.defer(delivery)
        return True

    def defer(self, job: Job) -> bool:
        """Hand ``job`` to the deferral; ``False`` (logged) when it could not be handed off."""
        try:
            self._deferrer().submit(dump(job))
        except Exception:
            log.exception("could not hand off a deferred job")
            return False
        return True

    # -- effects, after the turn ---------------------------------------------------------------

    def start_effects(
        self, delivery: Delivery, effects: Sequence[Mapping[str, Any]], deadline: Deadline
    ) -> None:
        """Start a committed turn's effects: slow ones (and, in a webhook, any once its turn
        budget is spent) through the deferral, fast ones here, each claimed first (at most
        once). Never raises: an effect that cannot start now is handed off; one that cannot
        even be handed off is logged (it may be lost, never doubled). The turn's timer changes
        go to the scheduler first."""
        changes = [e for e in effects if scheduling.is_timer_change(e)]
        if changes:
            self.schedule(delivery, changes, deadline)
        effects = [e for e in effects if not scheduling.is_timer_change(e)]
        for index, data in enumerate(effects):
            job = delivery.effect(index, Effect.from_dict(data))
            name = job.effect.name
            if (self.spec.is_slow_effect(name) or deadline.passed()) and self.defer(job):
                continue
            try:
                self.run_effect(job, deadline)
            except Exception:
                # The claim failed (the store): nothing ran. The deferral retries it.
                log.warning("effect %s could not start; handing it off", name, exc_info=True)
                if not self.defer(job):
                    log.error("effect %s not run", name)

    def schedule(
        self,
        delivery: Delivery,
        changes: Sequence[Mapping[str, Any]],
        deadline: Deadline = NO_DEADLINE,
    ) -> None:
        """Create and delete the schedules of a committed turn's timers; what fails is handed
        to the deferral (which retries it: both are idempotent). In a webhook, at most
        :data:`INLINE_SCHEDULES` scheduler calls run before the ack (each is a request: tens
        of ms on EventBridge), none past the turn's budget; the rest are handed to the
        deferral like a slow effect. Never raises."""
        scheduler = self.sessions.scheduler
        if scheduler is None:
            log.error("the bot set a timer, but no scheduler is configured (SESSIONS_TIMER_GROUP)")
            return
        stored = self.keys(delivery)[0]
        ordered = [c for c in changes if c.get("kind") == "timer_cancel"]
        ordered += [c for c in changes if c.get("kind") != "timer_cancel"]
        webhook = deadline.turns is not None
        done = 0
        try:
            for change in ordered:
                if webhook and (done >= INLINE_SCHEDULES or deadline.passed()):
                    break
                scheduling.apply(scheduler, delivery, stored, [change], self._function)
                done += 1
        except Exception:
            log.warning("timers could not be scheduled; handing them off", exc_info=True)
        rest = tuple(ordered[done:])
        if rest and not self.defer(TimerJob(delivery, stored, rest)):
            log.error("timers not scheduled")

    def run_effect(self, job: EffectJob, deadline: Deadline = NO_DEADLINE) -> None:
        """Claim and run one effect, then its follow-up turn (a delivery of its own, with its
        own turn budget and report).

        Raises:
            SessionError: the claim failed in a way that can heal; nothing ran (retry it).
        """
        origin = job.origin
        token = f"effect:{job.effect_key}"
        if job.effect.name in self.spec.streams:
            message = streams.run_stream(self, job)  # claimed there, and resumed
        elif not self.sessions.claim(self.keys(origin)[0], token, event_time=origin.event_time):
            log.info("effect %s already claimed (or the user was deleted)", job.effect.name)
            return
        else:
            message = run_effect(self.spec, job.effect, job.effect_key, origin.message)
        if message is not None and message.error is not None:
            log.warning("effect %s failed: %s", job.effect.name, message.error.split(":", 1)[0])
        if message is None:
            return
        if origin.depth + 1 > MAX_FOLLOW_UPS:
            log.error("effect %s: follow-up dropped, %d rounds deep", job.effect.name, origin.depth)
            return
        follow = job.follow_up(message)
        own = deadline
        if deadline.turns is not None:
            own = Deadline(time.monotonic() + self.platform.turn_budget, deadline.sends)
        try:
            self.run(follow, deadline=own)
        except SessionError:
            # It can heal (the store was unavailable, the conversation busy): the deferral
            # retries it (and inside Lambda keeps a job that keeps failing).
            log.warning("follow-up of %s failed; handing it off", job.effect.name, exc_info=True)
            if not self.defer(follow):
                log.error("follow-up of effect %s lost", job.effect.name)

    # -- deferred jobs -------------------------------------------------------------------------

    def run_job(self, data: Any) -> None:
        """Run a handed-off job (a slow turn, an effect, a sender's messages in order, or a
        dead letter's replay).

        Raises what can heal, so that whoever runs it retries (committed parts are skipped
        then); an error that would recur is a dead letter, answered once, and returns.
        """
        try:
            job = load(data)
        except BadJob as exc:
            # Retrying cannot make it readable: drop it, loudly.
            log.error("deferred job refused: %s", exc)
            return
        for unit in deliveries(job):
            if isinstance(unit, EraseJob):
                self.sessions.erase_workspace(
                    unit.platform, unit.workspace, generation=unit.generation
                )
            elif isinstance(unit, TimerJob):
                self.run_timer_job(unit)
            elif isinstance(unit, EffectJob):
                self.run_effect(unit)
            else:
                self.run(unit.later())

    def run_timer_job(self, job: TimerJob) -> None:
        """Bring the scheduler in line with a turn's timer changes, later (they failed
        inline, or were past the webhook's budget). A timer is scheduled only if it is still
        pending: the user may have cancelled it since, and a schedule created now would fire
        forever for nothing (one read of the item, consistent, before creating).

        Raises:
            Exception: the store or the scheduler failed (retry the job: it is idempotent).
        """
        scheduler = self.sessions.scheduler
        if scheduler is None:
            return
        changes = list(job.changes)
        if any(c.get("kind") == "timer_set" for c in changes):
            stored = self.sessions.get(job.stored)
            table = timer_rules.split(stored.state if stored is not None else None)[1]
            pending = {str(entry["id"]) for entry in table.values()}
            changes = [
                c
                for c in changes
                if c.get("kind") != "timer_set" or str(c["timer"]["id"]) in pending
            ]
        scheduling.apply(scheduler, job.origin, job.stored, changes, self._function)

    def report(self, delivery: Delivery, message: str) -> None:
        """Log a failure of ``delivery`` with its conversation's hash (never its ids)."""
        key = delivery.key
        log.exception(message, extra={"conversation": conversation_hash(key.pk, key.sk)})


__all__ = ["INLINE_SCHEDULES", "NO_DEADLINE", "Answer", "Deadline", "Pipeline", "Platform"]
