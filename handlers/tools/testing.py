"""A bot through the real delivery pipeline, without a platform: :class:`PipelineChat`.

``bot.testing.Conversation`` is the light way to test a bot (no store, no ``handlers``); this is
the full one: the pipeline of ``handlers.pipeline`` over a real SQLite store, with a platform
that records what would have been sent, a deferral that runs handed-off jobs at once (slow
turns, slow effects, follow-ups), and the local scheduler (an SQLite file) whose due timers
:meth:`PipelineChat.advance` fires through the pipeline as the deploy's scheduler would. It
has the same methods and gives the same results as ``Conversation`` (``say``, ``command``,
``press``, ``submit``, ``send``, ``advance``, ``as_user``, ``state``, ``pending_timers``,
``last_buttons``, ``texts``, ``replies``, ``effects``); a test runs the same conversations
through both, so they cannot drift apart.

    from handlers.tools.testing import PipelineChat

    chat = PipelineChat(MyBot())
    assert chat.texts(chat.say("hello")) == ["Hi!"]
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bot import timers as timer_rules
from bot.messages import Message
from bot.replies import AnyReply, Button, Reply, buttons_of
from bot.testing import MAX_FIRES, seen_by_channel
from handlers.entry import spec_of
from handlers.pipeline import Answer, Deadline, Pipeline, membership
from handlers.pipeline.delivery import Delivery, MessengerRoute, Route, SlackRoute
from handlers.pipeline.timers import next_time
from sessions import ConversationKey, Sessions, TurnResult
from sessions.schedules import SQLiteScheduler
from sessions.sqlite import SQLiteStore


class RecordingPlatform:
    """A platform that sends nothing: what each delivery would have sent, in order."""

    turn_budget = 2.0
    function = ""  # a timer fires in the platform's own function

    def __init__(self) -> None:
        self.sent: list[AnyReply] = []
        #: Each delivery that sent something, with what it sent.
        self.log: list[tuple[Delivery, list[AnyReply]]] = []
        self.apologies = 0
        #: Each streamed answer opened, in order.
        self.streams: list[RecordingStream] = []

    def deliver(
        self,
        delivery: Delivery,
        replies: Sequence[AnyReply],
        answer: Answer | None,
        deadline: Deadline,
    ) -> None:
        self.sent.extend(replies)
        self.log.append((delivery, list(replies)))

    def apologise(self, delivery: Delivery, answer: Answer | None, deadline: Deadline) -> None:
        self.apologies += 1

    def stream_target(self, delivery: Delivery) -> RecordingStream:
        stream = RecordingStream(delivery)
        self.streams.append(stream)
        return stream


class RecordingStream:
    """A streamed answer as a platform that shows a growing message would: every call."""

    whole = False

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self.calls: list[tuple[str, str]] = []
        self.text = ""

    def open(self) -> str:
        self.calls.append(("start", ""))
        return f"stream-{id(self)}"

    def append(self, ref: str, text: str) -> None:
        self.calls.append(("append", text))
        self.text += text

    def stop(self, ref: str, text: str) -> None:
        self.calls.append(("stop", text))
        self.text += text


class InlineDeferrer:
    """Keeps handed-off jobs (in their serialised form, as a Lambda payload carries them)
    until :meth:`PipelineChat` runs them."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []

    def submit(self, job: dict[str, Any]) -> None:
        self.jobs.append(job)


