"""The protocol a bot implements, and :class:`Bot`, a base class with the defaults.

A bot is a pure function from ``(state, message)`` to an :class:`Outcome`: the new state, the
replies, and the effects to run after the commit. The edges load the state before the turn,
commit the outcome exactly once per platform event, then send the replies and run the
effects. Because a lost race re-runs the turn, ``turn`` must not do I/O: whatever touches the
outside world is an :class:`Effect`, run by an ``@effect`` method after the commit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

from bot.messages import Message, freeze, thaw
from bot.replies import AnyReply

if TYPE_CHECKING:  # bot.timers builds on this module: for the annotations only
    from bot.timers import CancelTimer, Timer

S = TypeVar("S")

#: The key a state of schema 2 or later is stored under, with its schema version beside it.
#: A state stored without it is schema 1 (so a bot that never declares a schema stores its
#: state as is).
SCHEMA_KEY = "__schema__"


@dataclass(frozen=True, slots=True)
class Effect:
    """Something to do after the commit: call an API, file a ticket, ask an LLM.

    ``name`` selects the bot's ``@effect`` method; ``args`` (JSON-compatible) are passed to it.
    It runs at most once per event, after the turn is committed, with an idempotency key of its
    own (pass it on to the API you call, where it takes one). ``follow_up``: its result comes
    back as a turn, ``Message(kind="effect", action=name, result=...)`` (or ``error=...``),
    exactly once, on the same conversation.
    """

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    follow_up: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "args", freeze(dict(self.args)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "effect",
            "name": self.name,
            "args": thaw(self.args),
            "follow_up": self.follow_up,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Effect:
        return cls(
            name=str(data["name"]),
            args=dict(data.get("args") or {}),
            follow_up=bool(data.get("follow_up", True)),
        )


def effect_key(idempotency_key: str, index: int, name: str) -> str:
    """The effect's own idempotency key: stable across redeliveries and re-runs of the turn."""
    digest = hashlib.sha256(f"{idempotency_key}\x00{index}\x00{name}".encode()).hexdigest()
    return f"fx-{digest[:40]}"


@dataclass(frozen=True, slots=True)
class EffectCall:
    """What an ``@effect`` method receives besides the effect's args."""

    name: str
    key: str  #: the effect's idempotency key
    message: Message  #: the message whose turn asked for it


EffectFunction = Callable[[Any, Mapping[str, Any], EffectCall], Any]


def effect(
    name: str, *, slow: bool = False, stream: bool = False, cancel_on_message: bool = False
) -> Callable[[EffectFunction], EffectFunction]:
    """Mark a method of a :class:`Bot` as the runner of effect ``name``.

    ``slow``: hand it to the deferral (a separate invocation) so the platform's ack is not kept
    waiting; a fast one runs right after the replies are sent. The method gets
    ``(self, args, call)`` and returns a JSON-compatible result (``None`` is fine); it may do
    I/O. It raising is reported to the follow-up turn as ``Message.error``.

    ``stream``: the method returns an iterable of text chunks (a model's answer), streamed to
    the user as it comes: on Slack one message, built with ``chat.startStream`` /
    ``appendStream`` / ``stopStream`` in the origin's thread; on Messenger and Instagram a
    typing indicator, then the whole text. Exactly one streamed message per event, however
    often the effect is retried; the follow-up turn gets the full text as ``result``. It is
    always slow (handed off: the ack never waits for a model).
    ``cancel_on_message``: (with ``stream``) a user message in the same conversation (the
    same thread, for a thread-scope bot) while the answer streams stops it; the follow-up
    then has ``error="Cancelled"`` and the text streamed so far as ``result``.

    Raises:
        BotTypeError: ``cancel_on_message`` without ``stream``.
    """
    if cancel_on_message and not stream:
        raise BotTypeError(f"@effect({name!r}): cancel_on_message needs stream=True")

    def mark(fn: EffectFunction) -> EffectFunction:
        # A streamed answer lasts as long as the model talks: never in the webhook, before
        # its ack; always handed to the deferral.
        fn.__effect__ = (name, slow or stream)  # type: ignore[attr-defined]
        if stream:
            fn.__stream__ = Streamed(cancel_on_message=cancel_on_message)  # type: ignore[attr-defined]
        return fn

    return mark


@dataclass(frozen=True, slots=True)
class Streamed:
    """How a streamed effect (``@effect(..., stream=True)``) is run."""

    #: A user message in the same conversation (or thread) stops the answer.
    cancel_on_message: bool = False


