"""What the runtime knows about a bot, read once from its declarations: :class:`BotSpec`
(routing, slowness, state schema and migrations, the checked outcome of a turn), and
:func:`run_effect` (an effect's call and the message that brings its result back). The edges'
delivery pipeline and ``bot.testing`` both run a bot through this module, so they cannot
disagree on what a turn or an effect does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.base import (
    SCHEMA_KEY,
    SCOPES,
    BotTypeError,
    Checked,
    Effect,
    EffectCall,
    Outcome,
    Scopes,
    Streamed,
)
from bot.messages import Message
from bot.replies import REPLY_KINDS, AnyReply, Reply, buttons_of
from bot.timers import CancelTimer, Timer

#: How many effect → follow-up turn → effect rounds one event may start: a bot whose every
#: follow-up asks for another effect stops here instead of looping forever.
MAX_FOLLOW_UPS = 10

#: The bot the edges run when ``BOT`` is unset: the todo bot (``bot.todo:bot`` before it moved
#: to ``examples``; that name still loads it).
DEFAULT_BOT = "examples.todo:bot"

_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_DEFAULT = object()


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
    #: The scopes it keeps state in, in its declared order (the first holds event records).
    scopes: tuple[str, ...] = ("conversation",)
    #: Whether its turn gets a :class:`Scopes` (it declared a tuple).
    multi: bool = False
    #: The namespace of its stored items (``None``: the layout before namespaces).
    namespace: str | None = None
    #: Its streamed effects (``@effect(..., stream=True)``), by name.
    streams: Mapping[str, Streamed] = field(default_factory=dict)

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
        streams: dict[str, Streamed] = {}
        for attribute in dir(type(bot)):
            marked = getattr(getattr(type(bot), attribute, None), "__effect__", None)
            if marked is not None:
                effect_name, slow = marked
                effects[effect_name] = (getattr(bot, attribute), slow)
                streamed = getattr(getattr(type(bot), attribute), "__stream__", None)
                if isinstance(streamed, Streamed):
                    streams[effect_name] = streamed
        scopes, multi = _scopes_of(bot, name)
        namespace = getattr(bot, "namespace", _DEFAULT)
        if namespace is _DEFAULT:
            namespace = type(bot).__name__
            if not _NAMESPACE.fullmatch(namespace):
                raise BotTypeError(
                    f"{name}: the class name cannot name its stored items; declare "
                    f"namespace = '...' (1-64 characters of {_NAMESPACE.pattern})"
                )
        elif namespace is not None and (
            not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace)
        ):
            raise BotTypeError(
                f"{name}.namespace must be None or 1-64 characters of {_NAMESPACE.pattern}, "
                f"not {namespace!r}"
            )
        return cls(
            scopes=scopes,
            multi=multi,
            namespace=namespace,
            bot=bot,
            name=name,
            commands=frozenset(commands),
            actions=frozenset(actions),
            action_prefix=prefix,
            schema_version=version,
            migrations=migrations,
            effects=effects,
            streams=streams,
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

    @property
    def cancels(self) -> bool:
        """Whether a user message may stop one of its streamed answers."""
        return any(s.cancel_on_message for s in self.streams.values())

    # -- state ---------------------------------------------------------------------------------

    def initial_state(self) -> Any:
        initial = getattr(self.bot, "initial_state", None)
        return initial() if callable(initial) else {}

    def load_state(self, stored: Any) -> Any:
        """The stored state, migrated to this bot's schema (``None``: a new conversation). A
        multi-scope bot's is a sequence of each scope's stored state (``None`` for a new one),
        in :attr:`scopes` order, and comes back as :class:`Scopes`.

        Raises:
            StateVersionError: the state is of a newer schema than this bot's.
        """
        if self.multi:
            values = list(stored) if stored is not None else [None] * len(self.scopes)
            initial: Any = None
            states: dict[str, Any] = {}
            for scope, value in zip(self.scopes, values, strict=True):
                if value is None:
                    if initial is None:
                        initial = self.initial_state()
                    states[scope] = (
                        getattr(initial, scope) if isinstance(initial, Scopes) else initial
                    )
                    if not isinstance(initial, Scopes):
                        initial = None  # a fresh value for each scope
                else:
                    states[scope] = self._load_one(value)
            return Scopes(**states)
        return self._load_one(stored)

    def _load_one(self, stored: Any) -> Any:
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
        """The state as stored: as is at schema 1, with its schema version from 2 on (a
        multi-scope bot's: a tuple, one per scope in :attr:`scopes` order).

        Raises:
            BotTypeError: a multi-scope bot's turn returned a state that is not ``Scopes``.
        """
        if self.multi:
            if not isinstance(state, Scopes):
                raise BotTypeError(
                    f"{self.name} declares scopes {self.scopes}, so its turn returns "
                    f"Scopes(...) as the state, not {_shown(state)}"
                )
            return tuple(self._dump_one(getattr(state, scope)) for scope in self.scopes)
        return self._dump_one(state)

    def _dump_one(self, state: Any) -> Any:
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
            if getattr(reply, "kind", "") == "template" and message.platform != "whatsapp":
                raise BotTypeError(
                    f"{self.name}: a Template is WhatsApp's alone, not {message.platform!r}'s "
                    "(answer with a Reply there)"
                )
            action = getattr(reply, "action", None)
            if getattr(reply, "kind", "") == "modal" and not self.handles_action(str(action)):
                raise BotTypeError(
                    f"{self.name}: modal action {action!r} is not declared in actions or "
                    "action_prefix; its submission would never reach the bot"
                )
            checked.append(reply)
        effects = outcome.effects
        if isinstance(effects, Effect | Timer | CancelTimer):
            effects = (effects,)
        if not isinstance(effects, Sequence):
            raise BotTypeError(f"{self.name}.turn returned effects {_shown(effects)}")
        for item in effects:
            if isinstance(item, Timer | CancelTimer):
                continue
            if not isinstance(item, Effect):
                raise BotTypeError(
                    f"{self.name}.turn returned effect {_shown(item)}; expected "
                    "Effect(name, args), Timer(name, ...) or CancelTimer(name)"
                )
            if item.name not in self.effects:
                raise BotTypeError(
                    f"{self.name}.turn asked for effect {item.name!r}, but no method is marked "
                    f"@effect({item.name!r})"
                )
        return Checked(outcome.state, tuple(checked), tuple(effects))


def _scopes_of(bot: Any, name: str) -> tuple[tuple[str, ...], bool]:
    value = getattr(bot, "scope", "conversation")
    multi = not isinstance(value, str)
    scopes = (value,) if isinstance(value, str) else tuple(value) if value else ()
    if (
        not scopes
        or any(s not in SCOPES for s in scopes)
        or len(set(scopes)) != len(scopes)
        or (multi and not isinstance(value, (tuple, list)))
    ):
        raise BotTypeError(
            f"{name}.scope must be one of {SCOPES} or a tuple of distinct ones, not {value!r}"
        )
    return scopes, multi


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


def run_effect(spec: BotSpec, effect: Effect, key: str, origin: Message) -> Message | None:
    """Call the bot's ``@effect`` method for ``effect`` (``key``: its idempotency key;
    ``origin``: the message whose turn asked for it) and return the follow-up message that
    brings its result (or its error, by class and message) back to the bot, ``None`` when the
    effect asks for no follow-up. Never raises for the effect's own failure."""
    function = spec.effects.get(effect.name)
    result: Any = None
    error: str | None = None
    if function is None:  # the bot changed between the turn and now
        error = f"no @effect({effect.name!r}) method"
    else:
        try:
            result = function[0](effect.args, EffectCall(effect.name, key, origin))
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
    if not effect.follow_up:
        return None
    return Message(
        kind="effect",
        action=effect.name,
        result=result,
        error=error,
        platform=origin.platform,
        workspace=origin.workspace,
        conversation=origin.conversation,
        user=origin.user,
        time=origin.time,
        thread=origin.thread,
    )


