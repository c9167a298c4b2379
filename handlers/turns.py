"""What both platform edges share: a bot's turn as the session core runs it, its effects after
the commit, and building an edge from the environment.

Nothing here knows a particular bot: the bot is whatever ``BOT=package.module:attribute``
names (the todo bot, ``bot.DEFAULT_BOT``, when unset), read once into a
:class:`~bot.base.BotSpec`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from bot.base import BotSpec, BotTypeError, Effect, EffectCall, effect_key
from bot.messages import Message
from bot.replies import AnyReply, reply_from_dict
from handlers.deferral import Deferrer, Job
from sessions import ConversationKey, Sessions, Turn

if TYPE_CHECKING:
    from handlers.settings import Settings
    from handlers.telemetry import Telemetry

from sessions.privacy import private

log = private(logging.getLogger("handlers.turns"))

#: How many effect → follow-up turn → effect rounds one event may start: a bot whose every
#: follow-up asks for another effect stops here instead of looping forever.
MAX_FOLLOW_UPS = 10


def bot_turn(spec: BotSpec, *, with_response: bool = False) -> Turn:
    """The bot's turn as the session core runs it: the stored state migrated to the bot's
    schema (``None``, a new conversation: the bot's initial state), the outcome checked, and
    replies and effects as JSON-compatible dicts (they may be stored: the recorded response,
    sent-mark mode's outbox). ``with_response``: the replies are also the response a duplicate
    gets back (a slash command's ack body)."""

    def turn(stored: Any, message: Message) -> tuple[Any, list[Any], Any]:
        outcome = spec.outcome(spec.load_state(stored), message)
        replies = [r.to_dict() for r in outcome.replies]
        effects = [e.to_dict() for e in outcome.effects]
        return spec.dump_state(outcome.state), replies + effects, replies if with_response else None

    return turn


def new_conversation() -> None:
    """What the session core hands ``bot_turn`` for a conversation with no state."""
    return None


def split(items: Sequence[Mapping[str, Any]]) -> tuple[list[AnyReply], list[Mapping[str, Any]]]:
    """A committed turn's output: the replies to render, and the effects to run."""
    replies = [reply_from_dict(i) for i in items if i.get("kind") != "effect"]
    effects = [i for i in items if i.get("kind") == "effect"]
    return replies, effects


class Effects:
    """Runs a committed turn's effects: fast ones right away, slow ones through the deferral;
    each at most once (claimed in the store first), each result fed back as a follow-up turn.

    Args:
        sessions: the session core (the claim).
        spec: the bot.
        deferrer: where slow effects (and follow-ups that could not commit) go.
        run_job: the edge's ``run_deferred``: runs a follow-up turn and sends its replies.
    """

    def __init__(
        self,
        *,
        sessions: Sessions,
        spec: BotSpec,
        deferrer: Callable[[], Deferrer],
        run_job: Callable[[Job], None],
    ) -> None:
        self.sessions = sessions
        self.spec = spec
        self._deferrer = deferrer
        self.run_job = run_job

    def start(self, job: Job, effects: Sequence[Mapping[str, Any]]) -> None:
        """After the commit of ``job``'s turn (and its replies): start each effect. Never
        raises: an effect whose claim failed is handed to the deferral, which retries it; one
        that cannot even be handed off is logged (at most once: it may be lost, never
        doubled)."""
        for index, data in enumerate(effects):
            name = str(data.get("name"))
            effect_job: Job = {
                "platform": job["platform"],
                "kind": "effect",
                "key": job["key"],
                "effect": dict(data),
                "effect_key": effect_key(job["idempotency_key"], index, name),
                "origin": {k: v for k, v in job.items() if k not in ("retry_failed", "origin")},
                "event_time": job.get("event_time"),
            }
            if self.spec.is_slow_effect(name):
                try:
                    self._deferrer().submit(effect_job)
                    continue
                except Exception:
                    log.exception("could not hand off slow effect %s; running it now", name)
            try:
                self.run(effect_job)
            except Exception:
                # The claim failed (the store): nothing ran. The deferral retries it.
                log.warning("effect %s could not start; handing it off", name, exc_info=True)
                try:
                    self._deferrer().submit(effect_job)
                except Exception:
                    log.exception("effect %s not run", name)

    def run(self, job: Job) -> None:
        """Run one effect job (inline, or a deferred one), then its follow-up turn.

        Raises:
            SessionError: the claim failed in a way that can heal; nothing ran (retry it).
        """
        effect = Effect.from_dict(job["effect"])
        origin: Job = job["origin"]
        key = _conversation_key(origin)
        token = f"effect:{job['effect_key']}"
        if not self.sessions.claim(key, token, event_time=job.get("event_time")):
            log.info("effect %s already claimed (or the user was deleted); skipped", effect.name)
            return
        function = self.spec.effects.get(effect.name)
        result: Any = None
        error: str | None = None
        message = Message.from_dict(origin["message"])
        if function is None:  # the bot changed between the turn and now
            error = f"no @effect({effect.name!r}) method"
        else:
            try:
                result = function[0](
                    effect.args, EffectCall(effect.name, job["effect_key"], message)
                )
            except Exception as exc:
                log.exception("effect %s raised", effect.name)
                error = f"{type(exc).__name__}: {exc}"
        if not effect.follow_up:
            return
        depth = int(origin.get("depth") or 0) + 1
        if depth > MAX_FOLLOW_UPS:
            log.error("effect %s: follow-up dropped, %d rounds deep", effect.name, depth)
            return
        follow_up = Message(
            kind="effect",
            action=effect.name,
            result=result,
            error=error,
            platform=message.platform,
            workspace=message.workspace,
            conversation=message.conversation,
            user=message.user,
            time=message.time,
        )
        follow_job: Job = {
            **origin,
            "idempotency_key": f"followup:{job['effect_key']}",
            "message": follow_up.to_dict(),
            "depth": depth,
            "trigger_id": None,  # long used: a modal in a follow-up falls back to text
        }
        try:
            self.run_job(follow_job)
        except Exception:
            # It can heal (the store was unavailable, the conversation busy): hand it to the
            # deferral, which retries (and inside Lambda keeps a job that keeps failing).
            log.warning("follow-up of %s failed; handing it off", effect.name, exc_info=True)
            try:
                self._deferrer().submit(follow_job)
            except Exception:
                log.exception("follow-up of effect %s lost: %r", effect.name, result)


def _conversation_key(job: Job) -> ConversationKey:
    if job["platform"] == "slack":
        return ConversationKey.slack(**job["key"])
    return ConversationKey.messenger(**job["key"])


class Edge(Protocol):
    #: Logs and metrics around each invocation (``None``: off).
    telemetry: Telemetry | None

    def handle(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]: ...


E = TypeVar("E", bound=Edge)


def build_edge(edge: Callable[..., E], settings: Settings | None, **overrides: Any) -> E:
    """An edge as the environment configures it: the store ``SESSIONS_TABLE``/``SESSIONS_DB``
    select, the session options (TTLs, attempts, sent-mark mode) and the bot ``BOT`` names,
    unless ``overrides`` (tests, the local server) say otherwise."""
    import bot as bot_api
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
    the_bot = overrides.pop("bot", None) or load_bot(settings.bot or bot_api.DEFAULT_BOT)
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


__all__ = ["Effects", "Entry", "bot_turn", "build_edge", "load_bot", "spec_of", "split"]
