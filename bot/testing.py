"""Test a bot without any server, store or platform: :class:`Conversation` runs turns the way
the edges do (state stored as JSON and migrated on load, replies and effects checked, effects
run after the turn and their results fed back as follow-up turns).

    from bot.testing import Conversation

    chat = Conversation(MyBot())
    assert chat.say("hello")[0].text == "Hi!"
    chat.press("vote", "yes")
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bot.base import effect_key
from bot.messages import Message
from bot.replies import AnyReply, Button, Reply, buttons_of
from bot.spec import MAX_FOLLOW_UPS, BotSpec, run_effect


class Conversation:
    """One conversation with ``bot``, held in memory.

    Args:
        bot: the bot under test.
        platform: what ``Message.platform`` says (some bots render per platform).
        run_effects: run ``@effect`` methods (with their follow-up turns) after each turn;
            ``False`` keeps them in :attr:`effects` instead.
    """

    def __init__(
        self,
        bot: Any,
        *,
        platform: str = "slack",
        user: str = "U0TEST",
        conversation: str = "D0TEST",
        run_effects: bool = True,
    ) -> None:
        self.spec = BotSpec.of(bot)
        self.platform = platform
        self.user = user
        self.conversation = conversation
        self.run_effects = run_effects
        self.stored: Any = None  #: the state as the store would hold it (JSON)
        self.replies: list[AnyReply] = []  #: every reply so far
        self.effects: list[tuple[str, Mapping[str, Any]]] = []  #: every effect asked for
        self._events = 0

    @property
    def state(self) -> Any:
        return None if self.stored is None else self.spec.load_state(json.loads(self.stored))

    def send(self, message: Message) -> list[AnyReply]:
        """Run one turn (and the follow-ups of its effects); return the replies, in order."""
        self._events += 1
        return self._turn(message, f"test:{self._events}", depth=0)

    def _turn(self, message: Message, idempotency_key: str, *, depth: int) -> list[AnyReply]:
        loaded = self.spec.load_state(None if self.stored is None else json.loads(self.stored))
        outcome = self.spec.outcome(loaded, message)
        # Stored as JSON, as the real stores do: a state that does not survive it fails here.
        self.stored = json.dumps(self.spec.dump_state(outcome.state))
        replies = list(outcome.replies)
        self.replies.extend(replies)
        for index, fx in enumerate(outcome.effects):
            self.effects.append((fx.name, fx.args))
            if not self.run_effects:
                continue
            # The edges' own effect runner: same call, same follow-up message, same limit.
            key = effect_key(idempotency_key, index, fx.name)
            follow_up = run_effect(self.spec, fx, key, message)
            if follow_up is not None and depth + 1 <= MAX_FOLLOW_UPS:
                replies += self._turn(follow_up, f"followup:{key}", depth=depth + 1)
        return replies

    def _message(self, **fields: Any) -> Message:
        return Message(platform=self.platform, user=self.user,  # type: ignore[arg-type]
                       conversation=self.conversation, **fields)  # fmt: skip

    def say(self, text: str) -> list[AnyReply]:
        """The user types ``text``."""
        return self.send(self._message(text=text))

    def command(self, command: str, text: str = "") -> list[AnyReply]:
        """The user runs a Slack slash command."""
        return self.send(self._message(kind="command", command=command, text=text))

    def press(self, action: str | Button, value: str = "") -> list[AnyReply]:
        """The user presses a button (or a quick reply, or a postback)."""
        if isinstance(action, Button):
            value = action.value
            action = action.action
        return self.send(self._message(kind="action", action=action, value=value))

    def submit(self, action: str, form: Mapping[str, str]) -> list[AnyReply]:
        """The user submits a modal."""
        return self.send(self._message(kind="submission", action=action, form=dict(form)))

    def last_buttons(self) -> tuple[Button, ...]:
        """The buttons of the last reply that had any."""
        for reply in reversed(self.replies):
            if buttons_of(reply):
                return buttons_of(reply)
        return ()

    def texts(self, replies: list[AnyReply] | None = None) -> list[str]:
        return [
            r.text if isinstance(r, Reply) else str(getattr(r, "text", "") or "")
            for r in (self.replies if replies is None else replies)
        ]
