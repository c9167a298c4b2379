"""Who wrote to a shared channel state, and what a user delete does there.

A Slack channel's state (``scope = "channel"``) is shared by everyone in the channel, so it is
kept outside every user's partition, where a user delete (one Query of that partition) does
not reach. It may still hold a user's contributions (a vote, a standup answer). Two things
make the delete reach them:

- a **membership mark**: before a user's first turn on a channel's state, a record in *the
  user's* partition says "this user wrote to channel C" (one conditional write, once per user
  and channel: the mark lives as long as the user's data, and a container remembers the marks
  it made). A user delete lists them with the user's other items.
- the **forget turn**: the delete first runs, on each channel the user wrote to, a turn of the
  bot with ``Message(kind="user_deleted", user=<id>)``, so that the bot removes what it kept of
  that user (``examples/poll.py`` drops their votes). Its replies are not sent and it asks for
  no effects. That turn also leaves, beside the bot's state, the user's hash and the delete's
  time for as long as a tombstone lives: a late redelivery of an event the user sent before
  the delete is then ignored on the channel too, as it is in their own partition.

What remains after the delete: whatever the bot chose to keep of the user in the channel's
state (its forget turn decides), and the replies already posted in Slack (the platform's data).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, Final

from bot.messages import Message
from bot.spec import BotSpec
from handlers.timers import keep_timers
from sessions import ConversationKey, PermanentError, Sessions, Turn, UserKey
from sessions.privacy import fingerprint, private
from sessions.store import EventRecord

log = private(logging.getLogger("handlers.membership"))

#: The mark lives as long as the user's data may: ten years, or until the user's delete.
MARK_TTL = 10 * 365 * 86_400
#: The key the channel state keeps the users it forgot under (beside the bot's ``state``).
FORGOTTEN = "__forgotten__"
#: What a bot gets, on each channel the user wrote to, when a user is deleted.
USER_DELETED: Final = "user_deleted"
#: How long a channel remembers a user it forgot: a tombstone's lifetime (a day and an hour).
FORGET_FOR_MS = (86_400 + 3600) * 1000


def mark_key(key: ConversationKey) -> ConversationKey:
    """Where the user's mark for ``key``'s channel lives: their own partition, in the bot's
    namespace (the conversation's item key; the mark is a record beside it)."""
    return key.scoped("conversation", key.namespace)


def token(channel: str) -> str:
    return f"member:{channel}"


class Membership:
    """Membership marks for one bot's channel-scope state, and its forget turns."""

    def __init__(self, sessions: Sessions, spec: BotSpec) -> None:
        self.sessions = sessions
        self.spec = spec
        self._known: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def mark(self, key: ConversationKey, event_time: float | None) -> None:
        """Make sure the user of ``key`` (a shared channel item) is marked as a writer of its
        channel before their turn commits. One conditional write the first time per user and
        channel (per container after that: none).

        Raises:
            SessionError: the store failed (nothing is committed: the delivery retries).
        """
        seen = (key.pk, mark_key(key).pk)
        with self._lock:
            if seen in self._known:
                return
        self.sessions.claim(
            mark_key(key), token(key.channel), event_time=event_time, ttl=MARK_TTL
        )  # False: marked already, or the user was deleted after the event (then the
        # channel's forgotten list ignores the event)
        with self._lock:
            self._known.add(seen)

    def channels(self, user: UserKey) -> list[ConversationKey]:
        """The channels whose shared state the user wrote to, by their marks (one Query of the
        user's partition)."""
        found = []
        channel_scope = "channel" in self.spec.scopes
        if user.platform != "slack" or not channel_scope:
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
                found.append(conversation.scoped("channel", self.spec.namespace))
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
            )
            keys = [key.conversation.scoped(s, self.spec.namespace) for s in self.spec.scopes]
            try:
                self.sessions.run(
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
            except PermanentError:
                failed += 1
                log.error(
                    "the forget turn failed on a channel", extra={"user": fingerprint(user.pk)}
                )
        return done, failed


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
