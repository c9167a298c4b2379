"""The stored key of a conversation for a bot: its first scope, in its namespace (the
edges' own mapping, so a test reads what the bot stored)."""

from __future__ import annotations

from typing import Any

from bot.spec import BotSpec
from examples.todo import TodoBot
from sessions import ConversationKey


def stored(key: ConversationKey, bot: Any = None) -> ConversationKey:
    spec = BotSpec.of(bot if bot is not None else TodoBot())
    return key.scoped(spec.scopes[0], spec.namespace)
