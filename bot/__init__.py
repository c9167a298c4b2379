"""The public bot API: what a bot implements, what it receives and what it can reply.

    from bot import Bot, Button, Message, Outcome, Reply

    class Hello(Bot[dict]):
        actions = ("wave",)

        def turn(self, state: dict, message: Message) -> Outcome[dict]:
            waves = state.get("waves", 0) + (message.action == "wave")
            return Outcome({"waves": waves}, [Reply(f"{waves} waves", [Button("Wave", "wave")])])

    bot = Hello()   # BOT=mypackage.hello:bot

Standard library only: importing it costs nothing and pulls in neither slack_bolt nor boto3.
"""

from __future__ import annotations

from bot.base import (
    Bot,
    BotProtocol,
    BotTypeError,
    Effect,
    EffectCall,
    Outcome,
    Scopes,
    effect,
)
from bot.messages import Attachment, Message
from bot.replies import (
    WINDOW_CLOSED,
    Button,
    Card,
    Cards,
    Field,
    FormErrors,
    Media,
    Modal,
    Reply,
    Template,
)
from bot.spec import BotSpec, StateVersionError
from bot.timers import CancelTimer, Timer

#: The bot the edges run when ``BOT`` is unset.
DEFAULT_BOT = "bot.todo:bot"

__all__ = [
    "DEFAULT_BOT",
    "WINDOW_CLOSED",
    "Attachment",
    "Bot",
    "BotProtocol",
    "BotSpec",
    "BotTypeError",
    "Button",
    "CancelTimer",
    "Card",
    "Cards",
    "Effect",
    "EffectCall",
    "Field",
    "FormErrors",
    "Media",
    "Message",
    "Modal",
    "Outcome",
    "Reply",
    "Scopes",
    "StateVersionError",
    "Template",
    "Timer",
    "effect",
]
