"""Sending to Slack: the Web API (``chat.postMessage``, ``chat.postEphemeral``,
``views.open``) and ``response_url``, through slack_sdk's clients.

Replies are sent at most once: the clients retry a call only when it certainly never reached
Slack (connection refused, name not resolved), never after a reset or a timeout. Blocks Slack
refuses fall back to the message's text (Slack refused the whole request: nothing repeats).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RetryHandler, RetryState
from slack_sdk.http_retry import request as retry_request
from slack_sdk.http_retry import response as retry_response
from slack_sdk.webhook import WebhookClient

from bot.replies import Modal
from handlers.pipeline.delivery import SlackRoute
from handlers.slack import render
from sessions import ConversationKey
from sessions.privacy import private

log = private(logging.getLogger("handlers.slack"))


class InvalidBlocks(ValueError):
    """Slack refused a message's blocks; nothing was posted."""


class NotSentRetryHandler(RetryHandler):
    """Retry a Slack call only when it certainly never reached Slack (connection refused,
    name not resolved). slack_sdk's default also retries a reset connection, which may follow
    a message Slack already posted: a repeat, where our promise is a reply at most once."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: retry_request.HttpRequest,
        response: retry_response.HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is not None or error is None:
            return False
        reason = getattr(error, "reason", error)
        return isinstance(reason, ConnectionRefusedError | socket.gaierror)


#: Web API errors that mean the workspace's token is gone.
REVOKED = frozenset({"token_revoked", "invalid_auth", "account_inactive", "token_expired"})

#: Seconds a Slack API or response_url call may take: inline replies go out before the ack,
#: and Slack wants the ack within 3 s (Slack's API answers in well under a second).
SLACK_TIMEOUT = 2


def _webhook(url: str) -> WebhookClient:
    return WebhookClient(url, timeout=SLACK_TIMEOUT, retry_handlers=[NotSentRetryHandler()])


class SlackSender:
    """Where a Slack delivery's answers go: its ``response_url``, else the channel through
    the Web API (ephemeral or not); modals through ``views.open`` with the trigger id."""

    def __init__(
        self,
        web: WebClient,
        signing_secret: str,
        *,
        web_for: Callable[[ConversationKey], WebClient] | None = None,
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
            if isinstance(exc, SlackApiError):
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
        except SlackApiError as exc:
            if exc.response.get("error") in ("invalid_blocks", "invalid_blocks_format"):
                raise InvalidBlocks(str(exc.response.get("error"))) from exc
            self.refused(key, exc)
            raise

    def refused(self, key: ConversationKey, exc: SlackApiError) -> None:
        """Drop the workspace's cached token when Slack says it is gone."""
        if self.on_revoked is not None and exc.response.get("error") in REVOKED:
            self.on_revoked(key)
