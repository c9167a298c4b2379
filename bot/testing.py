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
    bob.press(bob.last_buttons()[0])  # the poll was posted in the channel: Bob sees it

What one user's turn posts for the whole channel (:func:`seen_by_channel`) is among the
:attr:`~Conversation.replies` of every conversation of that channel; an ephemeral reply only
among its user's.

Threads (Slack): a bot of ``scope = "thread"`` gets a state per thread. A top-level message is
the root of its own thread; :meth:`Conversation.in_thread` gives the same user in a thread
(replies, status, prompts and title are kept per thread), and :meth:`Conversation.start_thread`
opens an assistant thread (``Message(kind="thread_started")``)::

    chat = Conversation(AssistantBot())
    chat.start_thread(channel="C0GENERAL")
    assert chat.prompts[0][0] == "Summarise"
    chat.say("hello")                # in the assistant thread
    assert chat.threads[chat.thread][-1].text == "Hi!"

Timers: a turn's :class:`~bot.timers.Timer` is kept with the state as the edges keep it;
:meth:`Conversation.advance` moves this conversation's clock forward and fires what came due,
in order, each as the ``Message(kind="timer")`` turn the edges would run::

    chat = Conversation(TodoBot())
    chat.say("add water the plants")
    chat.say("remind me about 1 in 10 minutes")
    assert chat.advance(600)[0].text.startswith("Reminder")

