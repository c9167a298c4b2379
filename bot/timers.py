"""Timers: a bot schedules its own future turns.

A turn returns a :class:`Timer` among its effects; at its time the bot gets a turn of its
own on the same conversation (the same scope's state),
``Message(kind="timer", action=<name>, payload=<args>, time=<when it was due>)``::

    def turn(self, state, message):
        if message.kind == "timer":
            return Outcome(state, [Reply(f"Reminder: {message.payload['text']}")])
        ...
        return Outcome(state, ["I'll remind you."],
                       [Timer("remind", after=600, args={"text": "stretch"})])

The promise:

- **created once** per origin event, however often the platform redelivers it: the timer
  lives in the conversation's stored state, written with the turn's commit (its id derives
  from the event's idempotency key), and only a committed turn schedules it;
- **fired once** per due time, however often the scheduler retries: the fire is an event with
  its own idempotency key (the timer's id and the due time), and a fire whose timer is no
  longer in the state (cancelled, replaced, fired already, the user deleted) runs no turn
  and writes nothing;
- a timer's ``name`` is its handle in its conversation: setting a name again replaces the
  pending timer of that name; :class:`CancelTimer` cancels it; ``cancel_on_message=True``
  cancels it when any later user message (text, command, button, submission) of that
  conversation commits (an idle prompt; the turn handling that message may set it again);
- ``after`` counts from the event's own time (a redelivery a minute late sets the same due
  time); ``cron`` (five fields, a time zone; :mod:`bot.cron`) fires at every match until
  cancelled.

This module is the pure part (the table of pending timers kept beside the bot's state, and
its rules), shared by the edges and :mod:`bot.testing`. Standard library only.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.base import BotTypeError, effect_key
from bot.cron import Cron, CronError
from bot.messages import Message, freeze, thaw

#: The key the stored state keeps its pending timers under (beside the bot's ``state``).
TIMERS = "__timers__"
#: The message kind a fire brings.
TIMER: str = "timer"
#: What a user does: the kinds that cancel ``cancel_on_message`` timers.
USER_KINDS = frozenset({"text", "command", "action", "submission"})
#: A timer's args travel with the scheduler's call and stay in the state: keep them small.
MAX_ARGS_BYTES = 4096
MAX_NAME = 64
#: The most timers one turn may set: each is a scheduler call after the commit (more is a
#: :class:`~bot.base.BotTypeError`: the event becomes a dead letter).
MAX_TIMERS_PER_TURN = 50


@dataclass(frozen=True, slots=True)
class Timer:
    """A future turn of this conversation.

    Exactly one of:
        after: seconds from the event's time.
        at: epoch seconds.
        cron: a five-field cron expression (``"30 9 * * MON-FRI"``), in ``tz``.

    Args:
        name: its handle in this conversation (setting it again replaces it).
        tz: the IANA time zone of ``cron`` (``"Europe/Berlin"``).
        args: JSON-compatible, at most 4 KB; the fire's ``Message.payload``.
        cancel_on_message: cancelled by any later message of the user in this conversation.
    """

    name: str
    after: float | None = None
    at: float | None = None
    cron: str | None = None
    tz: str = "UTC"
    args: Mapping[str, Any] = field(default_factory=dict)
    cancel_on_message: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or len(self.name) > MAX_NAME:
            raise BotTypeError(f"Timer name {self.name!r}: expected 1 to {MAX_NAME} characters")
        given = [n for n in ("after", "at", "cron") if getattr(self, n) is not None]
        if len(given) != 1:
            raise BotTypeError(
                f"Timer {self.name!r}: give exactly one of after=, at= or cron= (got {given})"
            )
        for name in ("after", "at"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise BotTypeError(f"Timer {self.name!r}: {name}={value!r} is not a time")
        try:
            if self.cron is not None:
                Cron.parse(self.cron, self.tz)
            else:
                Cron.parse("* * * * *", self.tz)  # the zone, checked the same way
        except CronError as exc:
            raise BotTypeError(f"Timer {self.name!r}: {exc}") from None
        try:
            size = len(json.dumps(thaw(self.args), separators=(",", ":")).encode())
        except (TypeError, ValueError) as exc:
            raise BotTypeError(f"Timer {self.name!r}: args are not JSON ({exc})") from None
        if size > MAX_ARGS_BYTES:
            raise BotTypeError(
                f"Timer {self.name!r}: args are {size} bytes; keep them under "
                f"{MAX_ARGS_BYTES} (store the rest in the state)"
            )
        object.__setattr__(self, "args", freeze(dict(self.args)))

    def first_due(self, now: float) -> float | None:
        """When it first fires, for a turn whose event happened at ``now``."""
        if self.after is not None:
            return now + self.after
        if self.at is not None:
            return float(self.at)
        assert self.cron is not None
        return Cron.parse(self.cron, self.tz).next_after(now)


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Cancel this conversation's pending timer ``name`` (nothing if there is none)."""

    name: str


