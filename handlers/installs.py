"""Slack installations kept in the sessions table, sealed: slack_sdk's ``InstallationStore``
and ``OAuthStateStore`` over :class:`sessions.installations.Installations`, so that our edge
and a Bolt app of the user's own (``App(installation_store=..., oauth_settings=...)``) read
the same installations.

One record per workspace (``install#slack-team#<enterprise or none>-<team or none>``): the
bot (its token, its refresh token), each installing user's installation, and which one is
the latest. Tokens are never in clear at rest when encryption is on (the sessions' envelope,
bound to the record's key); changes to it are made one at a time across containers (a lock
record). An OAuth ``state`` is a record of its own, one-time (consumed by
a conditional delete: of two racing redirects exactly one gets it) and short-lived (600 s,
Bolt's default).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from logging import Logger
from typing import Any

from slack_sdk.oauth.installation_store.installation_store import InstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.state_store.state_store import OAuthStateStore

from sessions.installations import Installations

TEAM = "slack-team"
STATE = "slack-oauth-state"
#: A workspace record's write lock (a record created only if absent), and its lifetime.
LOCK = "slack-team-lock"
LOCK_TTL = 10
NONE = "none"


def team_id_of(enterprise_id: str | None, team_id: str | None) -> str:
    """The record id of a workspace (or of an org-wide install: its team is ``none``)."""
    return f"{enterprise_id or NONE}-{team_id or NONE}"


class TableInstallationStore(InstallationStore):
    """slack_sdk's ``InstallationStore`` over the sessions table's sealed records."""

    def __init__(self, records: Installations, *, logger: Logger | None = None) -> None:
        self.records = records
        self._logger = logger or logging.getLogger(__name__)
        self._lock = threading.Lock()

    @property
    def logger(self) -> Logger:
        return self._logger

    def _workspace(self, enterprise_id: str | None, team_id: str | None) -> dict[str, Any]:
        found = self.records.get(TEAM, team_id_of(enterprise_id, team_id))
        return found if isinstance(found, dict) else {"bot": None, "users": {}, "latest": None}

    @contextmanager
    def _locked(self, enterprise_id: str | None, team_id: str | None) -> Iterator[None]:
        """A workspace record's read-modify-write, one at a time across containers (two
        users installing at once both keep their installation): a lock record created only
        if absent, waited for up to 5 s (then the write goes ahead: a lock left by a crash
        expires in 10 s)."""
        ident = team_id_of(enterprise_id, team_id)
        with self._lock:
            for _ in range(50):
                if self.records.create(LOCK, ident, {"at": time.time()}, ttl=LOCK_TTL):
                    break
                time.sleep(0.1)
            try:
                yield
            finally:
                self.records.delete(LOCK, ident)

    def save(self, installation: Installation) -> None:
        team = None if installation.is_enterprise_install else installation.team_id
        with self._locked(installation.enterprise_id, team):
            record = self._workspace(installation.enterprise_id, team)
            user = installation.user_id or NONE
            record["users"][user] = dict(installation.__dict__)
            record["latest"] = user
            if installation.bot_token is not None:
                record["bot"] = dict(installation.to_bot().__dict__)
            self.records.put(TEAM, team_id_of(installation.enterprise_id, team), record)

    def save_bot(self, bot: Bot) -> None:
        if bot.bot_token is None:
            return
        team = None if bot.is_enterprise_install else bot.team_id
        with self._locked(bot.enterprise_id, team):
            record = self._workspace(bot.enterprise_id, team)
            record["bot"] = dict(bot.__dict__)
            self.records.put(TEAM, team_id_of(bot.enterprise_id, team), record)

    def find_bot(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> Bot | None:
        team = None if is_enterprise_install else team_id
        data = self._workspace(enterprise_id, team).get("bot")
        return Bot(**data) if data else None

    def find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        team = None if is_enterprise_install else team_id
        record = self._workspace(enterprise_id, team)
        data = record["users"].get(user_id or record.get("latest") or NONE)
        if data is None:
            return None
        installation = Installation(**data)
        bot = record.get("bot")
        if user_id is not None and bot:  # the workspace's latest bot token, as Bolt expects
            installation.bot_token = bot.get("bot_token")
            installation.bot_refresh_token = bot.get("bot_refresh_token")
            installation.bot_token_expires_at = bot.get("bot_token_expires_at")
        return installation

    def delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        with self._locked(enterprise_id, team_id):
            record = self._workspace(enterprise_id, team_id)
            record["bot"] = None
            self._keep(enterprise_id, team_id, record)

    def delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        with self._locked(enterprise_id, team_id):
            record = self._workspace(enterprise_id, team_id)
            record["users"].pop(user_id or NONE, None)
            if record.get("latest") == (user_id or NONE):
                record["latest"] = next(iter(record["users"]), None)
            self._keep(enterprise_id, team_id, record)

    def delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        self.records.delete(TEAM, team_id_of(enterprise_id, team_id))

    def _keep(self, enterprise_id: str | None, team_id: str | None, record: dict[str, Any]) -> None:
        if record.get("bot") is None and not record["users"]:
            self.records.delete(TEAM, team_id_of(enterprise_id, team_id))
        else:
            self.records.put(TEAM, team_id_of(enterprise_id, team_id), record)


class TableOAuthStateStore(OAuthStateStore):
    """slack_sdk's ``OAuthStateStore``: a state is issued once, consumed once, within
    ``expiration_seconds``."""

    def __init__(
        self,
        records: Installations,
        *,
        expiration_seconds: int = 600,
        logger: Logger | None = None,
        token: Callable[[], str] = lambda: secrets.token_urlsafe(24),
    ) -> None:
        self.records = records
        self.expiration_seconds = expiration_seconds
        self._logger = logger or logging.getLogger(__name__)
        self._token = token

    @property
    def logger(self) -> Logger:
        return self._logger

    def issue(self, *args: Any, **kwargs: Any) -> str:
        state = self._token()
        self.records.put(STATE, state, {"issued_at": time.time()}, ttl=self.expiration_seconds)
        return state

    def consume(self, state: str) -> bool:
        try:
            return self.records.take(STATE, state) is not None
        except ValueError:  # not a state we could have issued (an invalid id)
            return False