WhatsApp (``platform="whatsapp"``): a free-form reply more than 24 hours after the user's last
message (a timer's) does not reach them; the bot gets it back as the edge gives it back, a
``Message(kind="effect", action=bot.WINDOW_CLOSED)`` follow-up, and a ``Template`` goes::

    chat = Conversation(MyBot(), platform="whatsapp")
    chat.say("remind me tomorrow")
    assert isinstance(chat.advance(25 * 3600)[0], Template)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bot import timers, transcripts
from bot.assistant import Prompts, Status, Title
from bot.base import Effect, effect_key
from bot.messages import Message
from bot.replies import (
    WINDOW_CLOSED,
    WINDOW_ERROR,
    WINDOW_SECONDS,
    AnyReply,
    Button,
    Reply,
    Template,
    buttons_of,
)
from bot.spec import MAX_FOLLOW_UPS, BotSpec, run_effect, run_streamed
from bot.transcripts import Difference, Transcript

#: :meth:`Conversation.advance` stops after this many fires (a cron every minute for a week).
MAX_FIRES = 10_080


def seen_by_channel(reply: AnyReply, message: Message) -> bool:
    """Whether Slack shows ``reply`` to everyone in the channel of ``message`` (the turn's):
    ``visibility="in_channel"``; or, without a visibility, a reply to anything but a slash
    command or a button (those answer ephemerally by default). Never in a DM or on Messenger
    (a "channel" there is one user's), never a modal."""
    if message.platform != "slack" or str(message.conversation or "").startswith("D"):
        return False
    if isinstance(reply, Reply):
        if reply.visibility is not None:
            return reply.visibility == "in_channel"
    elif type(reply).__name__ not in ("Cards", "Media"):
        return False
    return message.kind not in ("command", "action")


class Conversation:
    """One conversation with ``bot``, held in memory.

    Args:
        bot: the bot under test.
        platform: what ``Message.platform`` says (some bots render per platform).
        run_effects: run ``@effect`` methods (with their follow-up turns) after each turn;
            ``False`` keeps them in :attr:`effects` instead.
        clock: the time events happen at (:meth:`advance` moves it forward).
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
        self._clock = clock
        self._ahead = [0.0]
        #: The Slack thread this user is in (its root's ts; ``None``: the channel's top
        #: level, where each message is the root of a thread of its own).
        self.thread: str | None = None
        #: The root of the thread of the last message (the thread scope's key).
        self._root: str | None = None
        self._roots = [0]  # how many thread roots were made (shared with as_user's)
        #: Every reply given in a thread (or starting one), by the thread's root.
        self.threads: dict[str, list[AnyReply]] = {}
        #: Per thread: its assistant status ("": none; a message of the bot clears it), its
        #: suggested prompts and its title, as the last turn there set them.
        self._statuses: dict[str | None, str] = {}
        self._prompts: dict[str | None, tuple[tuple[str, str], ...]] = {}
        self._titles: dict[str | None, str] = {}
        #: Who set each pending timer (its id -> user, channel), as a fire's delivery knows.
        self._owners: dict[str, tuple[str, str]] = {}
        #: The thread each pending timer was set in.
        self._timer_roots: dict[str, str | None] = {}
        #: WhatsApp: when each user last wrote in each conversation (the 24-hour window).
        self._said: dict[tuple[str, str], float] = {}
        #: Every stored state, as the store would hold it (JSON), by scope and identity; shared
        #: with the conversations :meth:`as_user` makes.
        self.store: dict[tuple[str, ...], str] = {}
        #: Every reply this user has seen so far: the replies to their turns, and what other
        #: users' turns posted for the whole channel (:func:`seen_by_channel`).
        self.replies: list[AnyReply] = []
        self.effects: list[tuple[str, Mapping[str, Any]]] = []  #: every effect asked for
        #: Each streamed answer (``@effect(..., stream=True)``) this user was sent, whole, as
        #: the platform shows it at the end (closed with an error line if it failed).
        self.streamed: list[str] = []
        self._events = [0]
        self._members: list[Conversation] = [self]
        #: What each channel's users all see (shared with :meth:`as_user`'s conversations).
        self._channels: dict[str, list[AnyReply]] = {}

    def as_user(self, user: str, conversation: str | None = None) -> Conversation:
        """Another user (in ``conversation``, default this one's channel) of the same
        workspace, over the same stored states and event counter."""
        other = Conversation.__new__(Conversation)
        other.spec, other.platform, other.workspace = self.spec, self.platform, self.workspace
        other.user, other.conversation = user, conversation or self.conversation
        other.run_effects, other._clock, other._ahead = self.run_effects, self._clock, self._ahead
        other.store, other._events, other._owners = self.store, self._events, self._owners
        other.thread, other._root, other.threads = None, None, self.threads
        other._statuses, other._prompts, other._titles = (
            self._statuses, self._prompts, self._titles,
        )  # fmt: skip
        other._timer_roots, other._roots = self._timer_roots, self._roots
        other._said = self._said
        # A user who joins sees what was posted in the channel before, as on Slack.
        other.replies, other.effects = list(self._channels.get(other.conversation, ())), []
        other.streamed = []
        other._members, other._channels = self._members, self._channels
        self._members.append(other)
        return other

    def _seen(self, replies: list[AnyReply], message: Message) -> None:
        """``replies`` of this user's turn: theirs, and the channel's where Slack posts them
        for everyone."""
        self.replies.extend(replies)
        shared = [r for r in replies if seen_by_channel(r, message)]
        if not shared:
            return
        self._channels.setdefault(self.conversation, []).extend(shared)
        for other in self._members:
            if other is not self and other.conversation == self.conversation:
                other.replies.extend(shared)

    def clock(self) -> float:
        """Now, as this conversation's events see it (the clock, moved by :meth:`advance`)."""
        return self._clock() + self._ahead[0]

    def _where(self, scope: str) -> tuple[str, ...]:
        """Who shares a scope's state, by the edges' rule (on Messenger, the channel is the
        page and its user)."""
        if scope == "user":
            return ("user", self.workspace, self.user)
        if scope == "channel" and self.platform == "slack":
            return ("channel", self.workspace, self.conversation)
        if scope == "thread":
            if self.platform == "slack" and self._root is not None:
                return ("thread", self.workspace, self.conversation, self._root)
            scope = "conversation"  # no thread: the conversation's state
        return (scope, self.workspace, self.conversation, self.user)

    # -- threads ---------------------------------------------------------------------------------

    def in_thread(self, root: str | None) -> Conversation:
        """This user in the thread of ``root`` (a ts; ``None``: back to the channel's top
        level); returns this conversation."""
        self.thread = root
        self._root = root
        return self

    def start_thread(self, channel: str | None = None, root: str | None = None) -> list[AnyReply]:
        """The user opens an assistant thread (viewing ``channel``): the bot gets
        ``Message(kind="thread_started")`` in a new thread, which this user is then in."""
        self.in_thread(root or self._new_ts())
        payload = {"channel": channel, "channel_id": channel, "team_id": self.workspace}
        return self.send(self._message(kind="thread_started", payload=payload))

    def change_context(self, channel: str | None) -> list[AnyReply]:
        """The user of an assistant thread moves to another channel."""
        payload = {"channel": channel, "channel_id": channel, "team_id": self.workspace}
        return self.send(self._message(kind="thread_context", payload=payload))

    def _new_ts(self) -> str:
        self._roots[0] += 1
        return f"{int(self.clock())}.{self._roots[0]:06d}"

    @property
    def status(self) -> str:
        """The assistant status of this user's thread ("" when none is shown)."""
        return self._statuses.get(self.thread, "")

    @property
    def prompts(self) -> tuple[tuple[str, str], ...]:
        """The suggested prompts of this user's thread, ``(title, message)`` pairs."""
        return self._prompts.get(self.thread, ())

    @property
    def title(self) -> str:
        """The title of this user's assistant thread."""
        return self._titles.get(self.thread, "")

    def _threaded(self, replies: list[AnyReply], message: Message) -> None:
        """Keep what a turn set in its thread: replies, status, prompts, title."""
        for reply in replies:
            if isinstance(reply, Status):
                self._statuses[self.thread] = reply.text
            elif isinstance(reply, Prompts):
                self._prompts[self.thread] = tuple(reply.prompts)
            elif isinstance(reply, Title):
                self._titles[self.thread] = reply.text
            else:
                self._statuses[self.thread] = ""  # Slack clears it when the app replies
                root = self.thread or (
                    self._root if isinstance(reply, Reply) and reply.in_thread else None
                )
                if root is not None and self.platform == "slack":
                    self.threads.setdefault(root, []).append(reply)

    @property
    def stored(self) -> Any:
        """This conversation's state as stored (JSON; a list of one per scope for a bot of
        several), ``None`` when nothing is."""
        values = [self._stored(scope) for scope in self.spec.scopes]
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

    def _stored(self, scope: str) -> str | None:
        """A scope's state as stored, without the timers kept beside it."""
        value = self.store.get(self._where(scope))
        if value is None:
            return None
        return json.dumps(timers.split(json.loads(value))[0])

    def _load(self) -> Any:
        values = [self._stored(scope) for scope in self.spec.scopes]
        loaded = [None if v is None else json.loads(v) for v in values]
        return self.spec.load_state(loaded if self.spec.multi else loaded[0])

    @property
    def pending_timers(self) -> list[dict[str, Any]]:
        """This conversation's pending timers (name, id, due, args, ...), soonest first."""
        value = self.store.get(self._where(self.spec.scopes[0]))
        return timers.pending(None if value is None else json.loads(value))

    def _table(self) -> dict[str, dict[str, Any]]:
        value = self.store.get(self._where(self.spec.scopes[0]))
        return timers.split(None if value is None else json.loads(value))[1]

    def send(self, message: Message) -> list[AnyReply]:
        """Run one turn (and the follow-ups of its effects); return the replies, in order."""
        self._events[0] += 1
        if message.kind in ("text", "command", "action", "submission"):
            when = message.time if message.time is not None else self.clock()
            self._said[(self.user, self.conversation)] = when
        return self._turn(message, f"test:{self._events[0]}", depth=0)

    def _turn(self, message: Message, idempotency_key: str, *, depth: int) -> list[AnyReply]:
        table, cancelled, for_bot = timers.before_turn(self._table(), message)
        if for_bot is None:
            return []  # a fire whose timer is gone: no turn
        message = for_bot
        outcome = self.spec.outcome(self._load(), message)
        # Stored as JSON, as the real stores do: a state that does not survive it fails here.
        dumped = self.spec.dump_state(outcome.state)
        values = list(dumped) if self.spec.multi else [dumped]
        now = message.time if message.time is not None else self.clock()
        table, changes = timers.after_turn(
            table, outcome.effects, idempotency_key=idempotency_key, now=now, cancelled=cancelled
        )
        for entry in changes.scheduled:
            self._owners[str(entry["id"])] = (self.user, self.conversation)
            self._timer_roots[str(entry["id"])] = self._root
        values[0] = timers.join(values[0], table)
        for scope, value in zip(self.spec.scopes, values, strict=True):
            self.store[self._where(scope)] = json.dumps(value)
        replies = list(outcome.replies)
        replies, unsent = self._window(replies, now)
        self._seen(replies, message)
        self._threaded(replies, message)
        closed = message.kind == "effect" and message.action == WINDOW_CLOSED
        if unsent and not closed and depth + 1 <= MAX_FOLLOW_UPS:
            # As the WhatsApp edge does: the refused replies come back as a follow-up turn.
            told = Message(
                kind="effect", action=WINDOW_CLOSED, error=WINDOW_ERROR,
                payload={"unsent": [r.to_dict() for r in unsent]},
                platform=message.platform, workspace=message.workspace,
                conversation=message.conversation, user=message.user, time=message.time,
            )  # fmt: skip
            replies += self._turn(told, f"window:{idempotency_key}", depth=depth + 1)
        effects = [fx for fx in outcome.effects if isinstance(fx, Effect)]
        for index, fx in enumerate(effects):
            self.effects.append((fx.name, fx.args))
            if not self.run_effects:
                continue
            # The edges' own effect runner: same call, same follow-up message, same limit.
            key = effect_key(idempotency_key, index, fx.name)
            if fx.name in self.spec.streams:  # the streamed answer, whole
                shown, follow_up = run_streamed(self.spec, fx, key, message)
                self.streamed.append(shown)
            else:
                follow_up = run_effect(self.spec, fx, key, message)
            if follow_up is not None and depth + 1 <= MAX_FOLLOW_UPS:
                replies += self._turn(follow_up, f"followup:{key}", depth=depth + 1)
        return replies

    def _window(self, replies: list[AnyReply], now: float) -> tuple[list[AnyReply], list[AnyReply]]:
        """On WhatsApp, the replies delivered at ``now`` and those refused: a free-form reply
        more than 24 hours after the user's last message (a timer's, a slow effect's) does not
        reach them; a :class:`~bot.replies.Template` does."""
        said = self._said.get((self.user, self.conversation))
        if self.platform != "whatsapp" or said is None or now - said <= WINDOW_SECONDS:
            return replies, []
        sent: list[AnyReply] = [r for r in replies if isinstance(r, Template)]
        return sent, [r for r in replies if not isinstance(r, Template)]

    def advance(self, seconds: float) -> list[AnyReply]:
        """Move the clock ``seconds`` forward and fire every timer due by then (of every user
        sharing this store), soonest first, each once; return their turns' replies."""
        self._ahead[0] += seconds
        now = self.clock()
        fired: list[AnyReply] = []
        for _ in range(MAX_FIRES):
            entry = self._next_due(now)
            if entry is None:
                return fired
            user, channel = self._owners.get(str(entry["id"]), (self.user, self.conversation))
            # The timer's owner sees its turn's replies, whoever moved the clock.
            owners = [m for m in self._members if (m.user, m.conversation) == (user, channel)]
            who = self if self in owners else (owners[0] if owners else self.as_user(user, channel))
            at = float(entry["due"])
            who._root = self._timer_roots.get(str(entry["id"]), who._root)
            message = Message(
                kind="timer", action=str(entry["name"]), value=str(entry["id"]),
                platform=self.platform, workspace=self.workspace,
                conversation=channel, user=user, time=at, thread=who.thread,
            )  # fmt: skip
            fired += who._turn(message, f"timer:{entry['id']}:{round(at * 1000)}", depth=0)
        raise RuntimeError(f"more than {MAX_FIRES} timers fired in one advance")

    def _next_due(self, now: float) -> dict[str, Any] | None:
        """The soonest timer due by ``now`` in the whole store."""
        found = [
            entry
            for value in self.store.values()
            for entry in timers.split(json.loads(value))[1].values()
            if float(entry["due"]) <= now
        ]
        return min(found, key=lambda e: float(e["due"])) if found else None

    def _message(self, **fields: Any) -> Message:
        # A top-level message is the root of its own thread (the thread scope's key).
        self._root = self.thread if self.thread is not None else self._new_ts()
        thread = self.thread if self.platform == "slack" else None
        return Message(platform=self.platform, user=self.user,
                       workspace=self.workspace, conversation=self.conversation,
                       time=self.clock(), thread=thread, **fields)  # fmt: skip

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


def replay(bot: Any, transcript: str | Path | Mapping[str, Any] | Transcript) -> list[Difference]:
    """Run a transcript's messages again against ``bot`` (from an empty store, in order, as
    their users and in their channels, with their recorded event ids and times) and return
    every turn whose replies or first-scope state differ from the recording (``[]``: the
    same). Effects are not run: their recorded follow-up turns bring their results back.
    A turn that raises is a difference too (``what="error"``)."""
    recorded = transcript if isinstance(transcript, Transcript) else transcripts.load(transcript)
    first = recorded.turns[0] if recorded.turns else None
    chat = Conversation(
        bot,
        platform=recorded.platform,
        workspace=recorded.workspace,
        user=first.user if first else "U0TEST",
        conversation=first.conversation if first else "D0TEST",
        run_effects=False,
    )
    differences = []
    for number, turn in enumerate(recorded.turns, 1):
        who = chat.as_user(turn.user, turn.conversation)
        message = Message.from_dict(
            {**turn.message, "platform": recorded.platform, "workspace": recorded.workspace,
             "user": turn.user, "conversation": turn.conversation}
        )  # fmt: skip
        what = transcripts.said(turn.message)
        try:
            replies = who._turn(message, turn.idempotency_key, depth=0)
        except Exception as exc:  # the bot's error is the difference
            differences.append(
                Difference(number, "error", None, f"{type(exc).__name__}: {exc}", what)
            )
            continue
        got = [r.to_dict() for r in replies]
        if got != [dict(r) for r in turn.replies]:
            differences.append(Difference(number, "replies", list(turn.replies), got, what))
        value = who.store.get(who._where(who.spec.scopes[0]))
        state = timers.split(None if value is None else json.loads(value))[0]
        if state != turn.state:
            differences.append(Difference(number, "state", turn.state, state, what))
    return differences
