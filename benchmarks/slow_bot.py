"""The todo bot with one slow command, for the ack-latency benchmark.

    BOT=benchmarks.slow_bot:bot make run

``report`` takes five seconds (think: an LLM call or a slow API) and says so before the ack,
so the edges hand it off; everything else is the todo bot.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from bot import Message, Reply
from examples.todo import TodoBot

SECONDS = 5.0


class SlowTodo(TodoBot):
    def is_slow(self, message: Message) -> bool:
        return message.text.strip().lower().startswith("report")

    def turn(self, state: dict[str, Any], message: Message) -> tuple[Any, Sequence[Reply], Any]:
        if not self.is_slow(message):
            return super().turn(state, message)
        time.sleep(SECONDS)
        count = len((state or {}).get("items", []))
        return state, [Reply(f"Report: {count} open items.")], None


bot = SlowTodo()
