"""The public bot API: what a bot implements, what it receives and what it can reply.

    from bot import Bot, Button, Message, Outcome, Reply

    class Hello(Bot[dict]):
        actions = ("wave",)

        def turn(self, state: dict, message: Message) -> Outcome[dict]:
            waves = state.get("waves", 0) + (message.action == "wave")
            return Outcome({"waves": waves}, [Reply(f"{waves} waves", [Button("Wave", "wave")])])

    bot = Hello()   # BOT=mypackage.hello:bot

Standard library only: importing it costs nothing and pulls in neither slack_bolt nor boto3.
A bot imports what it needs from here, and from nowhere else in ``bot``: the submodules are
the runtime's (``bot.spec``, ``bot.timers``' bookkeeping) or tools (``bot.testing``, for a
bot's tests). What only the runtime raises or reads (``StateVersionError``, ``BotSpec``,
``DEFAULT_BOT``) stays in its module. The todo bot is ``examples.todo`` (``bot.todo`` is a
deprecated alias of it).
"""

from __future__ import annotations

from bot.assistant import Prompts, Status, Title
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
from bot.cron import CronError, zone
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
from bot.timers import CancelTimer, Timer

__all__ = [
    "WINDOW_CLOSED",
    "Attachment",
    "Bot",
    "BotProtocol",
    "BotTypeError",
    "Button",
    "CancelTimer",
    "Card",
    "Cards",
    "CronError",
    "Effect",
    "EffectCall",
    "Field",
    "FormErrors",
    "Media",
    "Message",
    "Modal",
    "Outcome",
    "Prompts",
    "Reply",
    "Scopes",
    "Status",
    "Template",
    "Timer",
    "Title",
    "effect",
    "zone",
]
