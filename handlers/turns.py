"""What both platform edges share: the bot's shape and its turn as the session core runs it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from bot.messages import Message, Reply
from sessions import Turn


class Bot(Protocol):
    """A pure bot: ``turn`` computes, ``is_slow`` says (before the ack) whether to defer."""

    def turn(self, state: dict[str, Any], message: Message) -> tuple[Any, Sequence[Reply], Any]: ...

    def is_slow(self, message: Message) -> bool: ...


def bot_turn(bot: Bot, *, with_response: bool = False) -> Turn:
    """The bot's turn with replies as JSON-compatible dicts (they may be stored: the recorded
    response, sent-mark mode's outbox). ``with_response``: the replies are also the response
    a duplicate gets back (a slash command's ack body)."""

    def turn(state: dict[str, Any], message: Message) -> tuple[Any, list[Any], Any]:
        new_state, replies, _ = bot.turn(state, message)
        rendered = [r.to_dict() for r in replies]
        return new_state, rendered, rendered if with_response else None

    return turn


def replies_from(data: Sequence[dict[str, Any]]) -> list[Reply]:
    return [Reply.from_dict(r) for r in data]
