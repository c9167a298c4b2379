"""What both platform edges share: the bot's shape and its turn as the session core runs it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from bot.messages import Message, Reply
from sessions import Turn

if TYPE_CHECKING:
    from handlers.settings import Settings


class Bot(Protocol):
    """A pure bot: ``turn`` computes, ``is_slow`` says (before the ack) whether to defer."""

    def turn(self, state: dict[str, Any], message: Message) -> tuple[Any, Sequence[Reply], Any]: ...

    def is_slow(self, message: Message) -> bool: ...


def bot_turn(bot: Bot, *, with_response: bool = False) -> Turn:
    """The bot's turn with replies as JSON-compatible dicts (they may be stored: the recorded
    response, sent-mark mode's outbox). ``with_response``: the replies are also the response
    a duplicate gets back (a slash command's ack body)."""

    def turn(state: dict[str, Any], message: Message) -> tuple[Any, list[Any], Any]:
        new_state, replies, _ = bot.turn(state, message)
        rendered = [r.to_dict() for r in replies]
        return new_state, rendered, rendered if with_response else None

    return turn


def replies_from(data: Sequence[dict[str, Any]]) -> list[Reply]:
    return [Reply.from_dict(r) for r in data]


class Edge(Protocol):
    def handle(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]: ...


E = TypeVar("E", bound=Edge)


def build_edge(edge: Callable[..., E], settings: Settings | None, **overrides: Any) -> E:
    """An edge as the environment configures it: the store ``SESSIONS_TABLE``/``SESSIONS_DB``
    select and the bot ``BOT`` names (the todo bot by default), unless ``overrides`` (tests,
    the local server) say otherwise."""
    from bot.todo import TodoBot
    from handlers.settings import from_env
    from handlers.store import store_from_settings
    from sessions import Sessions

    settings = settings or from_env()
    sessions = overrides.pop("sessions", None) or Sessions(store_from_settings(settings))
    bot = overrides.pop("bot", None) or (load_bot(settings.bot) if settings.bot else TodoBot())
    return edge(settings=settings, sessions=sessions, bot=bot, **overrides)


def load_bot(spec: str) -> Bot:
    """The bot named by ``BOT=package.module:attribute`` (an instance, or a class to call).

    Raises:
        ConfigError: the spec is malformed, or names nothing that has ``turn`` and ``is_slow``.
    """
    import importlib

    from handlers.settings import ConfigError

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"BOT={spec!r}: expected package.module:attribute")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"BOT={spec!r}: {exc}") from exc
    bot = target() if isinstance(target, type) else target
    if not (callable(getattr(bot, "turn", None)) and callable(getattr(bot, "is_slow", None))):
        raise ConfigError(f"BOT={spec!r}: needs turn(state, message) and is_slow(message)")
    return bot  # type: ignore[no-any-return]


class Entry(Generic[E]):
    """A Lambda entry point: the edge is built once per container and kept for warm calls.

    Inside Lambda it is built at import (cold start), so a missing secret fails loudly with
    the variable's name; elsewhere on first call. ``reset()`` forgets it (tests).
    """

    def __init__(self, build: Callable[[], E]) -> None:
        self._build = build
        self._edge: E | None = None
        from handlers.settings import from_env

        if from_env().in_lambda:
            self._edge = build()

    def __call__(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        if self._edge is None:
            self._edge = self._build()
        return self._edge.handle(event, context)

    def reset(self) -> None:
        self._edge = None
