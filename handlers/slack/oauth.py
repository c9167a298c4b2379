"""Install once, serve every workspace: Slack's OAuth v2 flow (``handlers.slack.tokens``: each
workspace's bot token for the requests).

    GET /slack/install          an "Add to Slack" page whose link carries a signed state (no
                                record: anonymous visits cost nothing), the same state in a
                                cookie of the installer's browser, as Bolt does
    GET /slack/oauth_redirect   Slack sends the installer back with ``code`` and ``state``:
                                the state must be this browser's cookie's, is used once, the
                                code exchanged with ``oauth.v2.access`` at ``SLACK_API_URL``,
                                the installation stored sealed (``handlers.slack.installs``), the
                                workspace open again, a page says how it went

``SLACK_CLIENT_ID`` and ``SLACK_CLIENT_SECRET`` turn it on (SSM in the deploy); without them the
app serves the one workspace of ``SLACK_BOT_TOKEN``.
"""

from __future__ import annotations

import hmac
import html
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from slack_sdk import WebClient
from slack_sdk.oauth.installation_store.models.installation import Installation

from handlers.http import HttpRequest, response
from handlers.settings import Settings
from handlers.slack.installs import TableInstallationStore, TableOAuthStateStore
from handlers.slack.send import SLACK_TIMEOUT
from handlers.slack.tokens import (
    RECHECK,
    ROTATE_BEFORE,
    SETTLE_AFTER,
    TOMBSTONE_TTL,
    TokenExpired,
    WorkspaceTokens,
)
from sessions.privacy import fingerprint, private
from sessions.store import workspace_pk

log = private(logging.getLogger("handlers.slack_oauth"))

INSTALL_PATH = "/slack/install"  # the Slack edge's OAUTH_PATHS name the same two
REDIRECT_PATH = "/slack/oauth_redirect"
#: The cookie that binds an install to the browser that started it (Bolt's name).
STATE_COOKIE = "slack-app-oauth-state"


class SlackOAuth(WorkspaceTokens):
    """The install routes of one Slack edge, and (``WorkspaceTokens``) each workspace's bot
    token."""

    def __init__(
        self,
        settings: Settings,
        installations: TableInstallationStore,
        states: TableOAuthStateStore,
        *,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(settings, installations, ttl=ttl, clock=clock, wall=wall)
        self.states = states

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
        """The "Add to Slack" page: a link to Slack's authorize page with a fresh state, the
        same state in a cookie of the installer's browser (as Bolt does; checked at the
        redirect). Nothing is stored: the state is signed."""
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
        cookie = self._cookie(request, state, self.states.expiration_seconds)
        return response(
            200, body, content_type="text/html; charset=utf-8", headers={"set-cookie": cookie}
        )

    def _cookie(self, request: HttpRequest, value: str, max_age: int) -> str:
        secure = "; Secure" if self.redirect_uri(request).startswith("https://") else ""
        return f"{STATE_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"

    def redirect(self, request: HttpRequest) -> dict[str, Any]:
        """Slack's redirect: the state must be the one of this browser's cookie (an install
        started elsewhere is refused with a page that says so), then it is consumed (once),
        the code exchanged, the installation stored."""
        if request.first("error"):
            log.info("installation cancelled by the installer")
            return _page(200, "Installation cancelled", "Nothing was installed.")
        code, state = request.first("code"), request.first("state")
        cookie = request.cookie(STATE_COOKIE)
        if state and (not cookie or not hmac.compare_digest(cookie, state)):
            log.warning("OAuth redirect without this browser's state cookie")
            return _page(
                400,
                "This installation was started in another browser",
                "Start again from the Add to Slack page, in this browser (with cookies on).",
            )
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
        self.installed(installation)
        log.info(
            "installed",
            extra={"team": fingerprint(str(installation.team_id or installation.enterprise_id))},
        )
        name = installation.team_name or installation.enterprise_name or "your workspace"
        done = _page(200, "Installed", f"The app is installed in {name}. You can close this.")
        done["headers"]["set-cookie"] = self._cookie(request, "", 0)  # used: forgotten
        return done

    def installed(self, installation: Installation) -> None:
        """Keep a new installation: the workspace (or org) open again, its records saved,
        its rotation timer set, this container's cache of it dropped."""
        org = bool(installation.is_enterprise_install)
        workspace = installation.enterprise_id if org else installation.team_id
        if workspace:
            self.store.reopen_workspace(
                workspace_pk("slack", workspace), expires_at=int(self.wall()) + TOMBSTONE_TTL
            )
        self.installations.save(installation)
        bot = installation.to_bot() if installation.bot_token else None
        if bot is not None:
            self.schedule_rotation(bot)
        self.forget(installation.enterprise_id, installation.team_id)


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


__all__ = [
    "RECHECK",
    "ROTATE_BEFORE",
    "SETTLE_AFTER",
    "SlackOAuth",
    "TokenExpired",
    "installation_of",
]
