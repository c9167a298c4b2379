"""A delivery: one platform event, parsed once at the edge, as every later step sees it.

An edge turns a verified request into :class:`Delivery` values (conversation key, the
platform's idempotency key, the event's time, the bot's :class:`~bot.messages.Message` and
where the answers go, a typed :data:`Route`); the pipeline runs them, and nothing rebuilds
them. A delivery becomes a dict only where it leaves the process: a deferred job (an async
invoke of our own function, a local thread) and a dead letter's replay payload. :func:`dump`
and :func:`load` are that one pair of functions; their format is stable (a dead letter
recorded by an earlier release still replays).

The format, one JSON object::

    {"platform": "slack", "kind": "command" | "action" | "submission" | "event",
     "key": {"team", "channel", "user", "enterprise"},
     "idempotency_key", "message", "event_time", "response_url", "trigger_id", "depth",
     "ephemeral": true (only when set: later answers of a private exchange),
     "thread", "ts" (only when set: the thread the replies go to, the message's own ts),
     "key": {..., "thread"} (only when set: the thread scope's root)}
    {"platform": "messenger" | "instagram" | any platform keyed by a page, an account or a
     number, "kind": "message", "key": {"page", "psid"}, "idempotency_key", "mid", "message",
     "event_time", "depth"}
    {"platform", "kind": "effect", "key", "effect", "effect_key", "origin": <delivery>,
     "event_time"}
    {"kind": "sequence", "items": [<delivery>, ...]}   (one sender's messages, in order)
    {"kind": "fire", "delivery": <delivery>, "occurrence": <epoch or ISO-8601 time>}
                                                (a timer is due: its delivery at that time)
    {"kind": "timers", "origin": <delivery>, "key": <stored item key>, "changes": [...]}
                                                (a turn's timers to (un)schedule, retried)

``retry_failed: true`` on a delivery asks for a replay of its dead letter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bot.base import Effect, effect_key
from bot.messages import Message
from sessions import ConversationKey, InvalidKeyError
from sessions.keys import conversation_from_item

SlackKind = Literal["command", "action", "submission", "event"]


@dataclass(frozen=True, slots=True)
class SlackRoute:
    """Where a Slack event's answers go: ``response_url`` for commands and actions (and a
    modal submission's conversation), else the channel through the Web API; ``trigger_id``
    lets a command or a button open a modal (for 3 s, so never on a deferred turn)."""

    kind: SlackKind
    response_url: str = ""
    trigger_id: str | None = None
    #: The answers are the user's alone though they come later, outside the exchange (a
    #: timer's fire set by a slash command in a channel): ephemeral to the user.
    ephemeral: bool = False
    #: The thread the answers go to (its root's ``ts``; ``""``: the channel's top level).
    thread: str = ""
    #: The message's own ``ts``: a ``Reply(in_thread=True)`` starts a thread under it.
    ts: str = ""


def private_exchange(route: SlackRoute, key: ConversationKey) -> bool:
    """Whether a Slack exchange's answers are for its user alone by default: slash commands
    and buttons answer ephemerally, a modal's submission too outside a DM, and so does a
    later answer of such an exchange (``route.ephemeral``). A reply's own ``visibility``
    still wins."""
    if route.ephemeral or route.kind in ("command", "action"):
        return True
    return route.kind == "submission" and not key.channel.startswith("D")


@dataclass(frozen=True, slots=True)
class MessengerRoute:
    """A Messenger message's answers go to its sender through the Send API; ``mid`` names the
    message in log lines (hashed)."""

    mid: str
    kind: Literal["message"] = "message"


Route = SlackRoute | MessengerRoute


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event to run as a turn.

    ``depth``: how many effect → follow-up rounds led here (0 for a platform event);
    ``replay``: run it even if it is a dead letter (the admin CLI's retry).
    """

    key: ConversationKey
    idempotency_key: str
    message: Message
    event_time: float | None
    route: Route
    depth: int = 0
    replay: bool = False

    @property
    def kind(self) -> str:
        return self.route.kind

    def later(self) -> Delivery:
        """The same delivery run after the ack: a trigger id is long expired by then."""
        if isinstance(self.route, SlackRoute) and self.route.trigger_id:
            return dataclasses.replace(self, route=dataclasses.replace(self.route, trigger_id=None))
        return self

    def effect(self, index: int, effect: Effect) -> EffectJob:
        """The ``index``-th effect this delivery's turn asked for."""
        return EffectJob(self, effect, effect_key(self.idempotency_key, index, effect.name))


