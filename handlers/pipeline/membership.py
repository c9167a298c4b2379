"""Who wrote to a shared channel state, and what a user delete does there.

A Slack channel's state (``scope = "channel"``) is shared by everyone in the channel, so it is
kept outside every user's partition, where a user delete (one Query of that partition) does
not reach. It may still hold a user's contributions (a vote, a standup answer). Two things
make the delete reach them:

- a **membership mark**: before a user's first turn on a channel's state, a record in *the
  user's* partition says "this user wrote to channel C" (one conditional write, once per user
  and channel: the mark lives as long as the user's data, and a container remembers the marks
  it made). It records the bot that wrote it (``module:attribute``), so that the admin CLI
  can run that bot's forget turn. A user delete lists them with the user's other items. What
  a container remembers is invalidated by the channel's state itself: a turn that finds its
  user forgotten there after the container last saw the mark writes the mark again before it
  commits (``handlers.pipeline.REMARK``); and it is forgotten after :data:`REMEMBER_FOR`.
- the **forget turn**: the delete first runs, on each channel the user wrote to, a turn of the
  bot with ``Message(kind="user_deleted", user=<id>)``, so that the bot removes what it kept of
  that user (``examples/poll.py`` drops their votes). Its replies are not sent and it asks for
  no effects, but its ``CancelTimer``s take effect, and every timer the user set on the channel
  is cancelled with it (schedules deleted): none fires in the name of a deleted user. That
  turn also leaves, beside the bot's state, the user's hash and the delete's time for as long
  as a tombstone lives: a late redelivery of an event the user sent before the delete is then
  ignored on the channel too, as it is in their own partition.

What remains after the delete: whatever the bot chose to keep of the user in the channel's
state (its forget turn decides), and the replies already posted in Slack (the platform's data).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal

from bot.messages import Message
from bot.spec import BotSpec
from handlers.pipeline.timers import cancel, is_timer_change, keep_timers
from sessions import (
    ConversationKey,
    InvalidKeyError,
    PermanentError,
    SessionError,
    Sessions,
    Turn,
    UserKey,
)
from sessions.keys import SCOPES
from sessions.privacy import fingerprint, private
from sessions.runner import LATE
from sessions.store import EventRecord

log = private(logging.getLogger("handlers.membership"))

#: :meth:`Membership.mark`'s answer when the user's tombstone refused the mark.
Late = Literal["late"]

#: The mark lives as long as the user's data may: ten years, or until the user's delete.
MARK_TTL = 10 * 365 * 86_400
#: The key the channel state keeps the users it forgot under (beside the bot's ``state``).
FORGOTTEN = "__forgotten__"
#: What a bot gets, on each channel the user wrote to, when a user is deleted.
USER_DELETED: Final = "user_deleted"
#: How long a channel remembers a user it forgot: a tombstone's lifetime (a day and an hour).
FORGET_FOR_MS = (86_400 + 3600) * 1000
#: How long a container trusts a mark it saw, in seconds: less than a channel remembers a
#: forgotten user, so a delete is always noticed (by the channel's list, or by asking again).
REMEMBER_FOR = 86_400 - 3600


def mark_key(key: ConversationKey) -> ConversationKey:
    """Where the user's mark for ``key``'s channel lives: their own partition, in the bot's
    namespace (the conversation's item key; the mark is a record beside it)."""
    return key.scoped("conversation", key.namespace)


def token(channel: str, thread: str | None = None) -> str:
    """The mark's token: the channel's, or one thread's of it (a thread-scope state)."""
    return f"member:{channel}" if thread is None else f"member:{channel}:{thread}"


def item_token(key: ConversationKey) -> str:
    """The token of the mark of a shared item: its thread's for a thread-scope state."""
    return token(key.channel, key.thread if key.scope == "thread" else None)


class Membership:
    """Membership marks for one bot's channel-scope state, and its forget turns.

    Args:
        sessions: the session core.
        spec: the bot.
        clock: the container's clock (what it remembers a mark with).
    """

    def __init__(
        self, sessions: Sessions, spec: BotSpec, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.sessions = sessions
        self.spec = spec
        self.clock = clock
        #: (channel item's pk, the user's mark pk) -> when this container last saw the mark.
        self._known: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()
        #: Recorded with each mark: the bot whose forget turn the user's delete must run.
        self.reference = bot_reference(spec.bot)

    def mark(self, key: ConversationKey, event_time: float | None) -> float | Late | None:
        """Make sure the user of ``key`` (a shared channel item) is marked as a writer of its
        channel before their turn commits. One conditional write the first time per user and
        channel (per container after that: none, for :data:`REMEMBER_FOR`). Returns when this
        container saw the mark, if it only remembered it (``None``: it was written or found
        just now); the turn compares it with the channel's list of forgotten users.
        :data:`LATE`: the user's tombstone refused the mark (the event is at or before their
        delete, at the platform's resolution: a Slack event in the delete's own second may
        have happened before it): the turn must not run on the channel either, as it does
        not in the user's partition, since no mark would lead a later delete there.

        Raises:
            SessionError: the store failed (nothing is committed: the delivery retries).
        """
        seen = (key.pk, key.sk, mark_key(key).pk)
        now = self.clock()
        with self._lock:
            known = self._known.get(seen)
        if known is not None and now - known < REMEMBER_FOR:
            return known
        payload: dict[str, str] = {"bot": self.reference} if self.reference else {}
        if key.scope == "thread" and key.thread is not None:
            payload["thread"] = key.thread  # how a delete finds the thread (the sk is a hash)
        outcome = self.sessions.claim_outcome(
            mark_key(key),
            item_token(key),
            event_time=event_time,
            ttl=MARK_TTL,
            payload=payload or None,
        )
        if outcome == LATE:
            return LATE  # not remembered: no mark exists
        with self._lock:
            self._known[seen] = now
        return None

    def unknown(self, key: ConversationKey) -> None:
        """Forget that ``key``'s user was marked (their delete removed the mark)."""
        with self._lock:
            self._known.pop((key.pk, key.sk, mark_key(key).pk), None)

    def channels(self, user: UserKey) -> list[ConversationKey]:
        """The channel and thread states the user wrote to, by their marks (one Query of the
        user's partition): each the key of the bot's shared item (channel scope first, when
        it has one; a thread's, for a thread-scope bot that keeps no channel state)."""
        found = []
        scopes = [s for s in self.spec.scopes if s in ("channel", "thread")]
        if not shared_scopes(self.spec, _any_conversation(user, threaded=True)):
            return []
        for sk, item in self.sessions.store.user_items(user):
            if not isinstance(item, EventRecord) or "#evt#" not in sk:
                continue
            prefix = sk.split("#evt#", 1)[0]
            namespace, _, channel = prefix.rpartition(":")
            if (namespace or None) != self.spec.namespace:
                continue
            try:
                conversation = ConversationKey.slack(
                    team=user.workspace, channel=channel, user=user.user
                )
            except ValueError:
                continue
            mark = mark_key(conversation.scoped("channel", self.spec.namespace))
            if mark.event_sk(token(channel)) == sk:
                if "channel" in scopes:
                    found.append(conversation.scoped("channel", self.spec.namespace))
                continue
            thread = _thread_of(self.sessions, mark, item)
            if thread is None or mark.event_sk(token(channel, thread)) != sk:
                continue
            threaded = dataclasses.replace(conversation, thread=thread)
            if "thread" in scopes:
                found.append(threaded.scoped(scopes[0], self.spec.namespace))
        return found

    def forget(self, user: UserKey, *, turn: Turn) -> tuple[int, int]:
        """Run the bot's forget turn on every channel the user wrote to (before the user's
        own delete). Returns (channels forgotten, channels that failed: their event is a dead
        letter on the channel, to retry once the bot is fixed)."""
        now = time.time()
        done = failed = 0
        for key in self.channels(user):
            message = Message(
                kind=USER_DELETED,
                platform="slack",
                workspace=key.workspace,
                conversation=key.channel,
                user=key.user,
                time=now,
                thread=key.thread,
            )
            keys = [key.conversation.scoped(s, self.spec.namespace) for s in self.spec.scopes]
            try:
                result = self.sessions.run(
                    keys[0],
                    f"forget:{fingerprint(user.pk)}:{int(now * 1000)}",
                    turn,
                    message,
                    event_time=now,
                    initial=lambda: None,
                    scopes=keys[1:],
                    keep=keep_timers,  # the channel's pending timers keep it alive
                )
                done += 1
                self._unschedule(keys[0], result.effects)
            except PermanentError:
                failed += 1
                log.error(
                    "the forget turn failed on a channel", extra={"user": fingerprint(user.pk)}
                )
        return done, failed

    def _unschedule(self, stored: ConversationKey, effects: Sequence[Any]) -> None:
        """Delete the schedules of the timers a forget turn cancelled. A failure is logged:
        their fires find no timer, and delete their schedules then."""
        scheduler = self.sessions.scheduler
        ids = [str(e["id"]) for e in effects if is_timer_change(e) and e["kind"] == "timer_cancel"]
        if scheduler is None or not ids:
            return
        try:
            cancel(scheduler, stored, ids)
        except Exception:
            log.warning(
                "a forgotten user's timers keep their schedules until they fire", exc_info=True
            )


def shared_scopes(spec: BotSpec, conversation: ConversationKey) -> tuple[int, ...]:
    """The positions (in the bot's order) of the scopes whose items are shared by
    ``conversation``'s channel, outside its user's partition. Handlers decide "is this scope
    shared" here only, and only by asking the item's key (:attr:`ConversationKey.shared`, the
    table layout's own rule), never the scope's name and the platform."""
    return tuple(
        i
        for i, scope in enumerate(spec.scopes)
        if conversation.scoped(scope, spec.namespace).shared
    )


def conversation_of(message: Message) -> ConversationKey:
    """The conversation of a message the pipeline runs (each is built from its delivery's key:
    an edge's parse, a timer's fire, an effect's follow-up, a forget turn).

    Raises:
        InvalidKeyError: the message names no valid conversation.
    """
    platform = message.platform
    if not platform:
        raise InvalidKeyError("a message of no platform")
    thread = message.thread if platform == "slack" else None
    return ConversationKey(
        platform, message.workspace, message.conversation, message.user, thread=thread
    )


#: Any thread's root ``ts``: where a platform has threads, asking which of a bot's scopes are
#: shared asks for a message in a thread (a thread scope's item is its thread's).
ANY_THREAD = "1000000000.000001"


def _any_conversation(user: UserKey, *, threaded: bool = False) -> ConversationKey:
    """A conversation of ``user`` (its channel: the workspace's id, which every platform's key
    takes), to ask which of a bot's scopes are shared for them: the channel decides no item's
    partition but its own. ``threaded``: in a thread, on a platform that has them."""
    thread = ANY_THREAD if threaded and user.platform == "slack" else None
    return ConversationKey(user.platform, user.workspace, user.workspace, user.user, thread=thread)


def marks(sessions: Sessions, user: UserKey) -> dict[str | None, set[str | None]]:
    """The namespaces of the bots whose channel states the user wrote to, by the marks in
    their partition (one Query), each with the bots the marks recorded (``module:attribute``;
    ``None``: a mark written before they were recorded, or one that does not open)."""
    found: dict[str | None, set[str | None]] = {}
    if not any(_any_conversation(user).scoped(s, None).shared for s in SCOPES):
        return found  # no bot keeps a shared item on the user's platform: no marks
    for sk, item in sessions.store.user_items(user):
        if not isinstance(item, EventRecord) or "#evt#" not in sk:
            continue
        namespace, _, channel = sk.split("#evt#", 1)[0].rpartition(":")
        try:
            conversation = ConversationKey.slack(
                team=user.workspace, channel=channel, user=user.user
            )
        except ValueError:
            continue
        key = mark_key(conversation.scoped("channel", namespace or None))
        if key.event_sk(token(channel)) != sk:
            thread = _thread_of(sessions, key, item)  # a thread's mark records its root
            if thread is None or key.event_sk(token(channel, thread)) != sk:
                continue
        try:
            recorded = sessions.claimed(key, item)
        except SessionError:
            recorded = None
        bot = recorded.get("bot") if isinstance(recorded, Mapping) else None
        found.setdefault(namespace or None, set()).add(bot if isinstance(bot, str) else None)
    return found


def _thread(recorded: Any) -> str | None:
    thread = recorded.get("thread") if isinstance(recorded, Mapping) else None
    return thread if isinstance(thread, str) else None


def _thread_of(sessions: Sessions, mark: ConversationKey, item: EventRecord) -> str | None:
    """The thread a mark names (a thread-scope state's mark records its root), else ``None``."""
    try:
        return _thread(sessions.claimed(mark, item))
    except SessionError:
        return None


def bot_reference(bot: Any) -> str | None:
    """``module:attribute`` that names ``bot`` (what ``BOT=`` takes), ``None`` when it has no
    module-level name (a bot built in a function)."""
    module = sys.modules.get(type(bot).__module__)
    if module is None:
        return None
    for name, value in vars(module).items():
        if value is bot and not name.startswith("_"):
            return f"{module.__name__}:{name}"
    if getattr(module, type(bot).__qualname__, None) is type(bot):
        return f"{module.__name__}:{type(bot).__qualname__}"
    return None


# -- the channel state's list of forgotten users (a pure part of the turn) -------------------


def split(stored: Any) -> tuple[Any, dict[str, int]]:
    """A shared channel state as stored: the bot's state and the users it forgot (hash ->
    the delete's time in ms)."""
    if isinstance(stored, Mapping) and set(stored) == {FORGOTTEN, "state"}:
        return stored["state"], dict(stored[FORGOTTEN])
    return stored, {}


def join(state: Any, forgotten: Mapping[str, int]) -> Any:
    return {FORGOTTEN: dict(forgotten), "state": state} if forgotten else state


def ignored(forgotten: Mapping[str, int], message: Message) -> bool:
    """Whether ``message`` is a late event of a user deleted after it happened."""
    deleted = forgotten.get(fingerprint(message.user))
    return (
        deleted is not None and message.time is not None and round(message.time * 1000) <= deleted
    )


def remember(forgotten: Mapping[str, int], message: Message, keep_ms: int) -> dict[str, int]:
    """The list after ``message``'s turn: a forget turn adds its user; entries older than
    ``keep_ms`` before the message (a tombstone's lifetime) are dropped."""
    at = round((message.time or 0) * 1000)
    kept = {user: ms for user, ms in forgotten.items() if ms >= at - keep_ms}
    if message.kind == USER_DELETED:
        kept[fingerprint(message.user)] = at
    return kept
