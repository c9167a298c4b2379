"""Slack on Lambda: slash commands, Events API and interactivity through the session core.

``handler`` is the Lambda entry point (``POST /slack/events``). One HMAC check per request
(``X-Slack-Signature`` over the raw bytes, 300 s window), then the body is parsed once
(``handlers.slack.parse``) into a :class:`~handlers.pipeline.delivery.Delivery` and run by the
delivery pipeline (``handlers.pipeline``); ``url_verification`` and ``ssl_check`` are
answered here. This path does not use Bolt: its request parsing and listener routing had to be
fenced in (its readers index Slack's fields unchecked, so malformed signed bodies became 5xx)
and it costs the cold start; slack_sdk's clients send the replies. ``handlers.slack.bolt`` is
for a Bolt app of your own.

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
- Every path carries the event's time (an event's ``event_ts`` within its ``event_time``,
  an action's ``action_ts``, or the signed request timestamp), so a user delete is never
  undone by a late or deferred turn, and the events of one second are filed apart.
- Replies are sent at most once: the Slack clients retry a call only when it certainly never
  reached Slack (connection refused, name resolution), never after a reset or a timeout.
- A turn the bot declares slow (from the message alone, before the ack) is acked at once and
  handed off (``handlers.pipeline.deferral``); slash commands and actions then answer through
  ``response_url``, events through ``chat.postMessage``.
- Replies are rendered once per turn: modals open first (one that cannot becomes its
  fallback text, in place), then the rest become messages in the bot's order. A slash
  command's single message goes in the ack's body; several go through ``response_url`` in
  order (the ack would otherwise race them).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import logging
import time
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from bot.replies import AnyReply
from handlers.entry import Entry, build_edge, spec_of
from handlers.http import BadRequest, HttpRequest, from_lambda, response
from handlers.pipeline import Answer, Deadline, Pipeline, hot
from handlers.pipeline.deferral import DEFERRED_KEY, Deferrer, default_deferrer
from handlers.pipeline.delivery import Delivery, SlackRoute
from handlers.pipeline.serial import Serialiser, default_serialiser
from handlers.settings import Settings
from handlers.slack import answer as answers
from handlers.slack import parse as payloads
from handlers.slack import threads, workspaces
from sessions import InvalidKeyError, SessionError, Sessions

if TYPE_CHECKING:
    from slack_sdk import WebClient

    from handlers.slack.oauth import SlackOAuth
    from handlers.slack.send import SlackSender
    from handlers.slack.webapi import WebAPI
    from handlers.telemetry import Telemetry

from sessions.privacy import private

log = private(logging.getLogger("handlers.slack"))

#: The install routes (``handlers.slack.oauth``), answered 404 without ``SLACK_CLIENT_ID``.
OAUTH_PATHS = ("/slack/install", "/slack/oauth_redirect")
#: Seconds an inline turn may spend retrying lost races: Slack gives up after 3 s, and the
#: replies and the ack still have to go out after the commit.
TURN_BUDGET = 2.0
#: Seconds after the request's arrival by which the replies should be out (Slack: 3 s).
ACK_BUDGET = 2.8


class SlackEdge:
    """The Slack adapter: parses signed requests into deliveries, renders and sends a
    committed turn's replies, and builds Slack's answer; the pipeline does the rest.

    Args:
        settings: secrets and URLs (``SLACK_SIGNING_SECRET`` is required).
        sessions: the session core over the configured store.
        bot: the pure bot (``turn``, ``is_slow``).
        deferrer: where slow turns go; default: async self-invoke inside Lambda, a thread
            pool outside it.
        serialiser: where a turn still busy at the webhook's deadline goes, behind the other
            turns of its item; default: the SQS FIFO queue when configured, else threads.
        web: the Web API client (``chat.postMessage``), built for ``SLACK_API_URL``.
    """

    #: Logs and metrics around each invocation (set by ``build``; ``None``: off).
    telemetry: Telemetry | None = None
    #: Seconds a follow-up turn may spend retrying lost races within a request.
    turn_budget = TURN_BUDGET
    function = "slack"

    def __init__(
        self,
        *,
        settings: Settings,
        sessions: Sessions,
        bot: Any,
        deferrer: Deferrer | None = None,
        serialiser: Serialiser | None = None,
        web: WebClient | WebAPI | None = None,
    ) -> None:
        # Inside Lambda the bot token too: a missing one fails the cold start by name, not
        # the first reply.
        # (OAuth: the client's secret instead, every workspace's token is in the table.)
        single = settings.in_lambda and not settings.slack_oauth
        settings.require(
            "slack_signing_secret",
            *(["slack_bot_token"] * single),
            *(["slack_client_secret"] * settings.slack_oauth),
        )
        self.settings = settings
        self._signing_secret = str(settings.slack_signing_secret or "")
        self.sessions = sessions
        self.spec = spec_of(bot)
        self.bot = self.spec.bot
        if web is not None:
            self.web = web
        #: Many workspaces (``SLACK_CLIENT_ID``): the install flow and each workspace's token.
        self.oauth: SlackOAuth | None = None
        if settings.slack_oauth:
            # Imported here: an app of one workspace never loads slack_sdk's OAuth modules
            # (27 modules at every cold start).
            from handlers.slack.installs import TableInstallationStore, TableOAuthStateStore
            from handlers.slack.oauth import SlackOAuth

            self.oauth = SlackOAuth(
                settings,
                TableInstallationStore(sessions.installations),
                TableOAuthStateStore(
                    sessions.installations, secret=str(settings.slack_client_secret or "")
                ),
            )
        self.deferrer = deferrer or default_deferrer(settings, self.run_deferred)
        self.serialiser = serialiser or default_serialiser(
            settings, self.run_deferred, self.run_batch
        )
        if self.oauth is not None:  # rotation timers, erase settle passes, refreshes
            self.oauth.scheduler = sessions.scheduler
            self.oauth.defer = self._submit
        self.pipeline = Pipeline(
            sessions=sessions,
            spec=self.spec,
            platform=self,
            deferrer=lambda: self.deferrer,
            serialiser=lambda: self.serialiser,
        )

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
        if request.method == "GET" and request.path in OAUTH_PATHS:
            if self.oauth is None:
                return response(404, "not found: the app is installed in one workspace")
            try:
                return self.oauth.handle(request) or response(404, "not found")
            except SessionError:
                self._report("OAuth route failed")
                return response(503, "retry later")
        if request.method != "POST":
            return response(405, "method not allowed", headers={"allow": "POST"})
        if not self._signed(request.body, request.headers):
            log.warning("rejected Slack request: bad, stale or missing signature")
            return response(401, "invalid signature")
        try:
            kind, body = answers.parse(request)
        except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, not an object
            log.warning("rejected signed request with a malformed body: %s", type(exc).__name__)
            return response(400, "malformed body")
        try:
            return self._route(kind, body, request)
        except Exception:
            # A bug of ours (or in the bot's routing hooks) before anything was committed:
            # 500, so that Slack redelivers what it can.
            log.exception("Slack request failed")
            return response(500, "internal error")

    def _route(self, kind: str, body: dict[str, Any], request: HttpRequest) -> dict[str, Any]:
        deadline = Deadline.webhook(self.turn_budget, ACK_BUDGET)
        if kind == "command":
            return self._on_command(body, request, deadline)
        if kind == "ssl_check":
            return answers.ack()
        if body.get("type") == "url_verification":
            return answers.ack({"challenge": body.get("challenge")})
        if body.get("type") == "event_callback":
            event_body = body.get("event")
            if not isinstance(event_body, Mapping):
                return answers.bad("malformed event")
            if event_body.get("type") == "message":
                return self._on_message(body, event_body, request, deadline)
            if event_body.get("type") in ("app_mention", *threads.ASSISTANT_EVENTS):
                return self._on_thread_event(body, event_body, request, deadline)
            if event_body.get("type") in ("app_uninstalled", "tokens_revoked"):
                return workspaces.install_event(self.oauth, self.pipeline, body, event_body)
            log.info("ignored Slack event type %s", str(event_body.get("type"))[:40])
            return answers.ack()  # a 404 would count as a failed delivery
        if body.get("type") == "block_actions":
            actions = body.get("actions")
            if not isinstance(actions, list) or not actions or not isinstance(actions[0], Mapping):
                return answers.bad("malformed actions")
            return self._on_action(body, actions[0], request, deadline)
        if body.get("type") == "view_submission":
            if not isinstance(body.get("view"), Mapping):
                return answers.bad("malformed view")
            return self._on_view(body, body["view"], request, deadline)
        if isinstance(body.get("type"), str):
            log.info("ignored Slack payload type %s", str(body["type"])[:40])
            return answers.ack()
        return answers.bad("payload of an unknown shape")

    def run_deferred(self, job: Any) -> None:
        """Run a handed-off job (or replay a dead letter: ``job["retry_failed"]``); raises
        what can heal, so that whoever runs it retries."""
        if self.oauth is not None and self.oauth.run_job(job, self.sessions):
            return  # a token's refresh, or an uninstall's settle pass
        self.pipeline.run_job(job)

    def run_batch(self, jobs: list[Any]) -> None:
        """Run one busy item's serialised jobs, in order: its turns as group commits."""
        hot.run_jobs(self.pipeline, jobs, self.run_deferred)

    def _submit(self, job: dict[str, Any]) -> bool:
        try:
            self.deferrer.submit(job)
        except Exception:
            log.exception("could not hand off a deferred job")
            return False
        return True

    def _signed(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """Slack's v0 signature over the raw bytes, within 300 s; never raises on any header."""
        timestamp = headers.get("x-slack-request-timestamp", "")
        signature = headers.get("x-slack-signature", "")
        if not (timestamp.isascii() and timestamp.isdigit()):
            return False
        if abs(time.time() - int(timestamp)) > 300:
            return False
        base = b"v0:" + timestamp.encode() + b":" + body
        secret = self._signing_secret.encode()
        expected = b"v0=" + hmac.new(secret, base, hashlib.sha256).hexdigest().encode()
        return hmac.compare_digest(expected, signature.encode("utf-8", "surrogateescape"))

    # -- requests -> deliveries ------------------------------------------------------------

    def _on_command(
        self, body: Mapping[str, Any], request: HttpRequest, deadline: Deadline
    ) -> dict[str, Any]:
        command = body.get("command")
        if not isinstance(command, str) or not self.spec.handles_command(command):
            log.warning("slash command %r is not one the bot declares", str(command)[:40])
            text = f"Sorry, I don't know {str(command)[:40]}."
            return answers.ack({"text": text, "response_type": "ephemeral"})
        trigger_id = body.get("trigger_id")
        if not trigger_id or not isinstance(trigger_id, str):
            log.warning("slash command without trigger_id")
            return answers.bad("missing trigger_id")
        try:
            key = payloads.command_key(body)
            key.event_sk(f"trigger:{trigger_id}")  # an over-long id is bad input
        except InvalidKeyError as exc:
            log.warning("slash command with an invalid key: %s", type(exc).__name__)
            return answers.bad("invalid team, channel, user or trigger id")
        when = payloads.event_time(body, request.headers)
        route = SlackRoute("command", str(body.get("response_url") or ""), trigger_id)
        message = payloads.command_message(body, key, when)
        delivery = Delivery(key, f"trigger:{trigger_id}", message, when, route)
        return self._interactive(delivery, deadline)

    def _on_action(
        self,
        body: Mapping[str, Any],
        action: Mapping[str, Any],
        request: HttpRequest,
        deadline: Deadline,
    ) -> dict[str, Any]:
        action_id = action.get("action_id")
        if not isinstance(action_id, str) or not self.spec.handles_action(action_id):
            # Link buttons, and actions of messages the bot no longer declares: nothing to do.
            log.info("action %r is not one the bot declares; acked", str(action_id)[:40])
            return answers.ack()
        try:
            key = payloads.action_key(body, secret=self._signing_secret)
            idempotency_key = payloads.action_idempotency_key(body, action)
            key.event_sk(idempotency_key)
        except InvalidKeyError as exc:
            log.warning("action with an invalid key: %s", type(exc).__name__)
            return answers.bad("invalid team, channel, user or action id")
        when = payloads.event_time(body, request.headers)
        trigger = body.get("trigger_id") if isinstance(body.get("trigger_id"), str) else None
        route = SlackRoute("action", str(body.get("response_url") or ""), trigger or None)
        message = payloads.action_message(body, action, key, when)
        thread, ts = threads.action_thread(body)
        delivery = threads.threaded(
            Delivery(key, idempotency_key, message, when, route), thread=thread, ts=ts
        )
        return self._interactive(delivery, deadline)

    def _on_view(
        self,
        body: Mapping[str, Any],
        view: Mapping[str, Any],
        request: HttpRequest,
        deadline: Deadline,
    ) -> dict[str, Any]:
        callback_id = view.get("callback_id")
        if not isinstance(callback_id, str) or not self.spec.handles_action(callback_id):
            log.info("modal %r is not one the bot declares; closed", str(callback_id)[:40])
            return answers.ack()
        try:
            key = payloads.view_key(body, secret=self._signing_secret)
        except InvalidKeyError as exc:
            log.warning(
                "modal submission refused: unsigned or another user's (%s)", type(exc).__name__
            )
            return answers.bad("invalid team, user or modal channel")
        when = payloads.event_time(body, request.headers)
        try:
            message = payloads.view_message(body, key, when)
            idempotency_key = payloads.view_idempotency_key(body)
            key.event_sk(idempotency_key)
        except InvalidKeyError as exc:
            log.warning("modal submission with an unreadable form: %s", type(exc).__name__)
            return answers.bad("unreadable form")
        # Slack closes the modal on an empty 200 (the replies go to the modal's conversation);
        # a FormErrors reply keeps it open with the bot's message under each field.
        delivery = Delivery(key, idempotency_key, message, when, SlackRoute("submission"))
        return self._interactive(delivery, deadline)

    def _interactive(self, delivery: Delivery, deadline: Deadline) -> dict[str, Any]:
        """A slash command, a button press or a modal submission: Slack never redelivers
        them, so an error of ours is a 200 with an apology (and a dead letter when it would
        recur)."""
        answer = Answer()
        if not workspaces.installed(self.oauth, self.pipeline, delivery):
            return answers.ack()
        if self.spec.is_slow(delivery.message):
            if not self.pipeline.defer(delivery.later()):
                self.apologise(delivery, answer, deadline)
            return answers.ack(answer.body)
        try:
            self.pipeline.run(delivery, deadline=deadline, answer=answer)
        except SessionError:
            self.pipeline.report(delivery, f"{delivery.kind} turn failed")
            self.apologise(delivery, answer, deadline)
        return answers.ack(answer.body)

    def _on_message(
        self,
        body: Mapping[str, Any],
        event: Mapping[str, Any],
        request: HttpRequest,
        deadline: Deadline,
    ) -> dict[str, Any]:
        reason = payloads.ignored_message(body, event)
        if reason:
            log.info("ignored Slack event: %s", reason)
            return answers.ack()
        event_id = body.get("event_id")
        try:
            key = payloads.event_key(body)
            if not event_id or not isinstance(event_id, str):
                raise InvalidKeyError("missing event_id")
            key.event_sk(f"event:{event_id}")  # an over-long id is bad input, not our error
        except InvalidKeyError as exc:
            log.warning("event with an invalid key: %s", type(exc).__name__)
            return answers.bad("invalid event")
        when = payloads.event_time(body, request.headers)
        message = payloads.event_message(body, key, when)
        delivery = Delivery(key, f"event:{event_id}", message, when, SlackRoute("event"))
        thread, ts = threads.event_thread(event)
        return self._event(threads.threaded(delivery, thread=thread, ts=ts), deadline)

    def _on_thread_event(
        self,
        body: Mapping[str, Any],
        event: Mapping[str, Any],
        request: HttpRequest,
        deadline: Deadline,
    ) -> dict[str, Any]:
        """A mention of the bot (in a channel or a thread), or an assistant thread's start or
        change of context (``handlers.slack.threads``)."""
        if event.get("type") == "app_mention":
            reason = threads.ignored_mention(body, event)
            if reason:
                log.info("ignored Slack event: %s", reason)
                return answers.ack()
        try:
            if event.get("type") == "app_mention":
                delivery = threads.mention_delivery(body, event)
            else:
                delivery = threads.assistant_delivery(body, event)
        except InvalidKeyError as exc:
            log.warning("event with an invalid key: %s", type(exc).__name__)
            return answers.bad("invalid event")
        when = payloads.event_time(body, request.headers)
        return self._event(dataclasses.replace(delivery, event_time=when), deadline)

    def _event(self, delivery: Delivery, deadline: Deadline) -> dict[str, Any]:
        """Run an Events API delivery: an error that can heal is a 5xx (Slack redelivers)."""
        message = delivery.message
        if not workspaces.installed(self.oauth, self.pipeline, delivery):
            return answers.ack()
        if self.spec.is_slow(message):
            if not self.pipeline.defer(delivery):
                return response(503, "busy")  # Slack redelivers; event_id dedups
            return answers.ack()
        try:
            # A dead letter is answered inside (apology once) and acked: a redelivery would
            # fail the same way.
            self.pipeline.run(delivery, deadline=deadline)
        except SessionError:
            # Nothing was committed and it may heal: 5xx, Slack redelivers (event_id dedups).
            self.pipeline.report(delivery, "event turn failed before the commit")
            return response(503, "retry later")
        return answers.ack()

    # -- many workspaces --------------------------------------------------------------------

    # The Web API client and the sender are built on first use, not with the edge: a slash
    # command's first event needs neither (its answer rides in the ack). The client is
    # ``WebAPI``: a turn's replies go out without slack_sdk (its package imports asyncio,
    # urllib.request, ssl and email: 70 modules a cold DM would load for its one reply), and
    # any other method through slack_sdk's ``WebClient``, built when first asked. Two threads
    # building at once build two equal clients: harmless.
    @cached_property
    def web(self) -> WebClient | WebAPI:
        from handlers.slack.send import SLACK_TIMEOUT
        from handlers.slack.webapi import WebAPI

        return WebAPI(
            token=self.settings.slack_bot_token,
            base_url=self.settings.slack_api_url,
            timeout=SLACK_TIMEOUT,
        )

    @cached_property
    def sender(self) -> SlackSender:
        from handlers.slack.send import SlackSender

        if self.oauth:
            return SlackSender(
                self.web,
                self._signing_secret,
                web_for=functools.partial(workspaces.web_for, self.oauth),
                on_revoked=functools.partial(workspaces.token_refused, self.oauth),
            )
        return SlackSender(self.web, self._signing_secret)

    def stream_target(self, delivery: Delivery) -> Any:
        """Where a streamed effect's answer goes (``handlers.slack.stream``)."""
        from handlers.slack.stream import SlackStream

        route = delivery.route
        assert isinstance(route, SlackRoute)
        return SlackStream(self.sender.web_for(delivery.key), delivery.message, route)

    def _report(self, message: str) -> None:
        log.exception(message)

    # -- the pipeline's platform -----------------------------------------------------------

    def deliver(
        self,
        delivery: Delivery,
        replies: Sequence[AnyReply],
        answer: Answer | None,
        deadline: Deadline,
    ) -> None:
        """Render once and send (``handlers.slack.answer.deliver``)."""
        answers.deliver(lambda: self.sender, delivery, replies, answer)

    def apologise(self, delivery: Delivery, answer: Answer | None, deadline: Deadline) -> None:
        """Tell the user once that their event failed on our side (``answer.apologise``)."""
        answers.apologise(lambda: self.sender, delivery, answer)


def build(settings: Settings | None = None, **overrides: Any) -> SlackEdge:
    """The edge as the environment configures it (``overrides`` for tests and the server)."""
    return build_edge(SlackEdge, settings, **overrides)


#: Lambda entry point: ``handlers/slack.handler`` (exposed by the package, ``handlers.slack``).
#: Before a SnapStart snapshot, the first event's imports (handlers.snapstart).
handler = Entry(
    build, warm=("boto3", "botocore.client", "handlers.slack.webapi", "slack_sdk.web.client")
)
reset = handler.reset


__all__ = ["SlackEdge", "build", "handler"]
