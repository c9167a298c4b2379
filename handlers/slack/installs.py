"""Slack installations kept in the sessions table, sealed: slack_sdk's ``InstallationStore``
and ``OAuthStateStore`` over :class:`sessions.installations.Installations`, so that our edge
and a Bolt app of the user's own (``App(installation_store=..., oauth_settings=...)``) read
the same installations.

The layout of slack_sdk's own stores (its ``amazon_s3`` and ``sqlalchemy`` ones), each part a
sealed record of its own in the workspace's partition
(``install#slack-team#<enterprise or none>-<team or none>``)::

    sk            what                                              written by
    bot           the bot: token, refresh token, expiry             save, save_bot (rotation)
    latest        the latest installation, its bot part current     save, save_bot
    user#<id>     one installing user's installation (``none``:     save
                  an install that named no user)

No part grows with the number of users (one user's tokens are a few hundred bytes), so no
lock is needed for a save: each save writes its own user's record, and ``bot`` and ``latest``
are the last saver's, as in slack_sdk's stores. A rotation (``save_bot``) rewrites ``bot`` and
the bot part of ``latest``, so ``find_installation`` (what Bolt's ``authorize`` calls) and
``find_bot`` agree; ``find_installation(user_id=...)`` takes its bot part from ``bot``, as
slack_sdk's stores do. The first layout kept a workspace in one record (sk ``install``: the
bot, every user, which was latest): it is still read, and the first save (or delete) rewrites
it in this shape. An org-wide Enterprise Grid install is the record of ``<enterprise>-none``.

An OAuth ``state`` is signed, not stored (:class:`TableOAuthStateStore`): only its use at the
redirect is recorded (one-time: of two racing redirects exactly one gets it), for as long as
the state could be used (600 s, Bolt's default).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from logging import Logger
from typing import Any

from slack_sdk.oauth.installation_store.installation_store import InstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.state_store.state_store import OAuthStateStore

from sessions.installations import FOREVER, SK, Installations

TEAM = "slack-team"
STATE = "slack-oauth-state"
#: Seconds a state's issue time may be ahead of this container's clock.
SKEW = 30
NONE = "none"
#: The parts of a workspace's installation (``LEGACY``: the one-record layout before them).
BOT = "bot"
LATEST = "latest"
USER = "user#"
#: A team an org-wide install answered (so that the org's uninstall erases exactly its teams).
SERVED = "team#"
LEGACY = SK
#: The bot fields of an installation that a rotation changes.
BOT_FIELDS = ("bot_token", "bot_refresh_token", "bot_token_expires_at", "bot_id",
              "bot_user_id", "bot_scopes")  # fmt: skip


def team_id_of(enterprise_id: str | None, team_id: str | None) -> str:
    """The record id of a workspace (or of an org-wide install: its team is ``none``)."""
    return f"{enterprise_id or NONE}-{team_id or NONE}"


def _bot_of(data: dict[str, Any]) -> Bot:
    """A ``Bot`` from its stored fields (only those ``Bot`` takes)."""
    return Bot(**data)


class TableInstallationStore(InstallationStore):
    """slack_sdk's ``InstallationStore`` over the sessions table's sealed records."""

    def __init__(self, records: Installations, *, logger: Logger | None = None) -> None:
        self.records = records
        self._logger = logger or logging.getLogger(__name__)

    @property
    def logger(self) -> Logger:
        return self._logger

    # -- parts -----------------------------------------------------------------------------

    def _get(self, ident: str, part: str) -> dict[str, Any] | None:
        found = self.records.get(TEAM, ident, part=part)
        return found if isinstance(found, dict) else None

    def _put(self, ident: str, part: str, value: dict[str, Any]) -> None:
        self.records.put(TEAM, ident, value, part=part)

    def _legacy(self, ident: str) -> dict[str, Any] | None:
        """The one-record layout of a workspace, when it still has it."""
        found = self._get(ident, LEGACY)
        return found if found is not None and isinstance(found.get("users"), dict) else None

    def _migrate(self, ident: str) -> None:
        """Rewrite a one-record workspace in the layout of parts, then drop the old record
        (the parts first: a crash in between leaves both, and the next save finishes it)."""
        old = self._legacy(ident)
        if old is None:
            return
        for user, data in old["users"].items():
            if isinstance(data, dict):
                self._put(ident, USER + (user or NONE), data)
        latest = old["users"].get(old.get("latest") or "")
        bot = old.get("bot")
        if isinstance(latest, dict):
            self._put(ident, LATEST, _with_bot(latest, bot))
        if isinstance(bot, dict):
            self._put(ident, BOT, bot)
        self.records.delete(TEAM, ident, part=LEGACY)
        self.logger.info("installation rewritten in parts (%d users)", len(old["users"]))

    # -- saves ------------------------------------------------------------------------------

    def save(self, installation: Installation) -> None:
        team = None if installation.is_enterprise_install else installation.team_id
        ident = team_id_of(installation.enterprise_id, team)
        self._migrate(ident)
        data = dict(installation.__dict__)
        if installation.bot_token is not None:
            self._put(ident, BOT, dict(installation.to_bot().__dict__))
        self._put(ident, USER + (installation.user_id or NONE), data)
        self._put(ident, LATEST, data)

    def save_bot(self, bot: Bot) -> None:
        """The bot (a rotation): ``bot``, and the bot part of ``latest``, so that
        ``find_installation`` hands Bolt the same token as ``find_bot``."""
        if bot.bot_token is None:
            return
        team = None if bot.is_enterprise_install else bot.team_id
        ident = team_id_of(bot.enterprise_id, team)
        self._migrate(ident)
        self._put(ident, BOT, dict(bot.__dict__))
        latest = self._get(ident, LATEST)
        if latest is not None:
            self._put(ident, LATEST, _with_bot(latest, dict(bot.__dict__)))

    # -- reads ------------------------------------------------------------------------------

    def find_bot(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> Bot | None:
        ident = team_id_of(enterprise_id, None if is_enterprise_install else team_id)
        data = self._get(ident, BOT)
        if data is None:
            old = self._legacy(ident)
            data = old.get("bot") if old is not None else None
        return _bot_of(data) if isinstance(data, dict) else None

    def find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        ident = team_id_of(enterprise_id, None if is_enterprise_install else team_id)
        data = self._get(ident, USER + user_id if user_id else LATEST)
        if data is None:
            old = self._legacy(ident)
            if old is None:
                return None
            data = old["users"].get(user_id or old.get("latest") or NONE)
            if not isinstance(data, dict):
                return None
            data = _with_bot(data, old.get("bot"))
        elif user_id is not None:
            # The workspace's current bot, as slack_sdk's stores do (a user's record keeps
            # the bot as it was at the user's install).
            data = _with_bot(data, self._get(ident, BOT))
        return Installation(**data)

    # -- deletes ----------------------------------------------------------------------------

    def delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        ident = team_id_of(enterprise_id, team_id)
        self._migrate(ident)
        self.records.delete(TEAM, ident, part=BOT)
        latest = self._get(ident, LATEST)
        if latest is not None:
            self._put(ident, LATEST, {**latest, **dict.fromkeys(BOT_FIELDS)})

    def delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        """One user's installation (``user_id``), or every installation of the workspace
        (none named: its bot stays, as in slack_sdk's stores). When the user's was the
        latest, ``latest`` keeps its bot part without the user's tokens."""
        ident = team_id_of(enterprise_id, team_id)
        self._migrate(ident)
        if user_id is None:
            for part in self.records.parts(TEAM, ident):
                if part.startswith(USER) or part == LATEST:
                    self.records.delete(TEAM, ident, part=part)
            return
        self.records.delete(TEAM, ident, part=USER + user_id)
        latest = self._get(ident, LATEST)
        if latest is not None and latest.get("user_id") == user_id:
            self._put(ident, LATEST, _without_user(latest))

    # -- an org-wide install's teams ---------------------------------------------------------

    def served(self, enterprise_id: str, team_id: str) -> None:
        """Note that the org-wide install of ``enterprise_id`` answered ``team_id`` (a record
        created only if absent: a conditional write per team per container)."""
        self.records.create(
            TEAM, team_id_of(enterprise_id, None), {}, ttl=FOREVER, part=SERVED + team_id
        )

    def served_teams(self, enterprise_id: str | None) -> list[str]:
        """The teams the org-wide install of ``enterprise_id`` answered."""
        parts = self.records.parts(TEAM, team_id_of(enterprise_id, None))
        return [p.removeprefix(SERVED) for p in parts if p.startswith(SERVED)]

    def delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        """Everything the workspace (or the org-wide install) stored: every part."""
        self.records.delete_every(TEAM, team_id_of(enterprise_id, team_id))


def _with_bot(data: dict[str, Any], bot: Any) -> dict[str, Any]:
    """An installation's fields with the bot part taken from ``bot`` (when there is one)."""
    if not isinstance(bot, dict):
        return dict(data)
    return {**data, **{name: bot.get(name) for name in BOT_FIELDS if name in bot}}


def _without_user(data: dict[str, Any]) -> dict[str, Any]:
    """An installation with its user's tokens removed (the bot part kept)."""
    return {
        **data,
        "user_id": None,
        "user_token": None,
        "user_refresh_token": None,
        "user_token_expires_at": None,
        "user_scopes": None,
    }


class TableOAuthStateStore(OAuthStateStore):
    """slack_sdk's ``OAuthStateStore`` without a write per visitor: a state is signed
    (HMAC-SHA256 with a secret of the app, its issue time inside), so issuing one stores
    nothing and an anonymous ``GET /slack/install`` costs no request; it is good for
    ``expiration_seconds``, and once: the redirect that consumes it creates a marker record
    (created only if absent, living as long as the state could), so of two redirects with
    one state exactly one gets it. The edge also binds it to the installer's browser (a
    cookie, as Bolt does)."""

    def __init__(
        self,
        records: Installations,
        *,
        secret: str,
        expiration_seconds: int = 600,
        logger: Logger | None = None,
        clock: Callable[[], float] = time.time,
        nonce: Callable[[], str] = lambda: secrets.token_urlsafe(16),
    ) -> None:
        if not secret:
            raise ValueError("an OAuth state needs a secret to sign it")
        self.records = records
        self.expiration_seconds = expiration_seconds
        self._key = hmac.new(secret.encode(), b"slack-oauth-state", hashlib.sha256).digest()
        self._logger = logger or logging.getLogger(__name__)
        self._clock = clock
        self._nonce = nonce

    @property
    def logger(self) -> Logger:
        return self._logger

    def _sign(self, body: str) -> str:
        mac = hmac.new(self._key, body.encode(), hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def issue(self, *args: Any, **kwargs: Any) -> str:
        body = f"{int(self._clock())}.{self._nonce()}"
        return f"{body}.{self._sign(body)}"

    def valid(self, state: str) -> int | None:
        """Seconds the state is still good for (signed by us, not expired), else ``None``."""
        parts = state.split(".") if isinstance(state, str) and len(state) <= 200 else []
        if len(parts) != 3 or not parts[0].isdigit():
            return None
        if not hmac.compare_digest(self._sign(f"{parts[0]}.{parts[1]}"), parts[2]):
            return None
        left = int(parts[0]) + self.expiration_seconds - int(self._clock())
        # (Issued by a container whose clock is a little ahead: still good.)
        return left if 0 < left <= self.expiration_seconds + SKEW else None

    def consume(self, state: str) -> bool:
        left = self.valid(state)
        if left is None:
            return False
        used = hashlib.sha256(state.encode()).hexdigest()[:40]
        return self.records.create(STATE, used, {}, ttl=left + 1)