TimerEffect = Timer | CancelTimer


# -- the table of pending timers, beside the bot's state ---------------------------------------


def split(stored: Any) -> tuple[Any, dict[str, dict[str, Any]]]:
    """A stored state: the bot's part and its pending timers by name."""
    if isinstance(stored, Mapping) and set(stored) == {TIMERS, "state"}:
        return stored["state"], {k: dict(v) for k, v in stored[TIMERS].items()}
    return stored, {}


def join(state: Any, table: Mapping[str, Mapping[str, Any]]) -> Any:
    return {TIMERS: {k: dict(v) for k, v in table.items()}, "state": state} if table else state


@dataclass(frozen=True, slots=True)
class Changes:
    """What a committed turn did to its timers, for the scheduler: entries to schedule (each
    with its ``name`` and ``id``) and ids of timers to unschedule."""

    scheduled: tuple[dict[str, Any], ...] = ()
    cancelled: tuple[str, ...] = ()

    def to_dicts(self) -> list[dict[str, Any]]:
        """As the turn's effects carry them (JSON-compatible)."""
        out: list[dict[str, Any]] = [{"kind": "timer_cancel", "id": i} for i in self.cancelled]
        return out + [{"kind": "timer_set", "timer": dict(e)} for e in self.scheduled]


def live(table: Mapping[str, Mapping[str, Any]], message: Message) -> dict[str, Any] | None:
    """The pending entry a fire ``message`` is for, or ``None`` when that timer is gone
    (cancelled, replaced, already fired, the conversation deleted) or this occurrence was
    already run: then the fire runs no turn."""
    entry = table.get(message.action or "")
    if entry is None or entry.get("id") != message.value:
        return None
    if message.time is not None and message.time <= float(entry.get("last") or 0):
        return None
    return dict(entry)


def gone(table: Mapping[str, Mapping[str, Any]], message: Message) -> bool:
    """Whether a fire ``message``'s timer is no longer pending at all (cancelled, replaced,
    fired for good, its conversation deleted), as opposed to this occurrence having run
    already: its schedule may go."""
    entry = table.get(message.action or "")
    return entry is None or entry.get("id") != message.value