#: Who shares a state (``Bot.scope``): one user in one channel (the default), everyone in a
#: channel (on Messenger: the page and its user), or one user across a workspace's channels
#: (on Messenger: the user of a page), or everyone in one Slack thread (a top-level message is
#: the root of its own thread; on Messenger, and without a thread root: the conversation).
SCOPES = ("conversation", "channel", "user", "thread")


@dataclass(frozen=True, slots=True)
class Scopes:
    """The states a multi-scope bot's turn gets and returns, one per scope it declared
    (``scope = ("channel", "conversation")``); a scope it did not declare stays ``None``.

    A turn returns the new value with :meth:`replace` (``state.replace(channel=...)``); every
    declared scope's state is committed with the event, atomically, or none is.
    """

    conversation: Any = None
    channel: Any = None
    user: Any = None
    thread: Any = None

    def replace(self, **states: Any) -> Scopes:
        unknown = set(states) - set(SCOPES)
        if unknown:
            raise BotTypeError(f"Scopes has no scope {sorted(unknown)}; expected {SCOPES}")
        return Scopes(**{name: states.get(name, getattr(self, name)) for name in SCOPES})


@dataclass(frozen=True, slots=True)
class Outcome(Generic[S]):
    """What a turn returns: the new state, replies in order, and effects to run after the
    commit (:class:`Effect`, :class:`~bot.Timer` and :class:`~bot.CancelTimer`).
    ``(state, replies)`` and ``(state, replies, effects)`` tuples mean the same."""

    state: S
    replies: Sequence[AnyReply | str] = ()
    effects: Sequence[Effect | Timer | CancelTimer] = ()


@dataclass(frozen=True, slots=True)
class Checked:
    """An :class:`Outcome` once checked: every reply a reply object, every effect known
    (an :class:`Effect`, or a ``bot.timers`` ``Timer`` / ``CancelTimer``)."""

    state: Any
    replies: tuple[AnyReply, ...]
    effects: tuple[Effect | Timer | CancelTimer, ...]


@runtime_checkable
class BotProtocol(Protocol):
    """The one method a bot must have. Everything else on :class:`Bot` is optional: the edges
    use its default when an object lacks it."""

    def turn(self, state: Any, message: Message) -> Any: ...


class Bot(Generic[S]):
    """Base class for bots: subclass it, set what it handles, write ``turn``.

    Class attributes:
        commands: Slack slash commands it handles (``"/todo"``).
        actions: ids of its buttons, quick replies, postbacks and modals.
        action_prefix: or any id starting with this (``"quiz:"``).
        schema_version: the version of the state's shape; raise it when the shape changes,
            and add the step from the previous version to ``migrations``.
        migrations: ``{n: f}``, ``f`` turns a schema ``n`` state into schema ``n + 1``; pure.
        scope: who shares the state: ``"conversation"`` (one user in one channel),
            ``"channel"`` (everyone in the channel: a poll), ``"user"`` (the user's, in every
            channel) or ``"thread"`` (everyone in one Slack thread: an assistant's); a tuple
            of them for a turn that reads and writes several at once (its
            state is then a :class:`Scopes`).
        namespace: (optional) the name the bot's items are stored under, so that bots sharing
            a table never see each other's state; default the class name. ``None``: the
            layout from before namespaces (how a bot keeps the items it wrote then).
    """

    commands: ClassVar[tuple[str, ...]] = ()
    actions: ClassVar[tuple[str, ...]] = ()
    action_prefix: ClassVar[str | None] = None
    schema_version: ClassVar[int] = 1
    migrations: ClassVar[Mapping[int, Callable[[Any], Any]]] = {}
    scope: ClassVar[str | tuple[str, ...]] = "conversation"

    def initial_state(self) -> S:
        """The state of a conversation that has none yet (or whose state expired); for a
        multi-scope bot, a :class:`Scopes` of each scope's initial state."""
        return {}  # type: ignore[return-value]

    def turn(self, state: S, message: Message) -> Outcome[S] | tuple[Any, ...]:
        """One turn. Pure: it may run more than once for one event; only one run counts."""
        raise NotImplementedError

    def is_slow(self, message: Message) -> bool:
        """Whether the turn for ``message`` is slow (decided before the ack, from the message
        alone): a slow turn is acked at once and runs in a separate invocation."""
        return False


class BotTypeError(TypeError):
    """A bot broke the API's contract (a malformed outcome, an unknown reply kind, an action
    it did not declare); the message says what and how to fix it."""