#: What closes a streamed answer whose effect failed (never the exception's text: that is the
#: bot's, and may hold anything).
STREAM_ERROR_LINE = "_(The answer stopped here: something went wrong. Please ask again.)_"
#: What closes a streamed answer a newer message of the user stopped.
STREAM_CANCELLED_LINE = "_(Stopped.)_"


def stream_chunks(result: Any) -> Iterator[str]:
    """The text chunks a streamed effect returned (a ``str`` is one chunk; empty ones are
    skipped).

    Raises:
        TypeError: it returned something else than text chunks.
    """
    if isinstance(result, str):
        yield result
        return
    if not isinstance(result, Iterable):
        raise TypeError(f"a streamed effect must return text chunks, not {type(result).__name__}")
    for piece in result:
        if not isinstance(piece, str):
            raise TypeError(f"a streamed effect yielded {type(piece).__name__}, not str")
        if piece:
            yield piece


def with_tail(text: str, tail: str) -> str:
    """A streamed answer's text as the user sees it once closed with ``tail`` (an error line)."""
    return f"{text}\n\n{tail}" if text and tail else text or tail


def run_streamed(
    spec: BotSpec, effect: Effect, key: str, origin: Message
) -> tuple[str, Message | None]:
    """A streamed effect run whole, as ``bot.testing`` runs it: the answer as the user sees it
    at the end (with the error line when it failed) and its follow-up message (``None`` when
    the effect asks for none). The edges stream it instead (``handlers.pipeline.streams``), with the
    same text and the same follow-up."""
    function = spec.effects.get(effect.name)
    text, error, tail = "", None, ""
    try:
        if function is None:
            raise LookupError(f"no @effect({effect.name!r}) method")
        for piece in stream_chunks(function[0](effect.args, EffectCall(effect.name, key, origin))):
            text += piece
    except Exception as exc:
        error, tail = f"{type(exc).__name__}: {exc}", STREAM_ERROR_LINE
    shown = with_tail(text, tail)
    if not effect.follow_up:
        return shown, None
    return shown, Message(
        kind="effect",
        action=effect.name,
        result=text,
        error=error,
        platform=origin.platform,
        workspace=origin.workspace,
        conversation=origin.conversation,
        user=origin.user,
        time=origin.time,
        thread=origin.thread,
    )
