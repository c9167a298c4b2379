"""Install once, serve every workspace: Slack's OAuth v2 flow and the authorisation of each
request with its own workspace's bot token.

    GET /slack/install          an "Add to Slack" page whose link carries a one-time state
    GET /slack/oauth_redirect   Slack sends the installer back with ``code`` and ``state``:
                                the state is consumed (once), the code exchanged with
                                ``oauth.v2.access`` at ``SLACK_API_URL``, the installation
                                stored sealed (``handlers.installs``), a page says how it went

``SLACK_CLIENT_ID`` and ``SLACK_CLIENT_SECRET`` turn it on (SSM in the deploy); without them the
app serves the one workspace of ``SLACK_BOT_TOKEN``. A request's bot token is its workspace's
(an org-wide Enterprise Grid install answers every team of the org), cached per container for
``ttl`` seconds, so a warm turn of a known workspace costs no request. A workspace with no
installation (never installed, or uninstalled) is not answered: its events are acked and
dropped, and nothing of them is stored.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from slack_sdk import WebClient
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation

from handlers.http import HttpRequest, response
from handlers.installs import TableInstallationStore, TableOAuthStateStore, team_id_of
from handlers.settings import Settings
from handlers.slack_send import SLACK_TIMEOUT
from sessions.privacy import fingerprint, private

log = private(logging.getLogger("handlers.slack_oauth"))

INSTALL_PATH = "/slack/install"  # the Slack edge's OAUTH_PATHS name the same two
REDIRECT_PATH = "/slack/oauth_redirect"
#: A rotating token (12 h) is refreshed this long before it expires (slack_sdk's default).
ROTATE_BEFORE = 120 * 60
#: The record kind of a workspace's rotation lock, and how long the lock holds at most.
ROTATION = "slack-rotation"
ROTATION_LOCK = 30


class SlackOAuth:
    """The install routes and the per-workspace bot tokens of one Slack edge."""

    def __init__(
        self,
        settings: Settings,
        installations: TableInstallationStore,
        states: TableOAuthStateStore,
        *,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.installations = installations
        self.states = states
        self.ttl = ttl
        self.clock = clock
        self._tokens: dict[tuple[str | None, str | None], tuple[str | None, float]] = {}
        self._clients: dict[str, WebClient] = {}
        self._lock = threading.Lock()

    # -- the install flow ---------------------------------------------------------------------

    def handle(self, request: HttpRequest) -> dict[str, Any] | None:
        """The answer to an install route (``None``: not one of ours)."""
        if request.path == INSTALL_PATH:
            return self.install(request)
        if request.path == REDIRECT_PATH:
            return self.redirect(request)
        return None

    def redirect_uri(self, request: HttpRequest) -> str:
        if self.settings.slack_redirect_uri:
            return self.settings.slack_redirect_uri
        host = request.header("host") or "localhost"
        scheme = request.header("x-forwarded-proto") or (
            "http" if host.startswith(("127.0.0.1", "localhost")) else "https"
        )
        return f"{scheme}://{host}{REDIRECT_PATH}"

    def install(self, request: HttpRequest) -> dict[str, Any]:
        """The "Add to Slack" page: a link to Slack's authorize page with a fresh state."""
        state = self.states.issue()
        query = {
            "client_id": str(self.settings.slack_client_id),
            "scope": self.settings.slack_scopes,
            "user_scope": self.settings.slack_user_scopes,
            "state": state,
            "redirect_uri": self.redirect_uri(request),
        }
        url = f"{self.settings.slack_authorize_url}?{urlencode(query)}"
        body = (
            "<!doctype html><meta charset=utf-8><title>Add to Slack</title>"
            f'<p><a id="add-to-slack" href="{html.escape(url)}">Add to Slack</a></p>'
        )
        return response(200, body, content_type="text/html; charset=utf-8")

    def redirect(self, request: HttpRequest) -> dict[str, Any]:
        """Slack's redirect: consume the state, exchange the code, store the installation."""
        if request.first("error"):
            log.info("installation cancelled by the installer")
            return _page(200, "Installation cancelled", "Nothing was installed.")
        code, state = request.first("code"), request.first("state")
        if not code or not state or not self.states.consume(state):
            log.warning("OAuth redirect with a missing, used or expired state")
            return _page(
                400,
                "This installation link expired or was used already",
                "Start again from the Add to Slack page.",
            )
        client = WebClient(base_url=self.settings.slack_api_url, timeout=SLACK_TIMEOUT)
        try:
            answer = client.oauth_v2_access(
                client_id=str(self.settings.slack_client_id),
                client_secret=str(self.settings.slack_client_secret),
                code=code,
                redirect_uri=self.redirect_uri(request),
            ).data
        except Exception as exc:  # SlackApiError (invalid_code...), the network
            log.warning("oauth.v2.access failed: %s", type(exc).__name__)
            return _page(400, "Slack refused the installation", "Start again from Add to Slack.")
        installation = installation_of(answer)  # type: ignore[arg-type]
        self.installations.save(installation)
        self.forget(installation.enterprise_id, installation.team_id)
        log.info(
            "installed",
            extra={"team": fingerprint(str(installation.team_id or installation.enterprise_id))},
        )
        name = installation.team_name or installation.enterprise_name or "your workspace"
        return _page(200, "Installed", f"The app is installed in {name}. You can close this.")

    # -- authorisation ------------------------------------------------------------------------

    def token(self, enterprise_id: str | None, team_id: str | None) -> str | None:
        """The bot token of a workspace (or of its org's org-wide install), cached."""
        now = self.clock()
        with self._lock:
            cached = self._tokens.get((enterprise_id, team_id))
        if cached is not None and cached[1] > now:
            return cached[0]
        bot, org = self.installations.find_bot(enterprise_id=enterprise_id, team_id=team_id), False
        if bot is None and enterprise_id is not None:
            bot = self.installations.find_bot(
                enterprise_id=enterprise_id, team_id=None, is_enterprise_install=True
            )
            org = True
        if bot is not None and _expiring(bot):
            bot = self._rotate(bot, enterprise_id, None if org else team_id)
        token = bot.bot_token if bot is not None else None
        with self._lock:
            self._tokens[(enterprise_id, team_id)] = (token, now + self.ttl)
        return token

    def _rotate(self, bot: Bot, enterprise_id: str | None, team_id: str | None) -> Bot:
        """Refresh an expiring bot token (token rotation), once however many requests find
        it expiring at the same time: the one that takes the workspace's rotation lock (a
        record created only if absent) reads the bot again, refreshes it if still expiring
        and saves it; the others wait for the new token, or use the current one, which is
        still valid (rotation starts well before the expiry)."""
        lock = team_id_of(enterprise_id, team_id)
        records = self.installations.records

        def find() -> Bot | None:
            return self.installations.find_bot(
                enterprise_id=enterprise_id, team_id=team_id, is_enterprise_install=team_id is None
            )

        if records.create(ROTATION, lock, {"at": time.time()}, ttl=ROTATION_LOCK):
            try:
                current = find() or bot
                if not _expiring(current):
                    return current  # another request rotated it just before us
                answer = WebClient(
                    base_url=self.settings.slack_api_url, timeout=SLACK_TIMEOUT
                ).oauth_v2_access(
                    client_id=str(self.settings.slack_client_id),
                    client_secret=str(self.settings.slack_client_secret),
                    grant_type="refresh_token",
                    refresh_token=str(current.bot_refresh_token),
                )
                current.bot_token = answer["access_token"]
                current.bot_refresh_token = answer.get("refresh_token")
                current.bot_token_expires_at = int(time.time() + int(answer["expires_in"]))
                self.installations.save_bot(current)
                log.info("bot token rotated", extra={"team": fingerprint(lock)})
                return current
            except Exception as exc:  # Slack refused, the network: the current token still works
                log.warning("token rotation failed: %s", type(exc).__name__)
                return bot
            finally:
                records.delete(ROTATION, lock)
        for _ in range(20):  # another request is rotating: its token, within 2 s
            time.sleep(0.1)
            rotated = find()
            if rotated is not None and not _expiring(rotated):
                return rotated
        return bot

    def client(self, token: str) -> WebClient:
        """A Web API client with ``token`` (one per token per container)."""
        from handlers.slack_send import NotSentRetryHandler

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

    def uninstalled(self, enterprise_id: str | None, team_id: str | None) -> None:
        """``app_uninstalled``: the workspace's installation goes (tokens and all)."""
        self.installations.delete_all(enterprise_id=enterprise_id, team_id=team_id)
        self.forget(enterprise_id, team_id)
        log.info("uninstalled", extra={"team": fingerprint(str(team_id or enterprise_id))})

    def revoked(
        self, enterprise_id: str | None, team_id: str | None, users: list[str], bots: list[str]
    ) -> None:
        """``tokens_revoked``: the named users' installations, and the bot if it is named."""
        for user in users:
            self.installations.delete_installation(
                enterprise_id=enterprise_id, team_id=team_id, user_id=user
            )
        bot = self.installations.find_bot(enterprise_id=enterprise_id, team_id=team_id)
        if bot is not None and bot.bot_user_id in bots:
            self.installations.delete_bot(enterprise_id=enterprise_id, team_id=team_id)
        self.forget(enterprise_id, team_id)