@dataclass(frozen=True, slots=True)
class EffectJob:
    """An effect of a committed turn, claimed once by ``effect_key`` before it runs."""

    origin: Delivery
    effect: Effect
    effect_key: str

    def follow_up(self, message: Message) -> Delivery:
        """The turn that brings the effect's result back to the bot: the origin's route (a
        modal in it falls back to text: its trigger is long used), one round deeper."""
        return dataclasses.replace(
            self.origin.later(),
            idempotency_key=f"followup:{self.effect_key}",
            message=message,
            depth=self.origin.depth + 1,
            replay=False,
        )


@dataclass(frozen=True, slots=True)
class EraseJob:
    """Erase everything a workspace stored (after ``app_uninstalled``): long work, so it runs
    after the ack. ``generation``: the uninstall's (its tombstones'); the settle pass runs
    again with it once turns in flight can no longer commit."""

    platform: str
    workspace: str
    generation: int | None = None


@dataclass(frozen=True, slots=True)
class TimerJob:
    """A committed turn's timer changes still to reach the scheduler (it failed inline):
    ``changes`` as ``bot.timers.Changes.to_dicts`` made them, for the item ``stored``."""

    origin: Delivery
    stored: ConversationKey
    changes: tuple[Mapping[str, Any], ...]


Job = Delivery | EffectJob | EraseJob | TimerJob | tuple[Delivery, ...]


def fire(template: Delivery, occurrence: float) -> Delivery:
    """The delivery of a timer due at ``occurrence`` (epoch seconds): the fire is an event of
    its own, keyed by the timer's id and the due time (a recurring timer fires once per
    time, a retried fire is a duplicate)."""
    timer_id = str(template.message.value or "")
    return dataclasses.replace(
        template,
        idempotency_key=f"timer:{timer_id}:{round(occurrence * 1000)}",
        message=dataclasses.replace(template.message, time=occurrence),
        event_time=occurrence,
    )


def occurrence_of(value: Any) -> float:
    """A fire's due time: epoch seconds, or EventBridge Scheduler's ISO-8601 scheduled time."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    import datetime as dt

    moment = dt.datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


class BadJob(ValueError):
    """A deferred job or replay payload that does not describe a delivery."""


# -- the one pair of functions -----------------------------------------------------------------


def dump(job: Job) -> dict[str, Any]:
    """The JSON-compatible form of a delivery, an effect or a sender's sequence."""
    if isinstance(job, tuple):
        return {"kind": "sequence", "items": [dump(d) for d in job]}
    if isinstance(job, EraseJob):
        erase: dict[str, Any] = {"kind": "erase", "platform": job.platform,
                                 "workspace": job.workspace}  # fmt: skip
        if job.generation is not None:
            erase["generation"] = job.generation
        return erase
    if isinstance(job, TimerJob):
        return {
            "kind": "timers",
            "origin": dump(job.origin),
            "key": {"pk": job.stored.pk, "sk": job.stored.sk},
            "changes": [dict(c) for c in job.changes],
        }
    if isinstance(job, EffectJob):
        return {
            "platform": job.origin.key.platform,
            "kind": "effect",
            "key": _key_dict(job.origin.key),
            "effect": job.effect.to_dict(),
            "effect_key": job.effect_key,
            "origin": dump(job.origin),
            "event_time": job.origin.event_time,
        }
    data: dict[str, Any] = {
        "platform": job.key.platform,
        "kind": job.route.kind,
        "key": _key_dict(job.key),
        "idempotency_key": job.idempotency_key,
        "message": job.message.to_dict(),
        "event_time": job.event_time,
    }
    if isinstance(job.route, SlackRoute):
        data["response_url"] = job.route.response_url
        data["trigger_id"] = job.route.trigger_id
        if job.route.ephemeral:
            data["ephemeral"] = True
        if job.route.thread:
            data["thread"] = job.route.thread
        if job.route.ts:
            data["ts"] = job.route.ts
    else:
        data["mid"] = job.route.mid
    if job.depth:
        data["depth"] = job.depth
    if job.replay:
        data["retry_failed"] = True
    return data


