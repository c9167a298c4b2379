"""Each workspace's bot token, for the Slack edge of many workspaces: cached per container
with what invalidates it (the workspace's stone, read again after ``RECHECK`` seconds; a send
Slack refuses; a TTL), refreshed ahead of expiry and never on the ack path (a one-time timer,
a deferred job; only an expired token makes its turn wait, deferred), and the uninstall's
side (the workspace closed, its installation deleted, its erase and settle pass).
``handlers.slack.oauth`` adds the install flow."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.oauth.installation_store.models.bot import Bot

from handlers.pipeline.deferral import DEFERRED_KEY
from handlers.pipeline.delivery import EraseJob, dump
from handlers.settings import Settings
from handlers.slack.installs import TableInstallationStore, team_id_of
from handlers.slack.send import SLACK_TIMEOUT
from sessions import Sessions
from sessions.errors import StoreUnavailableError
from sessions.privacy import fingerprint, private
from sessions.schedules import Schedule, Scheduler, workspace_prefix
from sessions.store import Store, workspace_pk
from sessions.views import CLOSED_FOR

log = private(logging.getLogger("handlers.slack_oauth"))

#: A user's tombstone's life (``Sessions.tombstone_ttl``'s default): an installed-again
#: workspace still refuses events from before its uninstall that long.
TOMBSTONE_TTL = 86_400 + 3600
#: A rotating token (12 h) is refreshed this long before it expires (slack_sdk's default), by
#: a one-time timer set when it is saved; a request that finds it inside this window still
#: uses it and asks for a refresh off the ack path.
ROTATE_BEFORE = 120 * 60
#: A token this close to its expiry counts as expired: the turn that needs it is deferred
#: (the refresh runs there, never on the ack path).
EXPIRED_WITHIN = 60
#: The record kind of a workspace's rotation lock, and how long it holds (it is left to
#: expire, never deleted: a holder never removes another's lock).
ROTATION = "slack-rotation"
ROTATION_LOCK = 30
#: Seconds a container trusts its cached token before it reads the workspace's stone again:
#: an uninstall is final in every container within this time (one read per workspace per
#: container per this many seconds of traffic).
RECHECK = 5.0
#: Seconds after an uninstall when its erase runs again (settles): a turn in flight can no
#: longer commit by then (the functions' timeout is 60 s).
SETTLE_AFTER = 90


class TokenExpired(Exception):
    """The workspace's bot token expired: the turn must wait for its refresh, off the ack."""


@dataclass(slots=True)
class _Cached:
    """A container's cached answer for one (enterprise, team): the token (``None``: not
    installed), its expiry, until when the entry holds, when the workspace's stone was last
    read, and which installation answered (its enterprise and team, ``None`` for org-wide)."""

    token: str | None
    expires_at: float | None
    until: float
    checked: float
    source: tuple[str | None, str | None]
    rotating: bool = False


