"""Test a bot without any server, store or platform: :class:`Conversation` runs turns the way
the edges do (state stored as JSON and migrated on load, replies and effects checked, effects
run after the turn and their results fed back as follow-up turns).

    from bot.testing import Conversation

    chat = Conversation(MyBot())
    assert chat.say("hello")[0].text == "Hi!"
    chat.press("vote", "yes")

Several users, several channels: :meth:`Conversation.as_user` gives another user (and
channel) of the same workspace over the same stored states, so a channel-scope bot (a poll)
sees every user's turns, a user-scope one follows the user from channel to channel::

    alice = Conversation(PollBot(), user="U0ALICE", conversation="C0LUNCH")
    bob = alice.as_user("U0BOB")
    alice.command("/poll", "Lunch? pizza, sushi")
    bob.press(alice.last_buttons()[0])
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
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
        workspace: str = "T0TEST",
        run_effects: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec = BotSpec.of(bot)
        self.platform = platform
        self.user = user
        self.conversation = conversation
        self.workspace = workspace
        self.run_effects = run_effects
        self.clock = clock
        #: Every stored state, as the store would hold it (JSON), by scope and identity; shared
        #: with the conversations :meth:`as_user` makes.
        self.store: dict[tuple[str, ...], str] = {}
        self.replies: list[AnyReply] = []  #: every reply so far (this user's)
        self.effects: list[tuple[str, Mapping[str, Any]]] = []  #: every effect asked for
        self._events = [0]

    def as_user(self, user: str, conversation: str | None = None) -> Conversation:
        """Another user (in ``conversation``, default this one's channel) of the same
        workspace, over the same stored states and event counter."""
        other = Conversation.__new__(Conversation)
        other.spec, other.platform, other.workspace = self.spec, self.platform, self.workspace
        other.user, other.conversation = user, conversation or self.conversation
        other.run_effects, other.clock = self.run_effects, self.clock
        other.store, other._events = self.store, self._events
        other.replies, other.effects = [], []
        return other

    def _where(self, scope: str) -> tuple[str, ...]:
        """Who shares a scope's state, by the edges' rule (on Messenger, the channel is the
        page and its user)."""
        if scope == "user":
            return ("user", self.workspace, self.user)
        if scope == "channel" and self.platform == "slack":
            return ("channel", self.workspace, self.conversation)
        return (scope, self.workspace, self.conversation, self.user)

    @property
    def stored(self) -> Any:
        """This conversation's state as stored (JSON; a list of one per scope for a bot of
        several), ``None`` when nothing is."""
        values = [self.store.get(self._where(scope)) for scope in self.spec.scopes]
        if not self.spec.multi:
            return values[0]
        return (
            None
            if all(v is None for v in values)
            else json.dumps([None if v is None else json.loads(v) for v in values])
        )

    @property
    def state(self) -> Any:
        return None if self.stored is None else self._load()

    def _load(self) -> Any:
        values = [self.store.get(self._where(scope)) for scope in self.spec.scopes]
        loaded = [None if v is None else json.loads(v) for v in values]
        return self.spec.load_state(loaded if self.spec.multi else loaded[0])

    def send(self, message: Message) -> list[AnyReply]:
        """Run one turn (and the follow-ups of its effects); return the replies, in order."""
        self._events[0] += 1
        return self._turn(message, f"test:{self._events[0]}", depth=0)

    def _turn(self, message: Message, idempotency_key: str, *, depth: int) -> list[AnyReply]:
        outcome = self.spec.outcome(self._load(), message)
        # Stored as JSON, as the real stores do: a state that does not survive it fails here.
        dumped = self.spec.dump_state(outcome.state)
        values = dumped if self.spec.multi else (dumped,)
        for scope, value in zip(self.spec.scopes, values, strict=True):
            self.store[self._where(scope)] = json.dumps(value)
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
                       workspace=self.workspace, conversation=self.conversation,
                       time=self.clock(), **fields)  # fmt: skip

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
