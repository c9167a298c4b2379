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
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

from bot.messages import Message, freeze, thaw
from bot.replies import REPLY_KINDS, AnyReply, Reply, buttons_of

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


def effect(name: str, *, slow: bool = False) -> Callable[[EffectFunction], EffectFunction]:
    """Mark a method of a :class:`Bot` as the runner of effect ``name``.

    ``slow``: hand it to the deferral (a separate invocation) so the platform's ack is not kept
    waiting; a fast one runs right after the replies are sent. The method gets
    ``(self, args, call)`` and returns a JSON-compatible result (``None`` is fine); it may do
    I/O. It raising is reported to the follow-up turn as ``Message.error``.
    """

    def mark(fn: EffectFunction) -> EffectFunction:
        fn.__effect__ = (name, slow)  # type: ignore[attr-defined]
        return fn

    return mark


@dataclass(frozen=True, slots=True)
class Outcome(Generic[S]):
    """What a turn returns: the new state, replies in order, and effects to run after the
    commit. ``(state, replies)`` and ``(state, replies, effects)`` tuples mean the same."""

    state: S
    replies: Sequence[AnyReply | str] = ()
    effects: Sequence[Effect] = ()


@dataclass(frozen=True, slots=True)
class Checked:
    """An :class:`Outcome` once checked: every reply a reply object, every effect known."""

    state: Any
    replies: tuple[AnyReply, ...]
    effects: tuple[Effect, ...]


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
    """

    commands: ClassVar[tuple[str, ...]] = ()
    actions: ClassVar[tuple[str, ...]] = ()
    action_prefix: ClassVar[str | None] = None
    schema_version: ClassVar[int] = 1
    migrations: ClassVar[Mapping[int, Callable[[Any], Any]]] = {}

    def initial_state(self) -> S:
        """The state of a conversation that has none yet (or whose state expired)."""
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


class StateVersionError(RuntimeError):
    """The stored state is of a schema newer than this bot's: written by newer code. It is
    refused (the event becomes a dead letter to replay once that code is back), never
    migrated backwards or overwritten."""


@dataclass(frozen=True, slots=True)
class BotSpec:
    """What the edges need to know about a bot, read once from it (defaults filled in)."""

    bot: Any
    name: str
    commands: frozenset[str]
    actions: frozenset[str]
    action_prefix: str | None
    schema_version: int
    migrations: Mapping[int, Callable[[Any], Any]]
    effects: Mapping[str, tuple[Callable[..., Any], bool]]

    @classmethod
    def of(cls, bot: Any) -> BotSpec:
        """Read and check a bot's declarations.

        Raises:
            BotTypeError: no ``turn``, or declarations of the wrong shape (a missing migration
                step, a command without its slash...).
        """
        name = type(bot).__qualname__
        if not callable(getattr(bot, "turn", None)):
            raise BotTypeError(f"{name} has no turn(state, message) method")
        commands = _names(bot, "commands")
        for command in commands:
            if not command.startswith("/") or " " in command:
                raise BotTypeError(f"{name}.commands: {command!r} must look like '/name'")
        actions = _names(bot, "actions")
        prefix = getattr(bot, "action_prefix", None)
        if prefix is not None and (not isinstance(prefix, str) or not prefix):
            raise BotTypeError(f"{name}.action_prefix must be a non-empty string or None")
        version = getattr(bot, "schema_version", 1)
        if type(version) is not int or version < 1:
            raise BotTypeError(f"{name}.schema_version must be an int >= 1, not {version!r}")
        migrations = dict(getattr(bot, "migrations", None) or {})
        missing = [n for n in range(1, version) if not callable(migrations.get(n))]
        if missing:
            raise BotTypeError(
                f"{name}.schema_version is {version}, so migrations needs a step from each "
                f"older version; missing: {missing}"
            )
        effects: dict[str, tuple[Callable[..., Any], bool]] = {}
        for attribute in dir(type(bot)):
            marked = getattr(getattr(type(bot), attribute, None), "__effect__", None)
            if marked is not None:
                effect_name, slow = marked
                effects[effect_name] = (getattr(bot, attribute), slow)
        return cls(
            bot=bot,
            name=name,
            commands=frozenset(commands),
            actions=frozenset(actions),
            action_prefix=prefix,
            schema_version=version,
            migrations=migrations,
            effects=effects,
        )

    def handles_command(self, command: str) -> bool:
        return command in self.commands

    def handles_action(self, action: str) -> bool:
        return action in self.actions or bool(
            self.action_prefix and action.startswith(self.action_prefix)
        )

    def is_slow(self, message: Message) -> bool:
        is_slow = getattr(self.bot, "is_slow", None)
        return bool(is_slow(message)) if callable(is_slow) else False

    def is_slow_effect(self, name: str) -> bool:
        return self.effects.get(name, (None, False))[1]

    # -- state ---------------------------------------------------------------------------------

    def initial_state(self) -> Any:
        initial = getattr(self.bot, "initial_state", None)
        return initial() if callable(initial) else {}

    def load_state(self, stored: Any) -> Any:
        """The stored state, migrated to this bot's schema (``None``: a new conversation).

        Raises:
            StateVersionError: the state is of a newer schema than this bot's.
        """
        if stored is None:
            return self.initial_state()
        version, state = 1, stored
        if (
            isinstance(stored, dict)
            and SCHEMA_KEY in stored
            and set(stored)
            == {
                SCHEMA_KEY,
                "state",
            }
        ):
            version, state = int(stored[SCHEMA_KEY]), stored["state"]
        if version > self.schema_version:
            raise StateVersionError(
                f"stored state has schema {version}, but {self.name} knows schema "
                f"{self.schema_version} at most: newer code wrote it; refused, not migrated"
            )
        while version < self.schema_version:
            state = self.migrations[version](state)
            version += 1
        return state

    def dump_state(self, state: Any) -> Any:
        """The state as stored: as is at schema 1, with its schema version from 2 on."""
        if self.schema_version == 1:
            return state
        return {SCHEMA_KEY: self.schema_version, "state": state}

    # -- the turn ------------------------------------------------------------------------------

    def outcome(self, state: Any, message: Message) -> Checked:
        """Run the bot's turn and check what it returned.

        Raises:
            BotTypeError: the result is not an ``Outcome`` (or a ``(state, replies[,
                effects])`` tuple), a reply is of an unknown kind, a button or modal names an
                action the bot does not declare, or an effect has no ``@effect`` method.
        """
        result = self.bot.turn(state, message)
        if isinstance(result, Outcome):
            outcome = result
        elif isinstance(result, tuple) and len(result) in (2, 3):
            effects = result[2] if len(result) == 3 else ()
            outcome = Outcome(result[0], result[1], () if effects is None else effects)
        else:
            raise BotTypeError(
                f"{self.name}.turn returned {_shown(result)}; expected Outcome(state, replies, "
                "effects) or a (state, replies) tuple"
            )
        replies: Any = outcome.replies
        if isinstance(replies, (str, *REPLY_KINDS)):
            replies = (replies,)  # one reply on its own
        if not isinstance(replies, Sequence):
            raise BotTypeError(
                f"{self.name}.turn returned replies {_shown(replies)}; expected a list of "
                "Reply, Cards, Media, Modal, FormErrors or str"
            )
        checked: list[AnyReply] = []
        for item in replies:
            reply: AnyReply = Reply(item) if isinstance(item, str) else item
            if not isinstance(reply, REPLY_KINDS):
                raise BotTypeError(
                    f"{self.name}.turn returned a reply of unknown kind {_shown(reply)}; "
                    "expected Reply, Cards, Media, Modal, FormErrors or str"
                )
            for button in buttons_of(reply):
                if button.url is None and not self.handles_action(button.action):
                    raise BotTypeError(
                        f"{self.name}: button {button.label!r} has action {button.action!r}, "
                        "which the bot does not declare (add it to actions, or match "
                        "action_prefix); without that its press would never reach the bot"
                    )
            if getattr(reply, "kind", "") == "media" and getattr(reply, "media", "") not in (
                "image",
                "video",
                "audio",
                "file",
            ):
                raise BotTypeError(
                    f"{self.name}: Media kind {getattr(reply, 'media', '')!r}; expected image, "
                    "video, audio or file"
                )
            action = getattr(reply, "action", None)
            if getattr(reply, "kind", "") == "modal" and not self.handles_action(str(action)):
                raise BotTypeError(
                    f"{self.name}: modal action {action!r} is not declared in actions or "
                    "action_prefix; its submission would never reach the bot"
                )
            checked.append(reply)
        effects = outcome.effects
        if isinstance(effects, Effect):
            effects = (effects,)
        if not isinstance(effects, Sequence):
            raise BotTypeError(f"{self.name}.turn returned effects {_shown(effects)}")
        for item in effects:
            if not isinstance(item, Effect):
                raise BotTypeError(
                    f"{self.name}.turn returned effect {_shown(item)}; expected Effect(name, args)"
                )
            if item.name not in self.effects:
                raise BotTypeError(
                    f"{self.name}.turn asked for effect {item.name!r}, but no method is marked "
                    f"@effect({item.name!r})"
                )
        return Checked(outcome.state, tuple(checked), tuple(effects))


def _names(bot: Any, attribute: str) -> tuple[str, ...]:
    value = getattr(bot, attribute, ()) or ()
    if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
        raise BotTypeError(
            f"{type(bot).__qualname__}.{attribute} must be a tuple of non-empty strings, "
            f"not {value!r}"
        )
    return tuple(value)


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:80]}{'…' if len(text) > 80 else ''}"