def load(data: Any) -> Job:
    """A job back from its :func:`dump` form.

    Raises:
        BadJob: not a job of this format (or its key, message or effect does not read).
    """
    if not isinstance(data, Mapping):
        raise BadJob(f"a job is an object, not {type(data).__name__}")
    try:
        if data.get("kind") == "sequence":
            items = tuple(load(item) for item in data["items"])
            if not all(isinstance(item, Delivery) for item in items):
                raise BadJob("a sequence holds deliveries only")
            return items  # type: ignore[return-value]
        if data.get("kind") == "erase":
            ConversationKey(data["platform"], data["workspace"], data["workspace"], "0")
            generation = data.get("generation")
            if generation is not None and (type(generation) is not int or generation < 0):
                raise BadJob("an erase's generation is a count of milliseconds")
            return EraseJob(str(data["platform"]), str(data["workspace"]), generation)
        if data.get("kind") == "fire":
            template = load(data["delivery"])
            if not isinstance(template, Delivery) or template.message.kind != "timer":
                raise BadJob("a fire's delivery is a timer's")
            return fire(template, occurrence_of(data["occurrence"]))
        if data.get("kind") == "timers":
            origin = load(data["origin"])
            if not isinstance(origin, Delivery):
                raise BadJob("a timer job's origin is a delivery")
            stored = conversation_from_item(str(data["key"]["pk"]), str(data["key"]["sk"]))
            changes = tuple(dict(c) for c in data["changes"])
            return TimerJob(origin, stored, changes)
        if data.get("kind") == "effect":
            origin = load(data["origin"])
            if not isinstance(origin, Delivery):
                raise BadJob("an effect's origin is a delivery")
            return EffectJob(origin, Effect.from_dict(data["effect"]), str(data["effect_key"]))
        return _delivery(data)
    except BadJob:
        raise
    except (LookupError, TypeError, ValueError, AttributeError, InvalidKeyError) as exc:
        raise BadJob(f"unreadable job: {type(exc).__name__}") from exc


def _delivery(data: Mapping[str, Any]) -> Delivery:
    key = data["key"]
    route: Route
    if data["platform"] == "slack":
        conversation = ConversationKey.slack(
            team=key["team"], channel=key["channel"], user=key["user"],
            enterprise=key.get("enterprise"), thread=key.get("thread") or None,
        )  # fmt: skip
        kind = data["kind"]
        if kind not in ("command", "action", "submission", "event"):
            raise BadJob(f"unknown Slack delivery kind {str(kind)[:20]!r}")
        trigger = data.get("trigger_id")
        route = SlackRoute(
            kind,
            str(data.get("response_url") or ""),
            trigger or None,
            data.get("ephemeral") is True,
            str(data.get("thread") or ""),
            str(data.get("ts") or ""),
        )
    elif isinstance(key, Mapping) and "page" in key:  # a page's (or number's) user: Graph's
        conversation = ConversationKey(data["platform"], key["page"], key["page"], key["psid"])
        route = MessengerRoute(str(data.get("mid") or ""))
    else:
        raise BadJob(f"unknown platform {str(data['platform'])[:20]!r}")
    when = data.get("event_time")
    return Delivery(
        key=conversation,
        idempotency_key=str(data["idempotency_key"]),
        message=Message.from_dict(data["message"]),
        event_time=None if when is None else float(when),
        route=route,
        depth=int(data.get("depth") or 0),
        replay=bool(data.get("retry_failed")),
    )


def _key_dict(key: ConversationKey) -> dict[str, Any]:
    if key.platform == "slack":
        data = {
            "team": key.workspace,
            "channel": key.channel,
            "user": key.user,
            "enterprise": key.enterprise,
        }
        if key.thread is not None:
            data["thread"] = key.thread
        return data
    return {"page": key.workspace, "psid": key.user}


def deliveries(job: Job) -> Sequence[Delivery | EffectJob | EraseJob | TimerJob]:
    """The units a job runs, in order."""
    return job if isinstance(job, tuple) else (job,)


__all__ = [
    "BadJob",
    "Delivery",
    "EffectJob",
    "EraseJob",
    "Job",
    "MessengerRoute",
    "Route",
    "SlackRoute",
    "TimerJob",
    "dump",
    "fire",
    "load",
    "occurrence_of",
    "private_exchange",
]
