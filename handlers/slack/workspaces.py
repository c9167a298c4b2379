"""Many workspaces (``SLACK_CLIENT_ID``): whether an event's workspace is installed (one with
no installation is acked and dropped), an uninstall's or a revocation's event, and the Web API
client with a workspace's token now (``handlers.slack.oauth`` holds the installs and tokens)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from handlers.http import response
from handlers.pipeline import Pipeline
from handlers.pipeline.delivery import Delivery, EraseJob
from handlers.slack import answer as answers
from handlers.slack import parse as payloads
from sessions import ConversationKey
from sessions.privacy import fingerprint, private

if TYPE_CHECKING:
    from slack_sdk import WebClient

    from handlers.slack.oauth import SlackOAuth

log = private(logging.getLogger("handlers.slack"))


def installed(oauth: SlackOAuth | None, pipeline: Pipeline, delivery: Delivery) -> bool:
    """Whether the delivery's workspace has a bot token to answer with (always, with one
    workspace). A workspace with none (never installed, uninstalled) is acked and dropped:
    nothing of it is run or stored, and Slack's retry could not change that."""
    if oauth is None:
        return True
    from handlers.slack.oauth import TokenExpired

    key = delivery.key
    try:
        if oauth.token(key.enterprise, key.workspace, inline=True) is not None:
            return True
    except TokenExpired:
        # Its refresh is never on the ack path: the turn waits for it, deferred.
        if not pipeline.defer(delivery.later()):
            log.error("a turn waiting for its token's refresh could not be deferred")
        return False
    log.warning(
        "event from a workspace with no installation; dropped",
        extra={"team": fingerprint(key.workspace)},
    )
    return False


def web_for(oauth: SlackOAuth, key: ConversationKey) -> WebClient:
    """The Web API client of ``key``'s workspace, with its token now."""
    token = oauth.token(key.enterprise, key.workspace)
    if token is None:  # uninstalled between the turn and its send
        raise ConnectionError("no bot token for this workspace any more")
    return oauth.client(token)


def install_event(
    oauth: SlackOAuth | None,
    pipeline: Pipeline,
    body: Mapping[str, Any],
    event: Mapping[str, Any],
) -> dict[str, Any]:
    """``app_uninstalled``: the workspace (or the org-wide install) is closed, its
    installation goes and its erase runs after the ack, then once more when turns in
    flight can no longer commit; ``tokens_revoked``: the named tokens go. Whose, as Bolt
    reads it: ``authorizations[0]`` (its ``is_enterprise_install``), else the body's ids."""
    if oauth is None:
        return answers.ack()
    enterprise, team, org = payloads.installation_of_event(body)
    if event.get("type") == "app_uninstalled":
        if not oauth.uninstalled(
            enterprise, team, org=org, erase=functools.partial(_erase, oauth, pipeline)
        ):
            return response(503, "retry later")  # Slack retries: the erase must happen
    else:
        tokens = event.get("tokens")
        named = tokens if isinstance(tokens, Mapping) else {}
        users = [u for u in named.get("oauth") or [] if isinstance(u, str)]
        bots = [b for b in named.get("bot") or [] if isinstance(b, str)]
        oauth.revoked(enterprise, team, users, bots, org=org)
    return answers.ack()


def _erase(oauth: SlackOAuth, pipeline: Pipeline, job: EraseJob) -> bool:
    """Hand off an uninstall's erase, and set its settle pass."""
    if not pipeline.defer(job):
        return False
    oauth.settle_later(job)
    return True


def token_refused(oauth: SlackOAuth, key: ConversationKey) -> None:
    """Slack refused a workspace's token (revoked): it goes."""
    oauth.revoked_by_slack(key.enterprise, key.workspace)
