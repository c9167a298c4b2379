"""The bot's turn as the session core runs it: the stored state migrated to the bot's schema,
the outcome checked, replies and effects apart as JSON-compatible dicts, the conversation's
pending timers and a shared channel's forgotten users kept beside the bot's state. Pure: no
I/O (the pipeline, ``handlers.pipeline.core``, runs it through ``Sessions.run``)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from bot import timers as timer_rules
from bot.base import Effect
from bot.messages import Message
from bot.replies import AnyReply, reply_from_dict
from bot.spec import BotSpec
from handlers.pipeline import membership
from sessions import NOTHING, Turn
from sessions.privacy import fingerprint


def replies_of(items: Sequence[Any]) -> list[AnyReply]:
    """Stored replies back as values (an outbox written before effects were kept apart may
    hold effects too: they are not replies)."""
    return [reply_from_dict(i) for i in items if not _is_effect(i)]


def _is_effect(item: Any) -> bool:
    return isinstance(item, Mapping) and item.get("kind") == "effect"


#: A fire's response when its timer is no longer pending at all (not merely this occurrence
#: run already): the pipeline deletes its schedule, so it stops firing.
TIMER_GONE = "timer gone"
#: A shared item's turn's response when its user was deleted since this container last saw
#: their membership mark: the mark is written again and the turn runs again.
REMARK = "mark again"
#: How far the containers' clocks may disagree with the one a user delete ran on.
CLOCK_SKEW = 300.0


def bot_turn(
    spec: BotSpec,
    idempotency_key: str = "",
    *,
    marked: float | None = None,
    shared: Sequence[bool] | None = None,
) -> Turn:
    """The bot's turn as the session core runs it: the stored state migrated to the bot's
    schema (``None``: a new conversation, the bot's initial state; a tuple, one per scope, for
    a bot of several), the outcome checked, replies and effects apart as JSON-compatible dicts
    (they may be stored: sent-mark mode's outbox). No recorded response: no platform asks for
    one again (Slack never redelivers a slash command or an interaction, and the Events API
    and Meta want only a 200), so a duplicate is answered 200 and sends nothing, at one read.

    The first scope's state also keeps the conversation's pending timers (``bot.timers``):
    a user message cancels its ``cancel_on_message`` ones, the turn's ``Timer`` and
    ``CancelTimer`` effects change them (committed with the turn: created once per event),
    and a fire whose timer is gone is :data:`~sessions.NOTHING` (no turn, nothing written;
    :data:`TIMER_GONE` when no occurrence of it is pending any more).
    The effects then carry the changes for the scheduler (``idempotency_key``: the event's,
    which a timer's id derives from).

    A Slack channel's state also keeps the users it forgot (``handlers.pipeline.membership``):
    a late event of one of them is consumed with no change and no reply; a forget turn's replies and
    effects are dropped, but not its timer changes: its ``CancelTimer``s take effect, and the
    timers the user set there are cancelled with it (it sets none: a timer fires in the name of
    whoever set it). A fire of a timer set by a user deleted since runs no turn and cancels it.
    ``marked``: when this container last saw the user's membership mark (``None``: just now);
    a turn of a user deleted since is :data:`REMARK` (nothing written). ``shared``: which of
    the bot's scopes' items are a Slack channel's or thread's (``ConversationKey.shared``, in
    scope order, as the pipeline keyed them); default: as the message's own conversation
    keys them (:func:`membership.shared_scopes`).

    Raises (inside the turn, so the event is a dead letter): ``BotTypeError`` for more than
    ``bot.timers.MAX_TIMERS_PER_TURN`` timers set by one turn."""

    shares = None if shared is None else [i for i, s in enumerate(shared) if s]

    def turn(stored: Any, message: Message) -> tuple[Any, list[Any], Any, list[Any]]:
        count = len(spec.scopes)
        values = list(stored) if spec.multi and stored is not None else [stored]
        if spec.multi and stored is None:
            values = [None] * count
        values[0], table = timer_rules.split(values[0])
        entry = timer_rules.live(table, message) if message.kind == timer_rules.TIMER else None
        table, cancelled, for_bot = timer_rules.before_turn(table, message)
        if for_bot is None:
            # A fire whose timer is gone: moot (and its schedule goes, unless only this
            # occurrence ran already).
            return NOTHING, [], TIMER_GONE if timer_rules.gone(table, message) else None, []
        message = for_bot
        shared = (
            membership.shared_scopes(spec, membership.conversation_of(message))
            if shares is None
            else shares
        )
        forgotten: dict[str, int] = {}
        for i in shared:
            values[i], forgotten = membership.split(values[i])
        if shared and membership.ignored(forgotten, message):
            return stored, [], None, []  # the event is consumed; its user was deleted since
        deleted_at = forgotten.get(fingerprint(message.user)) if shared else None
        if (
            deleted_at is not None
            and entry is not None
            and round(float(entry.get("set") or 0) * 1000) <= deleted_at
        ):
            # Set by a user deleted since: it never runs in their name again (a recurring
            # one neither), and its schedule goes.
            table.pop(str(message.action), None)
            kept = [values[0], *[NOTHING] * (len(values) - 1)]  # the others: not written
            if 0 in shared:
                kept[0] = membership.join(kept[0], forgotten)
            kept[0] = timer_rules.join(kept[0], table)
            cancel = timer_rules.Changes(cancelled=(str(entry["id"]),))
            return (tuple(kept) if spec.multi else kept[0]), [], None, cancel.to_dicts()
        if (
            deleted_at is not None
            and marked is not None
            and message.kind not in (timer_rules.TIMER, membership.USER_DELETED)
            and deleted_at >= (marked - CLOCK_SKEW) * 1000
        ):
            return NOTHING, [], REMARK, []  # its mark went with the delete: mark again first
        loaded = values if spec.multi else values[0]
        outcome = spec.outcome(spec.load_state(loaded), message)
        dumped = spec.dump_state(outcome.state)
        out = list(dumped) if spec.multi else [dumped]
        if shared:
            forgotten = membership.remember(forgotten, message, membership.FORGET_FOR_MS)
            for i in shared:
                out[i] = membership.join(out[i], forgotten)
        deleted = message.kind == membership.USER_DELETED
        effects: Sequence[Any] = outcome.effects
        if deleted:
            # A forget turn may cancel timers, never set one (it would fire as the user).
            effects = [e for e in effects if isinstance(e, timer_rules.CancelTimer)]
            table, dropped = timer_rules.forget(table, fingerprint(message.user))
            cancelled = [*cancelled, *dropped]
        table, changes = timer_rules.after_turn(
            table,
            effects,
            idempotency_key=idempotency_key,
            now=message.time if message.time is not None else time.time(),
            cancelled=cancelled,
            by=fingerprint(message.user) if shared else None,
        )
        out[0] = timer_rules.join(out[0], table)
        dumped = tuple(out) if spec.multi else out[0]
        if deleted:
            return dumped, [], None, changes.to_dicts()
        replies = [r.to_dict() for r in outcome.replies]
        effects_out = [e.to_dict() for e in outcome.effects if isinstance(e, Effect)]
        return dumped, replies, None, effects_out + changes.to_dicts()

    return turn


def new_conversation() -> None:
    """What the session core hands ``bot_turn`` for a conversation with no state."""
    return None


__all__ = [
    "CLOCK_SKEW",
    "REMARK",
    "TIMER_GONE",
    "bot_turn",
    "new_conversation",
    "replies_of",
]
