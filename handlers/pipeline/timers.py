"""A bot's timers between its turns and the scheduler: scheduling a committed turn's timers,
the fire that comes back, and the local loop that fires them.

    turn ─► commit (the timer is in the state, created once) ─► Timers.apply: create the
            schedule (named by the timer's id: idempotent), delete the cancelled ones
    scheduler, at the time ─► our function ({"sessions_deferred": {"kind": "fire", ...}})
            ─► a delivery keyed "timer:<id>:<due time>" ─► the pipeline: a turn with
            Message(kind="timer"), or nothing when the timer is gone

In the deploy the scheduler is EventBridge Scheduler (``SESSIONS_TIMER_GROUP``); locally
an SQLite table beside the sessions (``SESSIONS_TIMERS_DB``, default the sessions' own file),
fired by :class:`TimerLoop` in the local server, so timers survive a restart.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bot import timers as timer_rules
from bot.cron import Cron
from bot.messages import Message
from handlers.pipeline.delivery import Delivery, MessengerRoute, SlackRoute, dump, private_exchange
from sessions import ConversationKey
from sessions.privacy import private
from sessions.schedules import (
    OCCURRENCE,
    Schedule,
    Scheduler,
    SQLiteScheduler,
    schedule_name,
)

if TYPE_CHECKING:
    from handlers.settings import Settings

log = private(logging.getLogger("handlers.timers"))


def next_time(cron: str, tz: str, after: float) -> float | None:
    """A recurring timer's next time after ``after`` (the bot API's cron rule)."""
    return Cron.parse(cron, tz).next_after(after)


def cron_expression(cron: str, tz: str) -> str:
    return Cron.parse(cron, tz).eventbridge()


def keep_timers(state: Any) -> float | None:
    """The time a stored state must outlive: its last pending timer's (``Sessions.run(keep=)``
    keeps the item at least that long, past the idle TTL). Every turn on the item passes it."""
    return timer_rules.keep_until(timer_rules.split(state)[1])


def target_of(key: ConversationKey, function: str | None = None) -> str:
    """Which of our functions fires a timer of ``key``'s conversation: the one whose edge set
    it (``function``: its :attr:`Platform.function <handlers.pipeline.core.Platform>`), else
    the platform's own name."""
    return function or key.platform


def template(origin: Delivery, entry: Mapping[str, Any]) -> Delivery:
    """The delivery a timer's fires are made of: the conversation of the turn that set it,
    its replies to the channel (Slack: through the Web API; a response URL is long expired)
    or to the user (Messenger), ``Message(kind="timer")`` without its args (they stay in the
    stored state: the fire reads them from there).

    A fire keeps the visibility of the exchange that set it: a timer set by a slash command
    or a button in a channel (answered ephemerally) answers ephemerally to its user, never to
    the whole channel (in a DM, a plain message is already the user's alone); and it answers
    in the thread it was set in."""
    key = origin.key
    message = Message(
        kind="timer",
        action=str(entry["name"]),
        value=str(entry["id"]),
        platform=key.platform,
        workspace=key.workspace,
        conversation=key.channel,
        user=key.user,
        time=float(entry["due"]),
        thread=origin.message.thread,
    )
    route: SlackRoute | MessengerRoute = MessengerRoute("timer")
    if isinstance(origin.route, SlackRoute):
        private = private_exchange(origin.route, key) and not key.channel.startswith("D")
        # Into the thread it was set in (a Slack thread's timer answers there).
        route = SlackRoute(
            "event", ephemeral=private, thread=origin.route.thread, ts=origin.route.ts
        )
    return Delivery(
        key=key,
        idempotency_key=f"timer:{entry['id']}",
        message=message,
        event_time=float(entry["due"]),
        route=route,
    )


def schedule_of(
    origin: Delivery,
    stored: ConversationKey,
    entry: Mapping[str, Any],
    function: str | None = None,
) -> Schedule:
    """The schedule of a timer kept in ``stored``'s item, fired in ``function``."""
    return Schedule(
        name=schedule_name(
            stored.platform, stored.workspace, stored.pk, stored.sk, str(entry["id"])
        ),
        at=float(entry["due"]),
        payload={
            "sessions_deferred": {
                "kind": "fire",
                "delivery": dump(template(origin, entry)),
                "occurrence": OCCURRENCE,
            }
        },
        cron=entry.get("cron"),
        tz=str(entry.get("tz") or "UTC"),
        target=target_of(origin.key, function),
    )


