"""Slack on Lambda: slash commands, Events API and interactivity through the session core.

``handler`` is the Lambda entry point (``POST /slack/events``). Bolt verifies the signature
(``X-Slack-Signature`` over the raw bytes, 300 s window) and answers ``url_verification`` and
``ssl_check``; our listeners turn payloads into bot messages and run them as turns.

Who retries what (DESIGN.md):

- Events API: the turn runs inline (load, turn, commit, send, 200). An error of ours before
  the commit answers 5xx, so Slack redelivers; ``event_id`` makes that safe.
- Slash commands and interactivity: Slack never redelivers them. A fast turn answers in the
  ack's body (commands) or through ``response_url`` (actions); an error of ours is a 200 with
  a short apology and a log line.
- A turn the bot declares slow (from the message alone, before the ack) is acked at once and
  handed off (``handlers.deferral``); slash commands and actions then answer through
  ``response_url``, events through ``chat.postMessage``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request import payload_utils
from slack_sdk import WebClient
from slack_sdk.webhook import WebhookClient

from bot.messages import Message
from bot.todo import DONE_ACTION
from handlers import slack_payloads as payloads
from handlers.deferral import DEFERRED_KEY, Deferrer, Job, default_deferrer
from handlers.http import BadRequest, from_lambda, response
from handlers.settings import Settings
from handlers.turns import Bot, Entry, bot_turn, build_edge, replies_from
from sessions import (
    ConversationKey,
    InvalidKeyError,
    SessionError,
    Sessions,
)

log = logging.getLogger("handlers.slack")

APOLOGY = "Sorry, something went wrong on my side. Please try again in a moment."
SLASH_COMMAND = "/todo"


class SlackEdge:
    """The Slack adapter: a Bolt app whose listeners run bot turns through ``sessions``.

    Args:
        settings: secrets and URLs (``SLACK_SIGNING_SECRET`` is required).
        sessions: the session core over the configured store.
        bot: the pure bot (``turn``, ``is_slow``).
        deferrer: where slow turns go; default: async self-invoke inside Lambda, a thread
            pool outside it.
        web: the Web API client (``chat.postMessage``), built for ``SLACK_API_URL``.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        sessions: Sessions,
        bot: Bot,
        deferrer: Deferrer | None = None,
        web: WebClient | None = None,
    ) -> None:
        settings.require("slack_signing_secret")
        self.settings = settings
        self.sessions = sessions
        self.bot = bot
        self.web = web or WebClient(
            token=settings.slack_bot_token, base_url=settings.slack_api_url, timeout=5
        )
        self.deferrer = deferrer or default_deferrer(settings, self.run_deferred)
        # Bolt warns at construction that SLACK_BOT_TOKEN (which it reads itself) is unused:
        # we pass our own authorize and client on purpose, so those two lines are muted.
        level = log.level
        log.setLevel(logging.ERROR)
        try:
            self.app = App(
                signing_secret=settings.slack_signing_secret,
                authorize=self._authorizer(),
                client=self.web,
                process_before_response=True,  # Lambda stops when we return: work before it
                logger=log,
            )
        finally:
            log.setLevel(level)
        self.app.command(SLASH_COMMAND)(self._on_command)
        self.app.event("message")(self._on_message)
        self.app.event(re.compile(".*"))(self._on_other_event)
        self.app.action(DONE_ACTION)(self._on_action)
        self.app.error(_on_bolt_error)

    # -- Lambda ------------------------------------------------------------------------------

    def handle(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        if isinstance(event, Mapping) and DEFERRED_KEY in event:
            # Our own async invoke: raise on failure so Lambda retries, then the failure
            # destination keeps the job.
            self.run_deferred(event[DEFERRED_KEY])
            return {"ok": True}
        try:
            request = from_lambda(event)
        except BadRequest as exc:
            log.warning("unreadable Lambda event: %s", exc)
            return response(400, "bad request")
        if request.method != "POST":
            return response(405, "method not allowed", headers={"allow": "POST"})
        # Our own check first, over the raw bytes: Bolt parses bodies eagerly and its verifier
        # raises on a malformed timestamp header, and neither may turn bad input into a 5xx.
        # (Bolt verifies again; that costs one HMAC.)
        if not self._signed(request.body, request.headers):
            log.warning("rejected Slack request: bad, stale or missing signature")
            return response(401, "invalid signature")
        try:
            bolt_request = BoltRequest(
                body=request.body.decode("utf-8"),
                query={k: tuple(v) for k, v in request.query.items()},  # type: ignore[arg-type]
                headers=dict(request.headers),
            )
        except (ValueError, LookupError, TypeError, AttributeError) as exc:
            # Undecodable bytes, malformed JSON, or a payload whose shape Bolt's context
            # extraction trips over (it indexes Slack's fields without checking them).
            log.warning("rejected signed request with a malformed body: %r", exc)
            return response(400, "malformed body")
        if not _bolt_can_read(bolt_request.body):
            log.warning("rejected signed request with a payload of an unknown shape")
            return response(400, "malformed payload")
        bolt_response = self.app.dispatch(bolt_request)
        if bolt_response.status == 401:
            log.warning("rejected Slack request: bad or missing signature")
        return response(
            bolt_response.status,
            bolt_response.body,
            content_type=bolt_response.first_headers().get("content-type", "text/plain"),
        )

    def _signed(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """Slack's v0 signature over the raw bytes, within 300 s; never raises on any header."""
        timestamp = headers.get("x-slack-request-timestamp", "")
        signature = headers.get("x-slack-signature", "")
        if not (timestamp.isascii() and timestamp.isdigit()):
            return False
        if abs(time.time() - int(timestamp)) > 300:
            return False
        base = b"v0:" + timestamp.encode() + b":" + body
        secret = str(self.settings.slack_signing_secret).encode()
        expected = b"v0=" + hmac.new(secret, base, hashlib.sha256).hexdigest().encode()
        return hmac.compare_digest(expected, signature.encode("utf-8", "surrogateescape"))

    def _authorizer(self) -> Any:
        token = self.settings.slack_bot_token

        # One bot token: no auth.test call, nothing sent to Slack at start-up or per request.
        # (A closure, not a method: Bolt injects arguments by name and trips over ``self``.)
        def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
            return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=token)

        return authorize

    # -- the turn -----------------------------------------------------------------------------

    def _post_sender(self, channel: str) -> Any:
        def send(key: ConversationKey, replies: Sequence[dict[str, Any]]) -> None:
            message = payloads.render(replies_from(replies))
            self.web.chat_postMessage(channel=channel, **message)

        return send

    @staticmethod
    def _respond_sender(response_url: str) -> Any:
        def send(key: ConversationKey, replies: Sequence[dict[str, Any]]) -> None:
            message = payloads.render(replies_from(replies))
            result = WebhookClient(response_url, timeout=5).send(
                response_type="ephemeral", replace_original=False, **message
            )
            if result.status_code >= 300:
                raise ConnectionError(f"response_url answered {result.status_code}")

        return send

    # -- listeners ----------------------------------------------------------------------------

    def _on_command(self, ack: Any, body: dict[str, Any]) -> BoltResponse | None:
        try:
            key = payloads.command_key(body)
        except InvalidKeyError as exc:
            log.warning("slash command with an invalid key: %s", exc)
            return BoltResponse(status=400, body="invalid team, channel or user id")
        trigger_id = str(body.get("trigger_id") or "")
        message = Message(text=str(body.get("text") or ""))
        if not trigger_id:
            log.warning("slash command without trigger_id")
            return BoltResponse(status=400, body="missing trigger_id")
        if self.bot.is_slow(message):
            self._defer_interactive(ack, "command", key, f"trigger:{trigger_id}", message, body)
            return None
        try:
            result = self.sessions.run(
                key, f"trigger:{trigger_id}", bot_turn(self.bot, with_response=True), message
            )
        except SessionError:
            log.exception("slash command turn failed", extra={"pk": key.pk})
            ack(text=APOLOGY, response_type="ephemeral")
            return None
        ack(response_type="ephemeral", **payloads.render(replies_from(result.response or [])))
        return None

    def _on_action(
        self, ack: Any, body: dict[str, Any], action: dict[str, Any]
    ) -> BoltResponse | None:
        try:
            key = payloads.action_key(body)
        except InvalidKeyError as exc:
            log.warning("action with an invalid key: %s", exc)
            return BoltResponse(status=400, body="invalid team, channel or user id")
        idempotency_key = payloads.action_idempotency_key(body, action)
        message = payloads.message_from_action(action)
        if self.bot.is_slow(message):
            self._defer_interactive(ack, "action", key, idempotency_key, message, body)
            return None
        response_url = str(body.get("response_url") or "")
        sender = self._respond_sender(response_url) if response_url else None
        try:
            self.sessions.run(key, idempotency_key, bot_turn(self.bot), message, sender=sender)
        except SessionError:
            log.exception("action turn failed", extra={"pk": key.pk})
            if sender is not None:
                self._apologise(response_url)
        ack()
        return None

    def _on_message(
        self, ack: Any, body: dict[str, Any], event: dict[str, Any]
    ) -> BoltResponse | None:
        reason = payloads.ignored_message(body, event)
        if reason:
            log.info("ignored Slack event: %s", reason)
            ack()
            return None
        event_id = str(body.get("event_id") or "")
        try:
            key = payloads.event_key(body)
            if not event_id:
                raise InvalidKeyError("missing event_id")
        except InvalidKeyError as exc:
            log.warning("event with an invalid key: %s", exc)
            return BoltResponse(status=400, body="invalid event")
        message = Message(text=str(event.get("text") or ""))
        event_time = _number(body.get("event_time"))
        channel = key.channel
        if self.bot.is_slow(message):
            job = _job("event", key, f"event:{event_id}", message, event_time=event_time)
            try:
                self.deferrer.submit(job)
            except Exception:
                log.exception("could not hand off a slow event; Slack will redeliver")
                return BoltResponse(status=503, body="busy")
            ack()
            return None
        try:
            self.sessions.run(
                key,
                f"event:{event_id}",
                bot_turn(self.bot),
                message,
                event_time=event_time,
                sender=self._post_sender(channel),
            )
        except SessionError:
            # Nothing was committed: answer 5xx and let Slack redeliver (event_id dedups).
            log.exception("event turn failed before the commit", extra={"pk": key.pk})
            return BoltResponse(status=503, body="retry later")
        ack()
        return None

    @staticmethod
    def _on_other_event(ack: Any, body: dict[str, Any]) -> None:
        # Unhandled event types still get 200: a 404 would count as a failed delivery.
        log.info("ignored Slack event type %s", (body.get("event") or {}).get("type"))
        ack()

    def _defer_interactive(
        self,
        ack: Any,
        kind: str,
        key: ConversationKey,
        idempotency_key: str,
        message: Message,
        body: Mapping[str, Any],
    ) -> None:
        response_url = str(body.get("response_url") or "")
        job = _job(kind, key, idempotency_key, message, response_url=response_url)
        try:
            self.deferrer.submit(job)
        except Exception:
            log.exception("could not hand off a slow %s", kind)
            if kind == "command":
                ack(text=APOLOGY, response_type="ephemeral")
            else:
                ack()
            return
        ack()

    def _apologise(self, response_url: str) -> None:
        try:
            WebhookClient(response_url, timeout=5).send(
                text=APOLOGY, response_type="ephemeral", replace_original=False
            )
        except Exception:
            log.exception("could not send the apology either")

    # -- deferred turns -------------------------------------------------------------------------

    def run_deferred(self, job: Job) -> None:
        """Run a handed-off turn. Raises on failure, so whoever runs it retries."""
        key = ConversationKey.slack(**job["key"])
        message = Message.from_dict(job["message"])
        if job["kind"] == "event":
            sender = self._post_sender(key.channel)
        else:
            sender = self._respond_sender(job["response_url"]) if job.get("response_url") else None
        self.sessions.run(
            key,
            job["idempotency_key"],
            bot_turn(self.bot),
            message,
            event_time=job.get("event_time"),
            sender=sender,
        )


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _job(
    kind: str,
    key: ConversationKey,
    idempotency_key: str,
    message: Message,
    *,
    response_url: str = "",
    event_time: float | None = None,
) -> Job:
    return {
        "platform": "slack",
        "kind": kind,
        "key": {
            "team": key.workspace,
            "channel": key.channel,
            "user": key.user,
            "enterprise": key.enterprise,
        },
        "idempotency_key": idempotency_key,
        "message": message.to_dict(),
        "response_url": response_url,
        "event_time": event_time,
    }


_ROOT = Path(__file__).resolve().parent.parent
_OUR_CODE = tuple(str(_ROOT / package) for package in ("handlers", "sessions", "bot"))
_BOLT_READERS = (
    payload_utils.to_options,
    payload_utils.to_shortcut,
    payload_utils.to_action,
    payload_utils.to_view,
    payload_utils.to_command,
    payload_utils.to_event,
    payload_utils.to_message,
    payload_utils.to_step,
)


def _bolt_can_read(body: Any) -> bool:
    """Whether Bolt's payload readers (which every listener match and error handler runs,
    indexing Slack's fields unchecked) accept this body without raising."""
    try:
        for read in _BOLT_READERS:
            read(body)
    except (LookupError, TypeError, AttributeError, ValueError):
        return False
    return True


def _on_bolt_error(error: Exception) -> BoltResponse:
    """Bolt's error handler (middleware, listener matching and listeners).

    The request is already signed and its payload readable by then (``_bolt_can_read``). An
    exception raised in our own code (a listener, the session core, the bot) is an error of
    ours: 500, so that Slack retries what it can. One raised inside Bolt alone is Bolt failing
    on a payload Slack never sends: the request is malformed, 400, never a 5xx.
    """
    frames = traceback.extract_tb(error.__traceback__)
    if any(f.filename.startswith(_OUR_CODE) for f in frames):
        log.error("Slack listener failed", exc_info=error)
        return BoltResponse(status=500, body="internal error")
    log.warning("rejected signed request Bolt could not route: %r", error)
    return BoltResponse(status=400, body="malformed payload")


def build(settings: Settings | None = None, **overrides: Any) -> SlackEdge:
    """The edge as the environment configures it (``overrides`` for tests and the server)."""
    return build_edge(SlackEdge, settings, **overrides)


#: Lambda entry point: ``handlers/slack.handler``.
handler = Entry(build)
reset = handler.reset
