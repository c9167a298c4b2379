"""Deprecated: the todo bot is :mod:`examples.todo` now.

``BOT=bot.todo:bot`` (and ``from bot.todo import TodoBot``) keep working through this alias;
write ``BOT=examples.todo:bot``, or leave ``BOT`` unset for the default (the same bot). The
alias warns once, with a :class:`DeprecationWarning`, and goes in a later release.
"""

from __future__ import annotations

import warnings

from examples.todo import DONE_ACTION, HELP, MAX_ITEMS, MAX_TEXT, State, TodoBot, bot, turn

warnings.warn(
    "bot.todo moved to examples.todo: write BOT=examples.todo:bot (bot.todo:bot still works)",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["DONE_ACTION", "HELP", "MAX_ITEMS", "MAX_TEXT", "State", "TodoBot", "bot", "turn"]
