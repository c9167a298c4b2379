"""The bot the inspector's browser test talks to: the standup example (slash command,
buttons, modals, two scopes), which fails on ``boom`` while the file ``$BROKEN_FLAG``
exists: a dead letter the page then retries once the "bug" is fixed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from bot import Message, Outcome, Scopes
from examples.standup import Standup


class Inspected(Standup):
    namespace: ClassVar[str | None] = "inspected"

    def turn(self, state: Scopes, message: Message) -> Outcome[Scopes]:
        if message.text == "boom":
            if Path(os.environ.get("BROKEN_FLAG", "/nonexistent")).exists():
                raise RuntimeError("the bot is broken")
            return Outcome(state, ["Fixed: boom handled."])
        return super().turn(state, message)


bot = Inspected()
