"""Slack on Lambda: slash commands, Events API and interactivity through the session core.

``handler`` is the Lambda entry point (``POST /slack/events``). Bolt verifies the signature
(``X-Slack-Signature`` over the raw bytes, 300 s window) and answers ``url_verification`` and
``ssl_check``; our listeners turn payloads into bot messages and run them as turns.

Routing comes from the bot's declarations, never from names in this module: the slash commands
in ``bot.commands``, the button and modal ids in ``bot.actions`` / ``bot.action_prefix``, every
DM. A command the bot does not declare is answered "I don't know /x" (not Bolt's 404); an
undeclared action (a link button, an old message's button) is acked and dropped. A modal the
bot opens carries its conversation in ``private_metadata``, so its ``view_submission`` comes
back as a turn on that conversation; the ack closes the modal at once and the replies go to
the conversation.

Who retries what:

- Events API: the turn runs inline (load, turn, commit, send, 200). An error of ours before
  the commit that can heal (store unavailable, busy) answers 5xx, so Slack redelivers;
  ``event_id`` makes that safe. One that would recur on every delivery (the bot raises, the
  state no longer decodes or is too large) is recorded once as a dead letter and answered
  200, with an apology in the channel; the admin CLI can replay it.
- Slash commands and interactivity: Slack never redelivers them. A fast turn answers in the
  ack's body (commands) or through ``response_url`` (actions); an error of ours is a 200 with
  a short apology and a log line (and a dead letter when it would recur).
- Every path carries the event's time (``event_time``, an action's ``action_ts``, or the
  signed request timestamp), so a user delete is never undone by a late or deferred turn.
- Replies are sent at most once: the Slack clients retry a call only when it certainly never
  reached Slack (connection refused, name resolution), never after a reset or a timeout.
- A turn the bot declares slow (from the message alone, before the ack) is acked at once and
  handed off (``handlers.deferral``); slash commands and actions then answer through
  ``response_url``, events through ``chat.postMessage``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import socket
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request import payload_utils
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RetryHandler, RetryState
from slack_sdk.http_retry import request as retry_request
from slack_sdk.http_retry import response as retry_response
from slack_sdk.webhook import WebhookClient

from bot.messages import Message
from bot.replies import AnyReply, FormErrors, Modal
from handlers import slack_payloads as payloads
from handlers.deferral import DEFERRED_KEY, Deferrer, Job, default_deferrer
from handlers.http import BadRequest, from_lambda, response
from handlers.settings import Settings
from handlers.turns import (
    Effects,
    Entry,
    bot_turn,
    build_edge,
    new_conversation,
    spec_of,
    split,
)
from sessions import (
    ConversationKey,
    InvalidKeyError,
    PermanentError,
    SessionError,
    Sessions,
)

if TYPE_CHECKING:
    from handlers.telemetry import Telemetry

from sessions.privacy import conversation_hash, private

log = private(logging.getLogger("handlers.slack"))

APOLOGY = "Sorry, something went wrong on my side. Please try again in a moment."
#: Seconds an inline turn may spend retrying lost races: Slack gives up after 3 s, and the
#: replies and the ack still have to go out after the commit.
TURN_BUDGET = 2.0


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


#: Seconds a Slack API or response_url call may take: inline replies go out before the ack,
#: and Slack wants the ack within 3 s (Slack's API answers in well under a second).
SLACK_TIMEOUT = 2


def _webhook(url: str) -> WebhookClient:
    return WebhookClient(url, timeout=SLACK_TIMEOUT, retry_handlers=[NotSentRetryHandler()])


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

    #: Logs and metrics around each invocation (set by ``build``; ``None``: off).
    telemetry: Telemetry | None = None

    def __init__(
        self,
        *,
        settings: Settings,
        sessions: Sessions,
        bot: Any,
        deferrer: Deferrer | None = None,
        web: WebClient | None = None,
    ) -> None:
        # Inside Lambda the bot token too: a missing one fails the cold start by name, not
        # the first reply.
        settings.require("slack_signing_secret", *(["slack_bot_token"] * settings.in_lambda))
        self.settings = settings
        self._signing_secret = str(settings.slack_signing_secret or "")
        self.sessions = sessions
        self.spec = spec_of(bot)
        self.bot = self.spec.bot
        self.web = web or WebClient(
            token=settings.slack_bot_token,
            base_url=settings.slack_api_url,
            timeout=SLACK_TIMEOUT,
            retry_handlers=[NotSentRetryHandler()],
        )
        self.deferrer = deferrer or default_deferrer(settings, self.run_deferred)
        self.effects = Effects(
            sessions=sessions, spec=self.spec, deferrer=lambda: self.deferrer,
            run_job=self.run_deferred,
        )  # fmt: skip
        # Bolt warns at construction that SLACK_BOT_TOKEN (which it reads itself) is unused:
        # we pass our own authorize and client on purpose, so those two lines are muted.
        level = log.level
        log.setLevel(logging.ERROR)
        try:
            self.app = App(
                signing_secret=settings.slack_signing_secret,
                # Verified in ``handle`` before Bolt sees the request: one HMAC, not two.
                request_verification_enabled=False,
                authorize=self._authorizer(),
                client=self.web,
                process_before_response=True,  # Lambda stops when we return: work before it
                logger=log,
            )
        finally:
            log.setLevel(level)
        # Everything routes to the bot's declarations, checked in the listeners: a command or
        # action it does not declare is answered (never Bolt's 404), and never reaches it.
        any_id = re.compile(".*")
        self.app.command(any_id)(self._on_command)
        self.app.event("message")(self._on_message)
        self.app.event(any_id)(self._on_other_event)
        self.app.action(any_id)(self._on_action)
        self.app.view_submission(any_id)(self._on_view)
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
            log.warning("unreadable Lambda event: %s", type(exc).__name__)
            return response(400, "bad request")
        if request.method != "POST":
            return response(405, "method not allowed", headers={"allow": "POST"})
        # Our own check, over the raw bytes: Bolt parses bodies eagerly and its verifier raises
        # on a malformed timestamp header, and neither may turn bad input into a 5xx. Bolt's
        # own verification is switched off (every request reaches Bolt only from here).
        if not self._signed(request.body, request.headers):
            log.warning("rejected Slack request: bad, stale or missing signature")
            return response(401, "invalid signature")
        try:
            bolt_request = BoltRequest(
                body=request.body.decode("utf-8"),
                query={k: tuple(v) for k, v in request.query.items()},  # type: ignore[arg-type]
                headers=dict(request.headers),
            )
        except (ValueError, LookupError, TypeError, AttributeError, RecursionError) as exc:
            # Undecodable bytes, malformed or too deeply nested JSON, or a payload whose shape
            # Bolt's context extraction trips over (it indexes Slack's fields unchecked).
            log.warning("rejected signed request with a malformed body: %s", type(exc).__name__)
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

    # -- sending, after the commit ---------------------------------------------------------------

    def _sender(self, job: Job, *, skip_first: bool = False, errors_in_ack: bool = False) -> Any:
        """What runs after ``job``'s turn commits: its replies go out (modals opened), then its
        effects start. ``skip_first``: the first message already went in the ack's body;
        ``errors_in_ack``: form errors go in the ack's body (an inline modal submission)."""

        def send(key: ConversationKey, items: Sequence[dict[str, Any]]) -> None:
            replies, effects = split(items)
            if errors_in_ack:
                replies = [r for r in replies if not isinstance(r, FormErrors)]
            try:
                self._deliver(job, key, replies, skip_first=skip_first)
            finally:
                if effects:
                    self.effects.start(job, effects)

        return send

    def _deliver(
        self, job: Job, key: ConversationKey, replies: Sequence[AnyReply], *, skip_first: bool
    ) -> None:
        plain: list[AnyReply] = []
        for reply in replies:
            if isinstance(reply, Modal):
                if not self._open_modal(job, key, reply):
                    plain.append(reply)  # renders as its fallback text
            else:
                plain.append(reply)
        messages = payloads.render(plain, visibility=_default_visibility(job, key))
        for message in messages[1:] if skip_first else messages:
            self._post(job, key, message)

    def _open_modal(self, job: Job, key: ConversationKey, modal: Modal) -> bool:
        trigger = job.get("trigger_id")
        if not trigger:
            return False
        try:
            self.web.views_open(
                trigger_id=trigger,
                view=payloads.modal_view(modal, key=key, secret=self._signing_secret),
            )
        except Exception:
            log.warning("views.open failed; sending the modal's fallback", exc_info=True)
            return False
        return True

    def _post(self, job: Job, key: ConversationKey, message: dict[str, Any]) -> None:
        """Send one message where ``job``'s answers go. Blocks Slack refuses (a bot's own
        Block Kit that does not validate) fall back to the message's text: Slack refused the
        whole request, so sending again cannot repeat anything."""
        visibility = message.pop("visibility")
        try:
            self._send_once(job, key, visibility, message)
        except InvalidBlocks as exc:
            log.warning("Slack refused the blocks (%s); sending the text alone", type(exc).__name__)
            self._send_once(job, key, visibility, {"text": message.get("text") or " "})

    def _send_once(
        self, job: Job, key: ConversationKey, visibility: str | None, message: dict[str, Any]
    ) -> None:
        response_url = job.get("response_url")
        try:
            if response_url:
                result = _webhook(response_url).send(
                    response_type=visibility or "ephemeral", replace_original=False, **message
                )
                if result.status_code == 400 and "invalid_blocks" in (result.body or ""):
                    raise InvalidBlocks(result.body)
                if result.status_code >= 300:
                    raise ConnectionError(f"response_url answered {result.status_code}")
            elif visibility == "ephemeral":
                self.web.chat_postEphemeral(channel=key.channel, user=key.user, **message)
            else:
                self.web.chat_postMessage(channel=key.channel, **message)
        except SlackApiError as exc:
            if exc.response.get("error") in ("invalid_blocks", "invalid_blocks_format"):
                raise InvalidBlocks(str(exc.response.get("error"))) from exc
            raise

    # -- listeners ----------------------------------------------------------------------------

    def _on_command(
        self, ack: Any, body: dict[str, Any], request: BoltRequest
    ) -> BoltResponse | None:
        command = body.get("command")
        if not isinstance(command, str) or not self.spec.handles_command(command):
            log.warning("slash command %r is not one the bot declares", command)
            ack(text=f"Sorry, I don't know {str(command)[:40]}.", response_type="ephemeral")
            return None
        try:
            key = payloads.command_key(body)
        except InvalidKeyError as exc:
            log.warning("slash command with an invalid key: %s", exc)
            return BoltResponse(status=400, body="invalid team, channel or user id")
        trigger_id = body.get("trigger_id")
        if not trigger_id or not isinstance(trigger_id, str):
            log.warning("slash command without trigger_id")
            return BoltResponse(status=400, body="missing trigger_id")
        when = payloads.event_time(body, request.headers)
        message = payloads.command_message(body, key, when)
        response_url = str(body.get("response_url") or "")
        job = _job("command", key, f"trigger:{trigger_id}", message, event_time=when,
                   response_url=response_url, trigger_id=trigger_id)  # fmt: skip
        if self.spec.is_slow(message):
            self._defer_interactive(ack, job)
            return None
        try:
            result = self._run(job, bot_turn(self.spec, with_response=True),
                               sender=self._sender(job, skip_first=True))  # fmt: skip
        except InvalidKeyError as exc:
            log.warning("slash command with an invalid id: %s", exc)
            return BoltResponse(status=400, body="invalid trigger_id")
        except SessionError:
            # Slack never redelivers a command: the user hears about it, we log it (and a
            # permanent error is kept as a dead letter to replay).
            log.exception(
                "slash command turn failed",
                extra={"conversation": conversation_hash(key.pk, key.sk)},
            )
            ack(text=APOLOGY, response_type="ephemeral")
            return None
        replies, _ = split(result.response or [])
        plain = [r for r in replies if not isinstance(r, Modal)]
        messages = payloads.render(plain, visibility="ephemeral")
        if messages:
            first = messages[0]
            ack(response_type=first.pop("visibility") or "ephemeral", **first)
        else:
            ack()
        return None

    def _on_action(
        self, ack: Any, body: dict[str, Any], action: dict[str, Any], request: BoltRequest
    ) -> BoltResponse | None:
        action_id = action.get("action_id") if isinstance(action, dict) else None
        if not isinstance(action_id, str) or not self.spec.handles_action(action_id):
            # Link buttons, and actions of messages the bot no longer declares: nothing to do.
            log.info("action %r is not one the bot declares; acked", action_id)
            ack()
            return None
        try:
            key = payloads.action_key(body, secret=self._signing_secret)
        except InvalidKeyError as exc:
            log.warning("action with an invalid key: %s", exc)
            return BoltResponse(status=400, body="invalid team, channel or user id")
        when = payloads.event_time(body, request.headers)
        message = payloads.action_message(body, action, key, when)
        response_url = str(body.get("response_url") or "")
        trigger = body.get("trigger_id") if isinstance(body.get("trigger_id"), str) else None
        job = _job("action", key, payloads.action_idempotency_key(body, action), message,
                   response_url=response_url, event_time=when, trigger_id=trigger)  # fmt: skip
        return self._interactive(ack, job, key, message)

    def _on_view(
        self, ack: Any, body: dict[str, Any], view: dict[str, Any], request: BoltRequest
    ) -> BoltResponse | None:
        callback_id = view.get("callback_id") if isinstance(view, dict) else None
        if not isinstance(callback_id, str) or not self.spec.handles_action(callback_id):
            log.info("modal %r is not one the bot declares; closed", callback_id)
            ack()
            return None
        try:
            key = payloads.view_key(body, secret=self._signing_secret)
        except InvalidKeyError as exc:
            log.warning(
                "modal submission refused: unsigned or another user's (%s)", type(exc).__name__
            )
            return BoltResponse(status=400, body="invalid team, user or modal channel")
        when = payloads.event_time(body, request.headers)
        try:
            message = payloads.view_message(body, key, when)
        except InvalidKeyError as exc:
            log.warning("modal submission with an unreadable form: %s", type(exc).__name__)
            return BoltResponse(status=400, body="unreadable form")
        job = _job("submission", key, payloads.view_idempotency_key(body), message, event_time=when)
        # Slack closes the modal on an empty 200 (the replies go to the modal's conversation);
        # a FormErrors reply keeps it open with the bot's message under each field.
        return self._interactive(ack, job, key, message)

    def _interactive(
        self, ack: Any, job: Job, key: ConversationKey, message: Message
    ) -> BoltResponse | None:
        """A button press or a modal submission: Slack never redelivers either, so an error
        of ours is a 200 with an apology (and a dead letter when it would recur)."""
        if self.spec.is_slow(message):
            self._defer_interactive(ack, job)
            return None
        submission = job["kind"] == "submission"
        try:
            result = self._run(
                job,
                bot_turn(self.spec, with_response=submission),
                sender=self._sender(job, errors_in_ack=submission),
            )
        except InvalidKeyError as exc:
            log.warning("%s with an invalid id: %s", job["kind"], exc)
            return BoltResponse(status=400, body=f"invalid {job['kind']} id")
        except SessionError:
            log.exception(
                "%s turn failed",
                job["kind"],
                extra={"conversation": conversation_hash(key.pk, key.sk)},
            )
            self._apologise_for(job, key)
            ack()
            return None
        errors = payloads.form_errors(split(result.response or [])[0]) if submission else {}
        if errors:
            ack(response_action="errors", errors=errors)
        else:
            ack()
        return None

    def _on_message(
        self, ack: Any, body: dict[str, Any], event: dict[str, Any], request: BoltRequest
    ) -> BoltResponse | None:
        reason = payloads.ignored_message(body, event)
        if reason:
            log.info("ignored Slack event: %s", reason)
            ack()
            return None
        event_id = body.get("event_id")
        try:
            key = payloads.event_key(body)
            if not event_id or not isinstance(event_id, str):
                raise InvalidKeyError("missing event_id")
            key.event_sk(f"event:{event_id}")  # an over-long id is bad input, not our error
        except InvalidKeyError as exc:
            log.warning("event with an invalid key: %s", exc)
            return BoltResponse(status=400, body="invalid event")
        when = payloads.event_time(body, request.headers)
        message = payloads.event_message(body, key, when)
        job = _job("event", key, f"event:{event_id}", message, event_time=when)
        if self.spec.is_slow(message):
            try:
                self.deferrer.submit(job)
            except Exception:
                log.exception("could not hand off a slow event; Slack will redeliver")
                return BoltResponse(status=503, body="busy")
            ack()
            return None
        try:
            self._run(job, bot_turn(self.spec), sender=self._sender(job))
        except PermanentError as exc:
            # Recorded as a dead letter: a redelivery would fail the same way. 200, and the
            # user hears about it once (a racing duplicate delivery stays silent).
            if exc.recorded:
                self._apologise_for(job, key)
        except SessionError:
            # Nothing was committed and it may heal: 5xx, Slack redelivers (event_id dedups).
            log.exception(
                "event turn failed before the commit",
                extra={"conversation": conversation_hash(key.pk, key.sk)},
            )
            return BoltResponse(status=503, body="retry later")
        ack()
        return None

    @staticmethod
    def _on_other_event(ack: Any, body: dict[str, Any]) -> None:
        # Unhandled event types still get 200: a 404 would count as a failed delivery.
        log.info("ignored Slack event type %s", (body.get("event") or {}).get("type"))
        ack()

    def _defer_interactive(self, ack: Any, job: Job) -> None:
        try:
            self.deferrer.submit(job)
        except Exception:
            log.exception("could not hand off a slow %s", job["kind"])
            if job["kind"] == "command":
                ack(text=APOLOGY, response_type="ephemeral")
            else:
                ack()
            return
        ack()

    def _apologise_for(self, job: Job, key: ConversationKey) -> None:
        """Tell the user once that their event failed on our side."""
        try:
            self._post(job, key, {"text": APOLOGY, "visibility": _default_visibility(job, key)})
        except Exception:
            log.exception("could not send the apology either")

    # -- turns, inline and deferred -------------------------------------------------------------

    def _run(self, job: Job, turn: Any, *, sender: Any, deadline: bool = True) -> Any:
        """Run ``job`` (the event in its deferred-job form, which is also what a dead letter
        keeps for a replay) through the session core."""
        replay = bool(job.get("retry_failed"))
        return self.sessions.run(
            ConversationKey.slack(**job["key"]),
            job["idempotency_key"],
            turn,
            Message.from_dict(job["message"]),
            event_time=job.get("event_time"),
            sender=sender,
            dead_letter={k: v for k, v in job.items() if k != "retry_failed"},
            retry_failed=replay,
            deadline=time.monotonic() + TURN_BUDGET if deadline else None,
            initial=new_conversation,
        )

    def run_deferred(self, job: Job) -> None:
        """Run a handed-off turn or effect (or replay a dead letter: ``job["retry_failed"]``).

        Raises what can heal (so whoever runs it retries); an error that would recur is
        recorded as a dead letter, the user gets an apology (not on a replay), and it returns.
        """
        if job["kind"] == "effect":
            self.effects.run(job)
            return
        key = ConversationKey.slack(**job["key"])
        job = {**job, "trigger_id": None}  # a trigger id lives 3 s: long gone here
        try:
            self._run(job, bot_turn(self.spec), sender=self._sender(job), deadline=False)
        except PermanentError as exc:
            if exc.recorded and not job.get("retry_failed"):
                self._apologise_for(job, key)


def _default_visibility(job: Job, key: ConversationKey) -> str | None:
    """Slash commands and buttons answer privately; DMs (and modals opened from one) normally."""
    if job["kind"] in ("command", "action"):
        return "ephemeral"
    if job["kind"] == "submission" and not key.channel.startswith("D"):
        return "ephemeral"
    return None


def _job(
    kind: str,
    key: ConversationKey,
    idempotency_key: str,
    message: Message,
    *,
    response_url: str = "",
    event_time: float | None = None,
    trigger_id: str | None = None,
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
        "trigger_id": trigger_id,
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
    except (LookupError, TypeError, AttributeError, ValueError, RecursionError):
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
    log.warning("rejected signed request Bolt could not route: %s", type(error).__name__)
    return BoltResponse(status=400, body="malformed payload")


def build(settings: Settings | None = None, **overrides: Any) -> SlackEdge:
    """The edge as the environment configures it (``overrides`` for tests and the server)."""
    return build_edge(SlackEdge, settings, **overrides)


#: Lambda entry point: ``handlers/slack.handler``.
handler = Entry(build)
reset = handler.reset