class PipelineChat:
    """One conversation with ``bot``, each message a delivery through the pipeline.

    Args:
        bot: the bot under test.
        platform: ``"slack"`` or ``"messenger"``.
        user, conversation, workspace: who talks, where (on Messenger the page and the
            user's id are digits in the stored keys; the bot's messages say these).
        clock: the time events happen at (:meth:`advance` moves it forward).
        path: the SQLite file (default: a temporary one); the timers' schedules beside it.
    """

    def __init__(
        self,
        bot: Any,
        *,
        platform: str = "slack",
        workspace: str = "T0TEST",
        user: str = "U0TEST",
        conversation: str = "D0TEST",
        clock: Callable[[], float] = time.time,
        path: str | Path | None = None,
    ) -> None:
        self.spec = spec_of(bot)
        self.platform_name = platform
        self.workspace = workspace
        self.user = user
        self.conversation = conversation
        self._clock = clock
        self._ahead = [0.0]
        if path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="pipeline-chat-")
            path = Path(self._tmp.name) / "sessions.sqlite3"
        path = Path(path)
        self.scheduler = SQLiteScheduler(
            str(path.with_suffix(".timers.sqlite3")), clock=self.clock, next_time=next_time
        )
        self.sessions = Sessions(SQLiteStore(path), scheduler=self.scheduler, clock=self.clock)
        self.platform = RecordingPlatform()
        self.deferrer = InlineDeferrer()
        self.pipeline = Pipeline(
            sessions=self.sessions,
            spec=self.spec,
            platform=self.platform,
            deferrer=lambda: self.deferrer,
        )
        self.pipeline.journal = self._ran
        self._events = [0]
        self._psids: dict[str, str] = {}
        self._members: list[PipelineChat] = [self]
        #: What each channel's users all see (shared with :meth:`as_user`'s chats).
        self._channels: dict[str, list[AnyReply]] = {}
        self.key = self._key()
        #: Every reply this user has seen so far (as ``Conversation.replies``).
        self.replies: list[AnyReply] = []
        #: Every effect this user's turns asked for, ``(name, args)`` (as
        #: ``Conversation.effects``).
        self.effects: list[tuple[str, Mapping[str, Any]]] = []

    def _key(self) -> ConversationKey:
        if self.platform_name == "slack":
            return ConversationKey.slack(
                team=self.workspace, channel=self.conversation, user=self.user
            )
        # Meta's ids are digits: each user of the test gets one.
        psid = self._psids.setdefault(self.user, str(200000001 + len(self._psids)))
        return ConversationKey.messenger(page="100000001", psid=psid)

    def as_user(self, user: str, conversation: str | None = None) -> PipelineChat:
        """Another user (in ``conversation``, default this one's channel) of the same
        workspace, over the same store, scheduler and clock."""
        other = PipelineChat.__new__(PipelineChat)
        other.__dict__.update(self.__dict__)
        other.user, other.conversation = user, conversation or self.conversation
        other.key = other._key()
        # A user who joins sees what was posted in the channel before, as on Slack.
        other.replies = list(self._channels.get(other.conversation, ()))
        other.effects = []
        self._members.append(other)
        return other

    @property
    def streamed(self) -> list[str]:
        """Each streamed answer sent to this user, whole, as the platform shows it at the end
        (as ``Conversation.streamed``)."""
        return [
            s.text
            for s in self.platform.streams
            if s.delivery.key.user == self.key.user and s.delivery.key.channel == self.key.channel
        ]

    def clock(self) -> float:
        """Now, as this conversation's events see it (the clock, moved by :meth:`advance`)."""
        return self._clock() + self._ahead[0]

    # -- what is stored -------------------------------------------------------------------

    def _raw(self) -> list[Any]:
        """Each scope's stored value, as the store holds it (``None``: nothing)."""
        found = [self.sessions.get(key) for key in self.pipeline.stored(self.key)]
        return [None if f is None else f.state for f in found]

    @property
    def state(self) -> Any:
        """The bot's state (every scope's, for a bot of several), without what the runtime
        keeps beside it (pending timers, a channel's forgotten users); ``None`` when nothing
        is stored."""
        raw = self._raw()
        if all(value is None for value in raw):
            return None
        parts = [
            None if value is None else membership.split(timer_rules.split(value)[0])[0]
            for value in raw
        ]
        return self.spec.load_state(parts if self.spec.multi else parts[0])

    @property
    def pending_timers(self) -> list[dict[str, Any]]:
        """This conversation's pending timers (name, id, due, args, ...), soonest first."""
        return timer_rules.pending(self._raw()[0])

    # -- turns ----------------------------------------------------------------------------

    def send(self, message: Message) -> list[AnyReply]:
        """Run one delivery (and whatever it hands off); return what was sent, in order."""
        before = len(self.platform.log)
        self._events[0] += 1
        n = self._events[0]
        route: Route = SlackRoute("event")
        if self.platform_name != "slack":
            route = MessengerRoute(f"m{n}")
        when = message.time if message.time is not None else self.clock()
        self.pipeline.run(Delivery(self.key, f"test:{n}", message, when, route))
        self._drain()
        return self._seen(before)

    def _ran(self, delivery: Delivery, outcome: str, result: TurnResult | None) -> None:
        """The pipeline's journal: the effects an applied turn asked for, kept with its user."""
        if outcome != "applied" or result is None:
            return
        asked = [
            (str(e["name"]), e.get("args") or {})
            for e in result.effects
            if isinstance(e, Mapping) and e.get("kind") == "effect"
        ]
        for member in self._members:
            if (member.key.pk, member.key.channel) == (delivery.key.pk, delivery.key.channel):
                member.effects.extend(asked)
                return

    def _drain(self) -> None:
        while self.deferrer.jobs:
            self.pipeline.run_job(self.deferrer.jobs.pop(0))

    def _seen(self, before: int) -> list[AnyReply]:
        """What was sent since ``before``, in order; each reply kept with the user it went to
        and, where Slack posts it for everyone, with every user of that channel."""
        sent: list[AnyReply] = []
        for delivery, replies in self.platform.log[before:]:
            sent += replies
            key, message = delivery.key, delivery.message
            shared = [r for r in replies if seen_by_channel(r, message)]
            self._channels.setdefault(str(message.conversation), []).extend(shared)
            for member in self._members:
                mine = (member.key.pk, member.key.channel) == (key.pk, key.channel)
                if mine:
                    member.replies.extend(replies)
                elif member.conversation == message.conversation:
                    member.replies.extend(shared)
        return sent

    def advance(self, seconds: float) -> list[AnyReply]:
        """Move the clock ``seconds`` forward and fire every timer due by then (of every user
        sharing this store), soonest first, each once, through the local scheduler and the
        pipeline; return their turns' replies."""
        self._ahead[0] += seconds
        now = self.clock()
        before = len(self.platform.log)
        for _ in range(MAX_FIRES):
            due = self.scheduler.take_due(now)
            if not due:
                return self._seen(before)
            self.pipeline.run_job(due[0].payload["sessions_deferred"])
            self.scheduler.done(due[0])
            self._drain()
        raise RuntimeError(f"more than {MAX_FIRES} timers fired in one advance")

    def message(self, **fields: Any) -> Message:
        """A message of this user, in this conversation, at this conversation's time."""
        fields.setdefault("time", self.clock())
        return Message(platform=self.platform_name, user=self.user,
                       workspace=self.workspace, conversation=self.conversation,
                       **fields)  # fmt: skip

    def say(self, text: str) -> list[AnyReply]:
        """The user types ``text``."""
        return self.send(self.message(text=text))

    def command(self, command: str, text: str = "") -> list[AnyReply]:
        """The user runs a Slack slash command."""
        return self.send(self.message(kind="command", command=command, text=text))

    def press(self, action: str | Button, value: str = "") -> list[AnyReply]:
        """The user presses a button (or a quick reply, or a postback)."""
        if isinstance(action, Button):
            value = action.value
            action = action.action
        return self.send(self.message(kind="action", action=action, value=value))

    def submit(self, action: str, form: Mapping[str, str]) -> list[AnyReply]:
        """The user submits a modal."""
        return self.send(self.message(kind="submission", action=action, form=dict(form)))

    def last_buttons(self) -> tuple[Button, ...]:
        """The buttons of the last reply this user saw that had any."""
        for reply in reversed(self.replies):
            if buttons_of(reply):
                return buttons_of(reply)
        return ()

    def texts(self, replies: Sequence[AnyReply] | None = None) -> list[str]:
        return [
            r.text if isinstance(r, Reply) else str(getattr(r, "text", "") or "")
            for r in (self.replies if replies is None else replies)
        ]

    def close(self) -> None:
        self.sessions.store.close()
        self.scheduler.close()
