"""A bot whose reply carries a Block Kit select (raw blocks): the inspector's browser test
picks an option from it."""

from __future__ import annotations

from typing import Any, ClassVar

from bot import Bot, Message, Outcome, Reply

OPTIONS = ("pizza", "sushi", "salad")


class Picker(Bot[dict[str, Any]]):
    actions: ClassVar[tuple[str, ...]] = ("lunch:pick",)
    namespace: ClassVar[str | None] = "picker"

    def turn(self, state: dict[str, Any], message: Message) -> Outcome[dict[str, Any]]:
        if message.action == "lunch:pick":
            return Outcome({"lunch": message.value}, [f"You picked {message.value}."])
        select = {
            "type": "static_select",
            "action_id": "lunch:pick",
            "placeholder": {"type": "plain_text", "text": "Lunch?"},
            "options": [
                {"text": {"type": "plain_text", "text": o.title()}, "value": o} for o in OPTIONS
            ],
        }
        blocks = [
            {"type": "section", "text": {"type": "mrkdwn", "text": "*Lunch* today?"}},
            {"type": "actions", "block_id": "lunch", "elements": [select]},
        ]
        return Outcome(state, [Reply("Lunch today?", blocks=blocks)])


bot = Picker()
