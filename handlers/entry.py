"""Building an edge from the environment, and the Lambda entry point that keeps it warm.

Nothing here knows a particular bot: the bot is whatever ``BOT=package.module:attribute``
names (the todo bot, ``bot.spec.DEFAULT_BOT``, when unset), read once into a
:class:`~bot.spec.BotSpec`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from bot.base import BotTypeError
from bot.spec import BotSpec

if TYPE_CHECKING:
    from handlers.settings import Settings
    from handlers.snapstart import Runtime
    from handlers.telemetry import Telemetry


class Edge(Protocol):
    #: Logs and metrics around each invocation (``None``: off).
    telemetry: Telemetry | None

    def handle(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]: ...


E = TypeVar("E", bound=Edge)


def build_edge(edge: Callable[..., E], settings: Settings | None, **overrides: Any) -> E:
    """An edge as the environment configures it: the store ``SESSIONS_TABLE``/``SESSIONS_DB``
    select, the session options (TTLs, attempts, sent-mark mode) and the bot ``BOT`` names,
    unless ``overrides`` (tests, the local server) say otherwise."""
    from bot.spec import DEFAULT_BOT
    from handlers.settings import from_env
    from handlers.store import sessions_from_settings

    settings = settings or from_env()
    telemetry = overrides.pop("telemetry", None)
    if telemetry is None and settings.telemetry:
        from handlers.telemetry import Telemetry

        telemetry = Telemetry()
    sessions = overrides.pop("sessions", None) or sessions_from_settings(
        settings, observer=telemetry
    )
    the_bot = overrides.pop("bot", None) or load_bot(settings.bot or DEFAULT_BOT)
    built = edge(settings=settings, sessions=sessions, bot=the_bot, **overrides)
    built.telemetry = telemetry
    return built


def spec_of(bot: Any) -> BotSpec:
    """The bot's declarations, checked once (``ConfigError`` names what is wrong)."""
    from handlers.settings import ConfigError

    if isinstance(bot, BotSpec):
        return bot
    try:
        return BotSpec.of(bot)
    except BotTypeError as exc:
        raise ConfigError(f"bot: {exc}") from exc


def load_bot(spec: str) -> Any:
    """The bot named by ``BOT=package.module:attribute`` (an instance, or a class to call).

    Raises:
        ConfigError: the spec is malformed, names nothing, or names something that is not a
            bot (no ``turn(state, message)``, or declarations of the wrong shape).
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
    try:
        BotSpec.of(bot)
    except BotTypeError as exc:
        raise ConfigError(f"BOT={spec!r}: {exc}") from exc
    return bot


class Entry(Generic[E]):
    """A Lambda entry point: the edge is built once per container and kept for warm calls.

    Inside Lambda it is built at import (cold start), so a missing secret fails loudly with
    the variable's name; elsewhere on first call. ``reset()`` forgets it (tests).

    With SnapStart, the modules named in ``warm`` are imported before the snapshot and each
    restored copy builds its edge again (``handlers.snapstart``); ``snapstart`` stands in for
    the Lambda runtime's ``snapshot_restore_py`` (tests).
    """

    def __init__(
        self,
        build: Callable[[], E],
        *,
        warm: Sequence[str] = (),
        snapstart: Runtime | None = None,
    ) -> None:
        self._build = build
        self._edge: E | None = None
        from handlers.settings import from_env

        in_lambda = from_env().in_lambda
        if in_lambda:
            self._edge = build()
        if snapstart is not None or in_lambda:
            # SnapStart (handlers.snapstart): ``warm`` imported before the snapshot, the edge
            # built again in each restored copy. Without SnapStart the hooks never run.
            from handlers import snapstart as snap

            snap.install(renew=self._renew, warm=warm, runtime=snapstart)

    def _renew(self) -> None:
        """After a SnapStart restore: an edge of this copy's own (fresh clients)."""
        if self._edge is not None:
            self._edge = self._build()

    def __call__(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        if self._edge is None:
            self._edge = self._build()
        telemetry = self._edge.telemetry
        if telemetry is None:
            return self._edge.handle(event, context)
        telemetry.begin(context)
        try:
            return self._edge.handle(event, context)
        finally:
            telemetry.end()

    def reset(self) -> None:
        self._edge = None


__all__ = ["Edge", "Entry", "build_edge", "load_bot", "spec_of"]
