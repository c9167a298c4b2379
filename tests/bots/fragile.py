"""A bot that fails on ``/fragile boom`` (its exception quotes what the user typed): several
users of one channel each leave a dead letter in their own conversation (scope
``"conversation"``), for the local server's traceback and the inspector's dead-letter pane."""

from __future__ import annotations

from typing import Any, ClassVar

from bot import Bot, Message, Outcome


class Fragile(Bot[dict[str, Any]]):
    commands: ClassVar[tuple[str, ...]] = ("/fragile",)
    namespace: ClassVar[str | None] = "fragile"

    def turn(self, state: dict[str, Any], message: Message) -> Outcome[dict[str, Any]]:
        if message.text == "boom":
            raise ValueError(f"cannot handle {message.text!r}")
        return Outcome({"said": message.text}, [f"Heard: {message.text}"])


bot = Fragile()
