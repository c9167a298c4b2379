"""Conversation keys and the table layout they map to.

Partition key = the platform user, sort key = the bot's namespace and the channel, so one
Query returns everything stored for one user (list, export, delete)::

    pk                              sk
    slack#T0001#U0002               todo:C0003             conversation state (bot "todo")
    slack#T0001#U0002               todo:C0003#evt#<hash>  event record (own TTL)
    slack#T0001#U0002               todo:~user             user-scope state (every channel)
    slack#T0001#U0002               #tombstone             left by a user delete
    slack#T0001#C0003#channel       poll:~channel          channel-scope state (everyone)
    slack#T0001#C0003#channel       ai:~thread.1712345678.000100
                                                           thread-scope state (everyone in
                                                           the thread of that root ts)
    messenger#<page id>#<psid>      todo:<page id>         conversation state
    instagram#<account id>#<igsid>  todo:<account id>      an Instagram conversation
    messenger#<page id>#<psid>      todo:~channel          channel scope (the page+user pair)
    slack#T0001#U0002               C0003                  a bot without a namespace (the
                                                           layout before namespaces)

A *scope* says who shares a state: ``conversation`` (one user in one channel, the default),
``channel`` (everyone in a Slack channel or DM; on Messenger the page+user pair), ``user``
(one user across the channels of a workspace; on Messenger the user of a page) or ``thread``
(everyone in one Slack thread: its root's ``ts``; a top-level message is the root of its own
thread; on Messenger, and for a Slack event with no message, the conversation). A channel's
state, and its threads', have the channel's partition, so a user delete (one Query of the
user's partition) never touches them (membership marks lead it there). ``:`` and ``~`` are
outside every id alphabet, so no namespace, scope or id can address another's item; every
component is validated before it is joined.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

from sessions.errors import InvalidKeyError

#: A platform's name: one the core knows (``slack``, ``messenger``, ``instagram``) or one an
#: adapter registered with :func:`register_platform`.
Platform = str
Scope = Literal["conversation", "channel", "user", "thread"]
SCOPES: tuple[str, ...] = ("conversation", "channel", "user", "thread")
#: A thread-scope item's sort key: ``~thread.<root ts>``.
THREAD_MARK = "~thread."
#: A Slack message ``ts``: epoch seconds, a dot, microseconds ("1712345678.000100").
_TS = re.compile(r"[0-9]{1,12}\.[0-9]{1,9}")


def check_thread(value: object) -> str:
    """A Slack thread root: a message ``ts`` ("1712345678.000100").

    Raises:
        InvalidKeyError: anything else.
    """
    if not isinstance(value, str) or not _TS.fullmatch(value):
        raise InvalidKeyError(f"invalid Slack thread ts {str(value)[:40]!r}")
    return value


SEP = "#"
TOMBSTONE_SK = "#tombstone"
EVENT_MARK = "#evt#"
MAX_IDEMPOTENCY_KEY = 1024
NS_SEP = ":"
CHANNEL_PK_MARK = "channel"
_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def check_namespace(namespace: object) -> str:
    """A bot's namespace: 1-64 ASCII letters, digits, ``_``, ``.`` or ``-``.

    Raises:
        InvalidKeyError: anything else.
    """
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise InvalidKeyError(
            f"invalid namespace {str(namespace)[:70]!r}: expected 1-64 characters of "
            f"{_NAMESPACE.pattern}"
        )
    return namespace


# Slack ids (team T…, enterprise E…, user U…/W…, channel C…/D…/G…) are upper-case
# alphanumerics; Messenger page ids and page-scoped ids, Instagram professional account ids
# and Instagram-scoped ids are decimal digits.
_ALPHABETS: dict[str, re.Pattern[str]] = {
    "slack": re.compile(r"[A-Z0-9]{1,32}"),
    "messenger": re.compile(r"[0-9]{1,32}"),
    "instagram": re.compile(r"[0-9]{1,32}"),
}


def register_platform(name: str, ids: re.Pattern[str]) -> None:
    """Let keys of a platform the core does not know be made: ``ids`` is the alphabet of its
    workspace, channel and user ids (the key's separators ``#`` and ``:`` are never ids). An
    adapter registers its platform once, on import (``handlers.platforms``); registering the
    same again is harmless.

    Raises:
        InvalidKeyError: a name that is not lower-case letters, or an alphabet that admits a
            separator, or a name the core knows with another alphabet.
    """
    if not re.fullmatch(r"[a-z]{1,32}", name):
        raise InvalidKeyError(f"invalid platform name {name[:40]!r}")
    if any(ids.search(c) for c in (SEP, NS_SEP)):
        raise InvalidKeyError(f"the ids of {name} must not hold {SEP!r} or {NS_SEP!r}")
    known = _ALPHABETS.get(name)
    if known is not None and known.pattern != ids.pattern:
        raise InvalidKeyError(f"platform {name} is registered with another alphabet")
    _ALPHABETS[name] = ids


def _check(platform: str, what: str, value: object) -> str:
    alphabet = _ALPHABETS.get(platform)
    if alphabet is None:
        raise InvalidKeyError(
            f"unknown platform {platform!r}: expected one of {sorted(_ALPHABETS)}"
        )
    if not isinstance(value, str) or not alphabet.fullmatch(value):
        shown = (
            repr(value)
            if not isinstance(value, str) or len(value) <= 40
            else repr(value[:40]) + "…"
        )
        raise InvalidKeyError(f"invalid {platform} {what} {shown}: expected {alphabet.pattern}")
    return value


@dataclass(frozen=True, slots=True)
class UserKey:
    """One platform user: the partition that holds all their conversations."""

    platform: Platform
    workspace: str
    user: str

    def __post_init__(self) -> None:
        _check(self.platform, "workspace", self.workspace)
        _check(self.platform, "user", self.user)

    @property
    def pk(self) -> str:
        return SEP.join((self.platform, self.workspace, self.user))

    @classmethod
    def from_pk(cls, pk: str) -> UserKey:
        """Parse a partition key back into a validated user key.

        Raises:
            InvalidKeyError: ``pk`` is not ``<platform>#<workspace>#<user>``.
        """
        parts = pk.split(SEP)
        if len(parts) != 3 or parts[0] not in _ALPHABETS:
            raise InvalidKeyError(f"invalid partition key {pk[:80]!r}")
        platform: Platform = parts[0]  # one of _ALPHABETS
        return cls(platform=platform, workspace=parts[1], user=parts[2])


@dataclass(frozen=True, slots=True)
class ChannelKey:
    """A Slack channel's partition: the channel-scope state everyone in it shares (and its
    event records), outside every user's partition."""

    platform: Platform
    workspace: str
    channel: str

    def __post_init__(self) -> None:
        _check(self.platform, "workspace", self.workspace)
        _check(self.platform, "channel", self.channel)

    @property
    def pk(self) -> str:
        return SEP.join((self.platform, self.workspace, self.channel, CHANNEL_PK_MARK))


