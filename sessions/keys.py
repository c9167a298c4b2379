"""Conversation keys and the table layout they map to.

Partition key = the platform user, sort key = the channel, so one Query returns everything
stored for one user (list, export, delete)::

    pk                              sk
    slack#T0001#U0002               C0003                  conversation state
    slack#T0001#U0002               C0003#evt#<sha256>     event record (own TTL)
    slack#T0001#U0002               #tombstone             left by a user delete
    messenger#<page id>#<psid>      <page id>              conversation state

Every component is validated against its platform's id alphabet before it is joined, so no
input can contain the separator ``#`` and address another user's item.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

from sessions.errors import InvalidKeyError

Platform = Literal["slack", "messenger"]

SEP = "#"
TOMBSTONE_SK = "#tombstone"
EVENT_MARK = "#evt#"
MAX_IDEMPOTENCY_KEY = 1024

# Slack ids (team T…, enterprise E…, user U…/W…, channel C…/D…/G…) are upper-case
# alphanumerics; Messenger page ids and page-scoped ids are decimal digits.
_ALPHABETS: dict[str, re.Pattern[str]] = {
    "slack": re.compile(r"[A-Z0-9]{1,32}"),
    "messenger": re.compile(r"[0-9]{1,32}"),
}


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
        raise InvalidKeyError(
            f"invalid {platform} {what} {shown}: expected 1-32 characters of {alphabet.pattern}"
        )
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
        platform: Platform = "slack" if parts[0] == "slack" else "messenger"
        return cls(platform=platform, workspace=parts[1], user=parts[2])


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """One conversation: a user in a channel (Slack) or with a page (Messenger).

    ``enterprise`` (Slack Enterprise Grid) is validated and kept as an attribute of the stored
    item; it is not part of the key, since the event's workspace already scopes the user.
    """

    platform: Platform
    workspace: str
    channel: str
    user: str
    enterprise: str | None = None

    def __post_init__(self) -> None:
        _check(self.platform, "workspace", self.workspace)
        _check(self.platform, "channel", self.channel)
        _check(self.platform, "user", self.user)
        if self.enterprise is not None:
            if self.platform != "slack":
                raise InvalidKeyError("only Slack keys carry an enterprise id")
            _check(self.platform, "enterprise", self.enterprise)

    @classmethod
    def slack(
        cls, *, team: str, channel: str, user: str, enterprise: str | None = None
    ) -> ConversationKey:
        return cls("slack", team, channel, user, enterprise)

    @classmethod
    def messenger(cls, *, page: str, psid: str) -> ConversationKey:
        return cls("messenger", page, page, psid)

    @property
    def user_key(self) -> UserKey:
        return UserKey(self.platform, self.workspace, self.user)

    @property
    def pk(self) -> str:
        return SEP.join((self.platform, self.workspace, self.user))

    @property
    def sk(self) -> str:
        return self.channel

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
        return f"{self.channel}{EVENT_MARK}{digest}"


def conversation_from_item(pk: str, sk: str, enterprise: str | None = None) -> ConversationKey:
    """Rebuild the key of a stored conversation item (admin tools, exports)."""
    user = UserKey.from_pk(pk)
    return ConversationKey(user.platform, user.workspace, sk, user.user, enterprise)