def _expiring(bot: Bot) -> bool:
    """Whether a rotating bot token is close enough to its expiry to refresh it now."""
    expires = bot.bot_token_expires_at
    return bool(bot.bot_refresh_token and expires and expires - time.time() < ROTATE_BEFORE)


def installation_of(answer: dict[str, Any]) -> Installation:
    """An ``oauth.v2.access`` answer as slack_sdk's ``Installation``."""
    team = answer.get("team") or {}
    enterprise = answer.get("enterprise") or {}
    user = answer.get("authed_user") or {}
    now = time.time()
    return Installation(
        app_id=answer.get("app_id"),
        enterprise_id=enterprise.get("id"),
        enterprise_name=enterprise.get("name"),
        team_id=team.get("id"),
        team_name=team.get("name"),
        bot_token=answer.get("access_token"),
        bot_user_id=answer.get("bot_user_id"),
        bot_scopes=str(answer.get("scope") or ""),
        bot_refresh_token=answer.get("refresh_token"),
        bot_token_expires_at=int(now + answer["expires_in"]) if answer.get("expires_in") else None,
        user_id=str(user.get("id") or ""),
        user_token=user.get("access_token"),
        user_scopes=str(user.get("scope") or ""),
        is_enterprise_install=bool(answer.get("is_enterprise_install")),
        token_type=answer.get("token_type"),
        installed_at=now,
    )


def _page(status: int, title: str, text: str) -> dict[str, Any]:
    body = (
        f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>"
    )
    return response(status, body, content_type="text/html; charset=utf-8")