#: A partition one Query reads: a user's, or a Slack channel's.
Partition = UserKey | ChannelKey


def partition_from_pk(pk: str) -> Partition:
    """A user's or a channel's partition key, parsed and validated.

    Raises:
        InvalidKeyError: neither ``<platform>#<workspace>#<user>`` nor
            ``slack#<team>#<channel>#channel``.
    """
    parts = pk.split(SEP)
    if len(parts) == 4 and parts[0] == "slack" and parts[3] == CHANNEL_PK_MARK:
        return ChannelKey("slack", parts[1], parts[2])
    return UserKey.from_pk(pk)


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """One conversation: a user in a channel (Slack) or with a page (Messenger).

    ``enterprise`` (Slack Enterprise Grid) is validated and kept as an attribute of the stored
    item; it is not part of the key, since the event's workspace already scopes the user.

    ``scope`` and ``namespace`` say which stored item the key addresses (see the module
    docstring): an edge builds the conversation's key, :meth:`scoped` the item a bot keeps.
    ``thread`` (Slack): the root ``ts`` of the event's thread (the message's own for a
    top-level message), what the thread scope is keyed by; ``None`` where there is none.
    """

    platform: Platform
    workspace: str
    channel: str
    user: str
    enterprise: str | None = None
    scope: Scope = "conversation"
    namespace: str | None = None
    thread: str | None = None

    def __post_init__(self) -> None:
        _check(self.platform, "workspace", self.workspace)
        _check(self.platform, "channel", self.channel)
        _check(self.platform, "user", self.user)
        if self.enterprise is not None:
            if self.platform != "slack":
                raise InvalidKeyError("only Slack keys carry an enterprise id")
            _check(self.platform, "enterprise", self.enterprise)
        if self.scope not in SCOPES:
            raise InvalidKeyError(f"unknown scope {self.scope!r}: expected one of {SCOPES}")
        if self.namespace is not None:
            check_namespace(self.namespace)
        if self.thread is not None:
            if self.platform != "slack":
                raise InvalidKeyError("only Slack keys carry a thread")
            check_thread(self.thread)
        if self.scope == "thread" and self.thread is None:
            raise InvalidKeyError("a thread-scope key needs its thread's root ts")

    def scoped(self, scope: str, namespace: str | None) -> ConversationKey:
        """The key of the item a bot of ``namespace`` keeps in ``scope`` for this
        conversation's events (the same user, channel and workspace; for ``"thread"``, the
        same thread: without one, on Messenger or for a slash command, the conversation's).
        The key keeps its thread, so that another scope of the same event finds it."""
        if scope not in SCOPES:
            raise InvalidKeyError(f"unknown scope {scope!r}: expected one of {SCOPES}")
        if scope == "thread" and self.thread is None:
            scope = "conversation"
        return ConversationKey(
            self.platform, self.workspace, self.channel, self.user, self.enterprise,
            scope,  # type: ignore[arg-type]
            namespace, self.thread,
        )  # fmt: skip

    @property
    def conversation(self) -> ConversationKey:
        """The conversation this key belongs to (scope and namespace dropped; its thread
        kept)."""
        return ConversationKey(
            self.platform,
            self.workspace,
            self.channel,
            self.user,
            self.enterprise,
            thread=self.thread,
        )

    @property
    def shared(self) -> bool:
        """Whether the item is outside the user's partition (a Slack channel's or thread's
        state)."""
        return self.scope in ("channel", "thread") and self.platform == "slack"

    @classmethod
    def slack(
        cls,
        *,
        team: str,
        channel: str,
        user: str,
        enterprise: str | None = None,
        thread: str | None = None,
    ) -> ConversationKey:
        return cls("slack", team, channel, user, enterprise, thread=thread)

    @classmethod
    def messenger(cls, *, page: str, psid: str) -> ConversationKey:
        return cls("messenger", page, page, psid)

    @classmethod
    def instagram(cls, *, account: str, igsid: str) -> ConversationKey:
        """A user of an Instagram professional account (the account stands in for the page)."""
        return cls("instagram", account, account, igsid)

    @property
    def user_key(self) -> UserKey:
        return UserKey(self.platform, self.workspace, self.user)

    @property
    def pk(self) -> str:
        if self.shared:
            return SEP.join((self.platform, self.workspace, self.channel, CHANNEL_PK_MARK))
        return SEP.join((self.platform, self.workspace, self.user))

    @property
    def sk(self) -> str:
        if self.scope == "conversation":
            name = self.channel
        elif self.scope == "thread":
            name = f"{THREAD_MARK}{self.thread}"
        else:
            name = f"~{self.scope}"
        return name if self.namespace is None else f"{self.namespace}{NS_SEP}{name}"

    def event_sk(self, idempotency_key: str) -> str:
        """Sort key of the event record for ``idempotency_key`` in this conversation.

        The id is hashed: platform ids vary in length and alphabet (Messenger mids run past
        100 characters) and the record only needs equality.

        Raises:
            InvalidKeyError: the idempotency key is empty or longer than 1024 characters.
        """
        if not isinstance(idempotency_key, str) or not idempotency_key:
            raise InvalidKeyError("the idempotency key must be a non-empty string")
        if len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
            raise InvalidKeyError(
                f"the idempotency key is {len(idempotency_key)} characters; "
                f"at most {MAX_IDEMPOTENCY_KEY} are accepted"
            )
        # surrogatepass: an id is whatever JSON carried, a lone surrogate included.
        digest = hashlib.sha256(idempotency_key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return f"{self.sk}{EVENT_MARK}{digest}"


def conversation_from_item(pk: str, sk: str, enterprise: str | None = None) -> ConversationKey:
    """Rebuild the key of a stored state item (admin tools, exports): a conversation's or the
    user scope's in a user's partition, namespaced or not, or a Slack channel's state. A
    user-scope item names no channel: its key carries the user's workspace in its place (on
    Messenger, the page: the same).

    Raises:
        InvalidKeyError: not the sort key of a state item of that partition.
    """
    namespace: str | None = None
    name = sk
    if NS_SEP in sk:
        namespace, name = sk.split(NS_SEP, 1)
    owner = partition_from_pk(pk)
    if isinstance(owner, ChannelKey):
        if name.startswith(THREAD_MARK):
            root = check_thread(name[len(THREAD_MARK) :])
            return ConversationKey(
                "slack", owner.workspace, owner.channel, owner.channel, None, "thread",
                namespace, root,
            )  # fmt: skip
        if name != "~channel":
            raise InvalidKeyError(f"not a channel's state: {sk[:80]!r}")
        # Shared by the channel: no user in its key (the channel id stands in for one).
        return ConversationKey(
            "slack", owner.workspace, owner.channel, owner.channel, None, "channel", namespace
        )
    user = owner
    scope: Scope = "conversation"
    channel = name
    if name in ("~user", "~channel"):
        scope = "user" if name == "~user" else "channel"
        channel = user.workspace
        if scope == "channel" and user.platform == "slack":
            raise InvalidKeyError(f"a Slack channel's state is not in a user's partition: {sk!r}")
    return ConversationKey(
        user.platform, user.workspace, channel, user.user, enterprise, scope, namespace
    )