def forget(
    table: Mapping[str, Mapping[str, Any]], by: str
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The table without the timers set by ``by`` (a user's hash, as :func:`after_turn`
    recorded it), and their ids: a deleted user's timers never fire in their name."""
    rows = {k: dict(v) for k, v in table.items() if v.get("by") != by}
    return rows, [str(v["id"]) for v in table.values() if v.get("by") == by]


def before_turn(
    table: Mapping[str, Mapping[str, Any]], message: Message
) -> tuple[dict[str, dict[str, Any]], list[str], Message | None]:
    """The table as the bot's turn starts, the ids it cancelled, and the message the bot gets
    (``None``: a fire whose timer is gone; no turn).

    A user message cancels the ``cancel_on_message`` timers; a fire takes a one-time timer
    out (it is done) and moves a recurring one to its next time, and gets the timer's args.
    """
    rows: dict[str, dict[str, Any]] = {k: dict(v) for k, v in table.items()}
    if message.kind == TIMER:
        entry = live(rows, message)
        if entry is None:
            return rows, [], None
        name = str(message.action)
        at = float(message.time or entry["due"])
        if entry.get("cron"):
            entry["last"] = at
            following = Cron.parse(entry["cron"], entry.get("tz") or "UTC").next_after(at)
            if following is None:
                del rows[name]
            else:
                rows[name] = {**entry, "due": following}
        else:
            del rows[name]
        return rows, [], _with_args(message, entry)
    cancelled: list[str] = []
    if message.kind in USER_KINDS:
        for name, row in list(rows.items()):
            if row.get("com"):
                cancelled.append(str(row["id"]))
                del rows[name]
    return rows, cancelled, message


def _with_args(message: Message, entry: Mapping[str, Any]) -> Message:
    return dataclasses.replace(message, payload=freeze(dict(entry.get("args") or {})))


def after_turn(
    table: Mapping[str, Mapping[str, Any]],
    effects: Sequence[Any],
    *,
    idempotency_key: str,
    now: float,
    cancelled: Sequence[str] = (),
    by: str | None = None,
) -> tuple[dict[str, dict[str, Any]], Changes]:
    """Apply a turn's :class:`Timer` and :class:`CancelTimer` effects (in order) to the
    table. ``idempotency_key``: the event's (a timer's id is its effect key, the same on
    every redelivery and re-run); ``now``: the event's time (``after`` counts from it);
    ``by``: who set them (a hash, kept with each entry: :func:`forget` finds them by it).

    Raises:
        BotTypeError: the turn set more than :data:`MAX_TIMERS_PER_TURN` timers.
    """
    count = sum(1 for item in effects if isinstance(item, Timer))
    if count > MAX_TIMERS_PER_TURN:
        raise BotTypeError(
            f"a turn set {count} timers; at most {MAX_TIMERS_PER_TURN} per turn (keep a list "
            "in the state and one timer for the soonest)"
        )
    rows: dict[str, dict[str, Any]] = {k: dict(v) for k, v in table.items()}
    before = {str(e["id"]) for e in rows.values()}
    for index, item in enumerate(effects):
        if isinstance(item, CancelTimer):
            rows.pop(item.name, None)
        elif isinstance(item, Timer):
            rows.pop(item.name, None)  # the same name again replaces it
            due = item.first_due(now)
            if due is None:
                continue  # a cron that never fires: nothing pending
            entry: dict[str, Any] = {
                "name": item.name,
                "id": effect_key(idempotency_key, index, f"timer:{item.name}"),
                "due": due,
                "args": thaw(item.args),
                "set": now,
            }
            if item.cron is not None:
                entry["cron"], entry["tz"] = item.cron, item.tz
            if item.cancel_on_message:
                entry["com"] = True
            if by is not None:
                entry["by"] = by
            rows[item.name] = entry
    after = {str(e["id"]) for e in rows.values()}
    scheduled = tuple(e for e in rows.values() if str(e["id"]) not in before)
    gone = [*cancelled, *sorted(before - after)]
    return rows, Changes(scheduled, tuple(dict.fromkeys(gone)))


def keep_until(table: Mapping[str, Mapping[str, Any]]) -> float | None:
    """The latest due time of the pending timers: the state must outlive it."""
    dues = [float(e["due"]) for e in table.values()]
    return max(dues) if dues else None


def pending(stored: Any) -> list[dict[str, Any]]:
    """The pending timers of a stored state, soonest first (for tools and tests)."""
    return sorted(split(stored)[1].values(), key=lambda e: float(e["due"]))


__all__ = [
    "MAX_TIMERS_PER_TURN",
    "TIMER",
    "CancelTimer",
    "Changes",
    "Timer",
    "TimerEffect",
    "after_turn",
    "before_turn",
    "forget",
    "gone",
    "join",
    "keep_until",
    "live",
    "pending",
    "split",
]
