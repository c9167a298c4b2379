"""A bot through the real delivery pipeline, without a platform: :class:`PipelineChat`.

``bot.testing.Conversation`` is the light way to test a bot (no store, no ``handlers``); this is
the full one: the pipeline of ``handlers.pipeline`` over a real SQLite store, with a platform
that records what would have been sent and a deferral that runs handed-off jobs at once (slow
turns, slow effects, follow-ups). Both share ``bot.spec`` and a test runs the same
conversations through both, so they cannot drift apart.

    from handlers.tools.testing import PipelineChat

    chat = PipelineChat(MyBot())
    assert chat.texts(chat.say("hello")) == ["Hi!"]
"""

from __future__ import annotations

import itertools
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bot.messages import Message
from bot.replies import AnyReply, Reply
from handlers.delivery import Delivery, MessengerRoute, Route, SlackRoute
from handlers.entry import spec_of
from handlers.pipeline import Answer, Deadline, Pipeline
from sessions import ConversationKey, Sessions
from sessions.sqlite import SQLiteStore


class RecordingPlatform:
    """A platform that sends nothing: what each delivery would have sent, in order."""

    turn_budget = 2.0

    def __init__(self) -> None:
        self.sent: list[AnyReply] = []
        self.apologies = 0

    def deliver(
        self,
        delivery: Delivery,
        replies: Sequence[AnyReply],
        answer: Answer | None,
        deadline: Deadline,
    ) -> None:
        self.sent.extend(replies)

    def apologise(self, delivery: Delivery, answer: Answer | None, deadline: Deadline) -> None:
        self.apologies += 1


class InlineDeferrer:
    """Keeps handed-off jobs (in their serialised form, as a Lambda payload carries them)
    until :meth:`drain` runs them."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []

    def submit(self, job: dict[str, Any]) -> None:
        self.jobs.append(job)


class PipelineChat:
    """One conversation with ``bot``, each message a delivery through the pipeline.

    Args:
        bot: the bot under test.
        platform: ``"slack"`` (a DM's route) or ``"messenger"``.
        path: the SQLite file (default: a temporary one).
    """

    def __init__(
        self,
        bot: Any,
        *,
        platform: str = "slack",
        workspace: str = "T0TEST",
        user: str = "U0TEST",
        conversation: str = "D0TEST",
        path: str | Path | None = None,
    ) -> None:
        self.spec = spec_of(bot)
        self.platform_name = platform
        self.user = user
        self.conversation = conversation
        if path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="pipeline-chat-")
            path = Path(self._tmp.name) / "sessions.sqlite3"
        self.sessions = Sessions(SQLiteStore(path))
        if platform == "slack":
            self.key = ConversationKey.slack(team=workspace, channel=conversation, user=user)
        else:  # Meta's ids are digits; the bot's messages say what ``user`` says
            self.key = ConversationKey.messenger(page="100000001", psid="200000001")
        self.platform = RecordingPlatform()
        self.deferrer = InlineDeferrer()
        self.pipeline = Pipeline(
            sessions=self.sessions,
            spec=self.spec,
            platform=self.platform,
            deferrer=lambda: self.deferrer,
        )
        self._ids = itertools.count(1)

    @property
    def state(self) -> Any:
        keys = self.pipeline.stored(self.key)
        found = [self.sessions.get(key) for key in keys]
        states = [None if f is None else f.state for f in found]
        return self.spec.load_state(states if self.spec.multi else states[0])

    def send(self, message: Message) -> list[AnyReply]:
        """Run one delivery (and whatever it hands off); return what was sent, in order."""
        before = len(self.platform.sent)
        n = next(self._ids)
        route: Route = SlackRoute("event")
        if self.platform_name != "slack":
            route = MessengerRoute(f"m{n}")
        self.pipeline.run(Delivery(self.key, f"test:{n}", message, time.time(), route))
        while self.deferrer.jobs:
            self.pipeline.run_job(self.deferrer.jobs.pop(0))
        return self.platform.sent[before:]

    def message(self, **fields: Any) -> Message:
        return Message(platform=self.platform_name, user=self.user,  # type: ignore[arg-type]
                       conversation=self.conversation, **fields)  # fmt: skip

    def say(self, text: str) -> list[AnyReply]:
        return self.send(self.message(text=text))

    def command(self, command: str, text: str = "") -> list[AnyReply]:
        return self.send(self.message(kind="command", command=command, text=text))

    def press(self, action: str, value: str = "") -> list[AnyReply]:
        return self.send(self.message(kind="action", action=action, value=value))

    def submit(self, action: str, form: Mapping[str, str]) -> list[AnyReply]:
        return self.send(self.message(kind="submission", action=action, form=dict(form)))

    @staticmethod
    def texts(replies: Sequence[AnyReply]) -> list[str]:
        return [r.text if isinstance(r, Reply) else str(getattr(r, "text", "")) for r in replies]

    def close(self) -> None:
        self.sessions.store.close()