def apply(
    scheduler: Scheduler,
    origin: Delivery,
    stored: ConversationKey,
    changes: Sequence[Mapping[str, Any]],
    function: str | None = None,
) -> None:
    """Bring the scheduler in line with a committed turn's timer changes (cancellations
    first: a name set again in the same turn is a new timer with a new id), the timers fired
    in ``function`` (the edge's). Idempotent.

    Raises:
        Exception: the scheduler failed; whatever was done stays done (retry the rest).
    """
    cancel(scheduler, stored, [str(c["id"]) for c in changes if c.get("kind") == "timer_cancel"])
    for change in changes:
        if change.get("kind") == "timer_set":
            scheduler.create(schedule_of(origin, stored, change["timer"], function))


def cancel(scheduler: Scheduler, stored: ConversationKey, ids: Sequence[str]) -> None:
    """Delete the schedules of the timers ``ids`` kept in ``stored``'s item.

    Raises:
        Exception: the scheduler failed (what was deleted stays deleted)."""
    for timer_id in ids:
        scheduler.delete(
            schedule_name(stored.platform, stored.workspace, stored.pk, stored.sk, timer_id)
        )


def is_timer_change(item: Any) -> bool:
    return isinstance(item, Mapping) and item.get("kind") in ("timer_set", "timer_cancel")


# -- choosing the scheduler ------------------------------------------------------------------


def scheduler_from_settings(settings: Settings) -> Scheduler | None:
    """EventBridge Scheduler in the deploy (``SESSIONS_TIMER_GROUP`` with the target's and
    the role's ARNs), else the local SQLite one (``SESSIONS_TIMERS_DB``, default the
    sessions' SQLite file, or ``.data/timers.sqlite3`` beside a DynamoDB table); inside Lambda
    without a group: the SQLite file ``SESSIONS_TIMERS_DB`` names (``make offline``: the
    emulator's functions and the loop that fires them beside it share one), else ``None`` (a
    timer is then logged and dropped).

    Raises:
        ConfigError: a group without the role that invokes the functions."""
    if settings.timer_group:
        from handlers.settings import ConfigError
        from sessions.eventbridge import EventBridgeScheduler

        if not settings.timer_role_arn:
            raise ConfigError("SESSIONS_TIMER_GROUP needs SESSIONS_TIMER_ROLE_ARN")
        targets = dict(settings.timer_targets)
        return EventBridgeScheduler(
            settings.timer_group,
            targets=targets,
            role_arn=settings.timer_role_arn,
            dead_letter_arn=settings.timer_dead_letter_arn,
            cron_expression=cron_expression,
        )
    if settings.in_lambda and not settings.timers_db:
        return None
    path = settings.timers_db
    if path is None:
        path = settings.sessions_db if not settings.sessions_table else ".data/timers.sqlite3"
    if path != ":memory:":
        import os

        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return SQLiteScheduler(path, next_time=next_time)


# -- the local loop --------------------------------------------------------------------------


class TimerLoop:
    """Fires an :class:`SQLiteScheduler`'s due schedules: each through ``fire(target,
    payload)`` (the local server: the edge's own Lambda entry with the payload, as EventBridge
    Scheduler would invoke it). A fire that raises is tried again later (the same occurrence);
    the schedules are rows of the file, so a restart fires what came due while it was down.
    """

    def __init__(
        self,
        scheduler: SQLiteScheduler,
        fire: Callable[[str, Mapping[str, Any]], Any],
        *,
        poll: float = 0.5,
    ) -> None:
        self.scheduler = scheduler
        self.fire = fire
        self.poll = poll
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def fire_due(self, now: float | None = None) -> int:
        """Fire what is due at ``now`` (default the scheduler's clock); how many ran."""
        ran = 0
        for due in self.scheduler.take_due(now):
            try:
                self.fire(due.target, due.payload)
            except Exception:
                log.warning("a timer's fire failed; trying again later", exc_info=True)
                self.scheduler.failed(due)
                continue
            self.scheduler.done(due)
            ran += 1
        return ran

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="timers", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.fire_due()
            except Exception:
                log.exception("the timer loop failed; going on")
            self.scheduler.changed.wait(self.poll)
            self.scheduler.changed.clear()

    def stop(self) -> None:
        self._stop.set()
        self.scheduler.changed.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


__all__ = [
    "TimerLoop",
    "apply",
    "cancel",
    "cron_expression",
    "is_timer_change",
    "keep_timers",
    "next_time",
    "schedule_of",
    "scheduler_from_settings",
    "template",
]
