"""Sending to Slack: the Web API (``chat.postMessage``, ``chat.postEphemeral``,
``views.open``) and ``response_url``, through slack_sdk's clients.

Replies are sent at most once: the clients retry a call only when it certainly never reached
Slack (connection refused, name not resolved), never after a reset or a timeout. Blocks Slack
refuses fall back to the message's text (Slack refused the whole request: nothing repeats).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bot.replies import Modal
from handlers.pipeline.delivery import SlackRoute
from handlers.slack import render
from sessions import ConversationKey
from sessions.privacy import private

if TYPE_CHECKING:
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError
    from slack_sdk.webhook import WebhookClient

    from handlers.slack.webapi import WebAPI

log = private(logging.getLogger("handlers.slack"))


class InvalidBlocks(ValueError):
    """Slack refused a message's blocks; nothing was posted."""


def __getattr__(name: str) -> Any:
    """``NotSentRetryHandler`` (``handlers.slack.retry``), loaded when asked for: it loads
    slack_sdk, which a turn's replies do not need (``handlers.slack.webapi``)."""
    if name == "NotSentRetryHandler":
        from handlers.slack.retry import NotSentRetryHandler

        return NotSentRetryHandler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _api_error() -> type[SlackApiError]:
    """slack_sdk's ``SlackApiError``, imported when an ``except`` clause matches one: after
    a call failed, never on a reply that went out."""
    from slack_sdk.errors import SlackApiError as api_error

    return api_error


#: Web API errors that mean the workspace's token is gone.
REVOKED = frozenset({"token_revoked", "invalid_auth", "account_inactive", "token_expired"})

#: Seconds a Slack API or response_url call may take: inline replies go out before the ack,
#: and Slack wants the ack within 3 s (Slack's API answers in well under a second).
SLACK_TIMEOUT = 2


def _webhook(url: str) -> WebhookClient:
    from slack_sdk.webhook import WebhookClient

    from handlers.slack.retry import NotSentRetryHandler

    return WebhookClient(url, timeout=SLACK_TIMEOUT, retry_handlers=[NotSentRetryHandler()])


class SlackSender:
    """Where a Slack delivery's answers go: its ``response_url``, else the channel through
    the Web API (ephemeral or not); modals through ``views.open`` with the trigger id."""

    def __init__(
        self,
        web: WebClient | WebAPI,
        signing_secret: str,
        *,
        web_for: Callable[[ConversationKey], WebClient | WebAPI] | None = None,
        on_revoked: Callable[[ConversationKey], None] | None = None,
    ) -> None:
        self.web = web
        self.signing_secret = signing_secret
        #: Told when Slack refuses a workspace's token (``token_revoked``, ``invalid_auth``,
        #: ``account_inactive``): the cached token is dropped at once.
        self.on_revoked = on_revoked
        #: The Web API client of a conversation's workspace (its own bot token, when the app
        #: is installed in many); default: the one client.
        self.web_for = web_for or (lambda _key: self.web)

    def open_modal(self, route: SlackRoute, key: ConversationKey, modal: Modal) -> bool:
        if not route.trigger_id:
            return False
        try:
            self.web_for(key).views_open(
                trigger_id=route.trigger_id,
                view=render.modal_view(modal, key=key, secret=self.signing_secret),
            )
        except Exception as exc:
            if isinstance(exc, _api_error()):
                self.refused(key, exc)
            log.warning("views.open failed; sending the modal's fallback", exc_info=True)
            return False
        return True

    def post(self, route: SlackRoute, key: ConversationKey, message: dict[str, Any]) -> None:
        """Send one message where the route's answers go. Blocks Slack refuses (a bot's own
        Block Kit that does not validate) fall back to the message's text: Slack refused the
        whole request, so sending again cannot repeat anything."""
        visibility = message.pop("visibility")
        replace = bool(message.pop("replace", False))
        try:
            self.send_once(route, key, visibility, message, replace=replace)
        except InvalidBlocks as exc:
            log.warning("Slack refused the blocks (%s); sending the text alone", type(exc).__name__)
            self.send_once(route, key, visibility, {"text": message.get("text") or " "})

    def send_once(
        self,
        route: SlackRoute,
        key: ConversationKey,
        visibility: str | None,
        message: dict[str, Any],
        *,
        replace: bool = False,
    ) -> None:
        try:
            if route.response_url:
                result = _webhook(route.response_url).send(
                    response_type=visibility or "ephemeral", replace_original=replace, **message
                )
                if result.status_code == 400 and "invalid_blocks" in (result.body or ""):
                    raise InvalidBlocks(result.body)
                if result.status_code >= 300:
                    raise ConnectionError(f"response_url answered {result.status_code}")
            elif visibility == "ephemeral":
                self.web_for(key).chat_postEphemeral(channel=key.channel, user=key.user, **message)
            else:
                self.web_for(key).chat_postMessage(channel=key.channel, **message)
        except _api_error() as exc:
            if exc.response.get("error") in ("invalid_blocks", "invalid_blocks_format"):
                raise InvalidBlocks(str(exc.response.get("error"))) from exc
            self.refused(key, exc)
            raise

    def refused(self, key: ConversationKey, exc: SlackApiError) -> None:
        """Drop the workspace's cached token when Slack says it is gone."""
        if self.on_revoked is not None and exc.response.get("error") in REVOKED:
            self.on_revoked(key)