class WorkspaceTokens:
    """The per-workspace bot tokens of one Slack edge.

    Every cached token says what invalidates it: the workspace's stone (an uninstall in any
    container), read again after :data:`RECHECK` seconds; a send answered ``token_revoked``,
    ``invalid_auth`` or ``account_inactive`` (:meth:`revoked_by_slack`), at once; the entry's
    ``ttl``.
    """

    def __init__(
        self,
        settings: Settings,
        installations: TableInstallationStore,
        *,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.installations = installations
        self.ttl = ttl
        self.clock = clock
        self.wall = wall
        #: Where one-time timers wait (the rotation ahead of expiry, an erase's settle pass);
        #: set by the edge (``None``: no scheduler, the request path asks for refreshes).
        self.scheduler: Scheduler | None = None
        #: Hands a job to the deferral (set by the edge): a refresh off the ack path.
        self.defer: Callable[[dict[str, Any]], bool] | None = None
        self._tokens: dict[tuple[str | None, str | None], _Cached] = {}
        self._clients: dict[str, WebClient] = {}
        self._lock = threading.Lock()

    @property
    def store(self) -> Store:
        return self.installations.records.store

    # -- tokens ------------------------------------------------------------------------

    def token(
        self, enterprise_id: str | None, team_id: str | None, *, inline: bool = False
    ) -> str | None:
        """The bot token of a workspace (or of its org's org-wide install), cached.

        ``inline`` (the webhook, before the ack): a token inside its refresh window is still
        used (a refresh is asked for, off the ack path); an expired one raises
        :class:`TokenExpired` (defer the turn). Not inline (a deferred turn), an expired token
        is refreshed here, once however many containers need it.

        Raises:
            TokenExpired: inline, and the token expired.
            StoreUnavailableError: not inline, and another container is refreshing it (the
                deferral retries the job).
        """
        now = self.clock()
        with self._lock:
            cached = self._tokens.get((enterprise_id, team_id))
        if cached is None or cached.until <= now:
            cached = self._lookup(enterprise_id, team_id, now)
        elif cached.token is not None and now - cached.checked >= RECHECK:
            # Read the stone of the installation that answered (an org-wide install: the
            # org's) before trusting the cache again.
            source = cached.source[1] or cached.source[0]
            stone = self.store.workspace_stone(workspace_pk("slack", source)) if source else None
            if stone is not None and stone.closed and stone.expires_at > self.wall():
                log.info("workspace uninstalled elsewhere; cached token dropped")
                cached = self._cache(enterprise_id, team_id, None, now, cached.source)
            cached.checked = now
        if cached.token is None or cached.expires_at is None:
            return cached.token
        left = cached.expires_at - self.wall()
        if left > ROTATE_BEFORE:
            return cached.token
        if left > EXPIRED_WITHIN:
            self._ask_rotation(cached)
            return cached.token
        if inline:
            self._ask_rotation(cached)
            raise TokenExpired("the bot token expired; the turn waits for its refresh")
        bot = self.rotate(*cached.source)
        if bot is None or not bot.bot_token:
            return None
        self.forget(enterprise_id, team_id)
        return str(bot.bot_token)

    def _lookup(self, enterprise_id: str | None, team_id: str | None, now: float) -> _Cached:
        bot = self.installations.find_bot(enterprise_id=enterprise_id, team_id=team_id)
        source = (enterprise_id, team_id)
        if bot is None and enterprise_id is not None:
            bot = self.installations.find_bot(
                enterprise_id=enterprise_id, team_id=None, is_enterprise_install=True
            )
            source = (enterprise_id, None)
            if bot is not None and team_id:
                self.installations.served(enterprise_id, team_id)
        if bot is None:
            return self._cache(enterprise_id, team_id, None, now, source)
        expires = bot.bot_token_expires_at if bot.bot_refresh_token else None
        return self._cache(
            enterprise_id, team_id, bot, now, source, float(expires) if expires else None
        )

    def _cache(
        self,
        enterprise_id: str | None,
        team_id: str | None,
        bot: Bot | None,
        now: float,
        source: tuple[str | None, str | None],
        expires_at: float | None = None,
    ) -> _Cached:
        # No installation is cached only for RECHECK seconds: an install in another
        # container is seen that soon.
        until = now + (self.ttl if bot is not None else RECHECK)
        token = bot.bot_token if bot is not None else None
        entry = _Cached(token, expires_at, until, now, source)
        with self._lock:
            self._tokens[(enterprise_id, team_id)] = entry
        return entry

    def _ask_rotation(self, cached: _Cached) -> None:
        """A refresh, off the ack path: a deferred job (once per entry per container); the
        job's lock makes it one refresh in all."""
        if cached.rotating or self.defer is None:
            return
        cached.rotating = True
        enterprise_id, team_id = cached.source
        if not self.defer({"kind": "rotate", "enterprise": enterprise_id, "team": team_id}):
            cached.rotating = False

    def rotate(self, enterprise_id: str | None, team_id: str | None) -> Bot | None:
        """Refresh the bot token of an installation (``team_id`` ``None``: org-wide) if it is
        inside its refresh window, once however many containers try at once: the one that
        creates the rotation lock (a record created only if absent, left to expire) reads the
        bot again and refreshes it if still needed; the others find it fresh, or raise.

        Raises:
            StoreUnavailableError: another container holds the lock and the token is not
                fresh yet (a deferred job is retried).
        """
        lock = team_id_of(enterprise_id, team_id)

        def find() -> Bot | None:
            return self.installations.find_bot(
                enterprise_id=enterprise_id, team_id=team_id, is_enterprise_install=team_id is None
            )

        current = find()
        if current is None or not _expiring(current, self.wall()):
            self.forget(enterprise_id, team_id)  # this container reads the fresh one
            return current
        records = self.installations.records
        if not records.create(ROTATION, lock, {"at": self.wall()}, ttl=ROTATION_LOCK):
            current = find()
            if current is None or _expired(current, self.wall()) is False:
                return current  # rotated meanwhile, or still valid: use it
            raise StoreUnavailableError("another container is refreshing this token")
        current = find() or current
        if not _expiring(current, self.wall()):
            return current  # another container rotated it just before us
        try:
            answer = WebClient(
                base_url=self.settings.slack_api_url, timeout=SLACK_TIMEOUT
            ).oauth_v2_access(
                client_id=str(self.settings.slack_client_id),
                client_secret=str(self.settings.slack_client_secret),
                grant_type="refresh_token",
                refresh_token=str(current.bot_refresh_token),
            )
        except Exception as exc:  # Slack refused, the network: the current token still works
            log.warning("token rotation failed: %s", type(exc).__name__)
            return current
        current.bot_token = answer["access_token"]
        current.bot_refresh_token = answer.get("refresh_token")
        current.bot_token_expires_at = int(self.wall() + int(answer["expires_in"]))
        self.installations.save_bot(current)
        self.forget(enterprise_id, team_id)
        self.schedule_rotation(current)
        log.info("bot token rotated", extra={"team": fingerprint(lock)})
        return current

    def schedule_rotation(self, bot: Bot) -> None:
        """A one-time timer at the token's expiry minus :data:`ROTATE_BEFORE` that refreshes
        it (through the scheduler the bots' timers use; named in the workspace's timer
        prefix, so an uninstall's erase cancels it)."""
        expires = bot.bot_token_expires_at
        if self.scheduler is None or not bot.bot_refresh_token or not expires:
            return
        team = None if bot.is_enterprise_install else bot.team_id
        workspace = team or bot.enterprise_id
        if not workspace:
            return
        name = f"{workspace_prefix('slack', workspace)}rotate.{int(expires)}"
        job = {"kind": "rotate", "enterprise": bot.enterprise_id, "team": team}
        try:
            self.scheduler.create(
                Schedule(
                    name=name,
                    at=max(self.wall(), float(expires) - ROTATE_BEFORE),
                    payload={DEFERRED_KEY: job},
                    target="slack",
                )
            )
        except Exception:  # the request path still asks for a refresh inside the window
            log.warning("could not set the token's rotation timer", exc_info=True)

    def client(self, token: str) -> WebClient:
        """A Web API client with ``token`` (one per token per container)."""
        from handlers.slack.retry import NotSentRetryHandler

        with self._lock:
            found = self._clients.get(token)
            if found is None:
                found = self._clients[token] = WebClient(
                    token=token,
                    base_url=self.settings.slack_api_url,
                    timeout=SLACK_TIMEOUT,
                    retry_handlers=[NotSentRetryHandler()],
                )
            return found

    def forget(self, enterprise_id: str | None, team_id: str | None) -> None:
        """Drop a workspace's cached token (installed again, uninstalled, revoked)."""
        with self._lock:
            self._tokens.pop((enterprise_id, team_id), None)
            if team_id is None:  # an org-wide install: every team it answered
                org = (enterprise_id, None)
                for known in [k for k, v in self._tokens.items() if v.source == org]:
                    self._tokens.pop(known, None)

    def revoked_by_slack(self, enterprise_id: str | None, team_id: str | None) -> None:
        """A send was answered ``token_revoked``/``invalid_auth``/``account_inactive``: the
        cached token is dropped at once (the next request reads the store again)."""
        log.warning("Slack refused the bot token; cached token dropped")
        self.forget(enterprise_id, team_id)

    # -- uninstalls ---------------------------------------------------------------------------

    def uninstalled(
        self,
        enterprise_id: str | None,
        team_id: str | None,
        *,
        org: bool = False,
        erase: Callable[[EraseJob], bool],
    ) -> bool:
        """``app_uninstalled``: the workspace (``org``: the org-wide install) is closed
        first (every container stops answering it within :data:`RECHECK` seconds, and no
        conversation of it is created any more); its erases are handed to ``erase`` (the
        team's, or each team the org-wide install answered); then its installation goes.
        ``False`` when an erase could not be handed off: nothing was deleted yet, so Slack's
        retry finds the same teams to erase."""
        team = None if org else team_id
        workspace = enterprise_id if org else team_id
        if not workspace:
            return True
        generation = int(self.wall() * 1000)
        self.store.close_workspace(
            workspace_pk("slack", workspace),
            generation=generation,
            expires_at=int(self.wall()) + CLOSED_FOR,
        )
        teams = [team] if team else self.installations.served_teams(enterprise_id)
        if not all([erase(EraseJob("slack", t, generation)) for t in teams]):
            return False
        self.installations.delete_all(enterprise_id=enterprise_id, team_id=team)
        self.forget(enterprise_id, team)
        log.info("uninstalled", extra={"team": fingerprint(str(workspace))})
        return True

    def settle_later(self, job: EraseJob) -> bool:
        """The erase's settle pass: the same erase again, :data:`SETTLE_AFTER` seconds
        later, by a one-time timer (a turn in flight during the first pass can no longer
        commit then). Whether it was scheduled (no scheduler: not)."""
        if self.scheduler is None:
            return False
        name = f"settle.{fingerprint(f'slack#{job.workspace}')}.{job.generation}"
        try:
            self.scheduler.create(
                Schedule(
                    name=name[:64],
                    at=self.wall() + SETTLE_AFTER,
                    payload={DEFERRED_KEY: {**dump(job), "settle": True}},
                    target="slack",
                )
            )
        except Exception:
            log.warning("could not schedule the erase's settle pass", exc_info=True)
            return False
        return True

    def run_job(self, job: Any, sessions: Sessions) -> bool:
        """A deferred job or a fired timer, before the pipeline sees it: a token's refresh
        (``rotate``) and an erase's settle pass are ours (``True``: done). Any other job of
        a Slack conversation gets its token first: an expired one is refreshed here, before
        the turn (raising to retry when another container is refreshing it), never after
        its commit."""
        if not isinstance(job, Mapping):
            return False
        if job.get("kind") == "rotate":
            self.rotate(_text(job.get("enterprise")), _text(job.get("team")))
            return True
        if job.get("kind") == "erase" and job.get("settle"):
            self.settle(job, sessions)
            return True
        inner = job.get("delivery") if job.get("kind") == "fire" else job  # a timer's fire
        if not isinstance(inner, Mapping) or inner.get("platform") != "slack":
            return False
        key = inner.get("key")
        if isinstance(key, Mapping):
            self.token(_text(key.get("enterprise")), _text(key.get("team")))
        return False

    def settle(self, job: Mapping[str, Any], sessions: Sessions) -> None:
        """Run an erase's settle pass (its timer fired): the same erase, under the same
        generation, while the workspace is still closed by that uninstall (installed again
        meanwhile: skipped, so nothing of the new installation is touched)."""
        workspace, generation = _text(job.get("workspace")), job.get("generation")
        if workspace is None or type(generation) is not int:
            log.error("an erase's settle pass without its workspace or generation; dropped")
            return
        stone = self.store.workspace_stone(workspace_pk("slack", workspace))
        if stone is None or not stone.closed or stone.generation != generation:
            log.info("settle pass skipped: the workspace was installed again")
            return
        sessions.erase_workspace("slack", workspace, generation=generation)

    def revoked(
        self,
        enterprise_id: str | None,
        team_id: str | None,
        users: list[str],
        bots: list[str],
        *,
        org: bool = False,
    ) -> None:
        """``tokens_revoked``: the named users' installations, and the bot if it is named
        (``org``: of the org-wide install)."""
        team = None if org else team_id
        for user in users:
            self.installations.delete_installation(
                enterprise_id=enterprise_id, team_id=team, user_id=user
            )
        bot = self.installations.find_bot(
            enterprise_id=enterprise_id, team_id=team, is_enterprise_install=org
        )
        if bot is not None and bot.bot_user_id in bots:
            self.installations.delete_bot(enterprise_id=enterprise_id, team_id=team)
        self.forget(enterprise_id, team)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _expiring(bot: Bot, now: float) -> bool:
    """Whether a rotating bot token is inside its refresh window."""
    expires = bot.bot_token_expires_at
    return bool(bot.bot_refresh_token and expires and float(expires) - now < ROTATE_BEFORE)


def _expired(bot: Bot, now: float) -> bool:
    expires = bot.bot_token_expires_at
    return bool(bot.bot_refresh_token and expires and float(expires) - now < EXPIRED_WITHIN)
