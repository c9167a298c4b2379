"""slack_sdk's retry handler for our clients (``WebClient``, ``WebhookClient``): a call is
sent again only when it certainly never reached Slack (``handlers.slack.webapi.never_reached``,
the one rule ``WebAPI`` follows too)."""

from __future__ import annotations

from slack_sdk.http_retry import RetryHandler, RetryState
from slack_sdk.http_retry import request as retry_request
from slack_sdk.http_retry import response as retry_response

from handlers.slack.webapi import never_reached


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
        return never_reached(error)


__all__ = ["NotSentRetryHandler"]
