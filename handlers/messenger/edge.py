"""Messenger on Lambda: the webhook (``GET``/``POST /messenger/webhook``) through the session
core, replies through the Send API (over urllib3, as ``requests`` would send them). This path
never imports slack_bolt, nor requests.

Who retries what: Meta wants 200 within 5 s and disables a webhook that keeps failing for an
hour. Fast turns run inline, and the batch is answered 200 once every message in it is
committed; an error of ours before a commit that can heal (store unavailable, busy) answers
5xx, Meta redelivers the whole batch, and the mids already committed are skipped (each costs
one read). An error that would recur on every delivery (the bot raises, the state no longer
decodes or is too large) must not do that, or the webhook is disabled and the sender's later
messages never run: the message is recorded once as a dead letter, the sender gets an
apology, and the rest of the batch, that sender's later messages included, still runs. A
turn the bot declares slow is handed off (``handlers.pipeline.deferral``) and answered through the
Send API.

Every text, attachment, quick reply and postback goes to the bot ``BOT`` names: a quick reply
or postback whose action the bot declares arrives as an action, any other payload as the text
the user tapped. Replies render as text, quick replies, button and generic templates or
attachments by URL (``handlers.messenger.render``); the delivery pipeline
(``handlers.pipeline``) runs each message, sends its replies and then starts its effects. A
sender's messages run in timestamp order: a slow one is handed off with every later one.

Replies go out through the Send API client (``handlers.messenger.send``): retried only when
they certainly did not arrive, never repeated after a timeout or a reset (at most once).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bot.replies import AnyReply
from handlers import meta
from handlers.entry import Entry, build_edge, spec_of
from handlers.http import BadRequest, HttpRequest, from_lambda, response
from handlers.messenger import parse as payloads
from handlers.messenger import render
from handlers.messenger.send import MIN_SEND_TIMEOUT, SendAPI, SendError
from handlers.messenger.tokens import PageTokens
from handlers.pipeline import Answer, Deadline, Pipeline, hot
from handlers.pipeline.deferral import DEFERRED_KEY, Deferrer, default_deferrer
from handlers.pipeline.delivery import Delivery, MessengerRoute
from handlers.pipeline.serial import Serialiser, default_serialiser
from handlers.settings import Settings
from sessions import SessionError, Sessions

if TYPE_CHECKING:
    from handlers.telemetry import Telemetry

from sessions.privacy import fingerprint, private

log = private(logging.getLogger("handlers.messenger"))

APOLOGY = "Sorry, something went wrong on my side with your last message."
#: Seconds the turns of one batch may spend retrying lost races: Meta gives up after 5 s,
#: and the replies still have to go out after the commits.
TURN_BUDGET = 3.0
#: Seconds after the request's arrival past which no Send API call of the batch is retried,
#: and up to which each attempt's timeouts are cut: the answer should reach Meta within 5 s.
ACK_BUDGET = 4.5


class MessengerEdge:
    """The Messenger adapter: parses signed webhook batches into deliveries, sends a committed
    turn's replies through the Send API; the pipeline (``handlers.pipeline``) does the rest.

    Args:
        settings: ``MESSENGER_APP_SECRET`` and ``MESSENGER_VERIFY_TOKEN`` are required.
        sessions: the session core over the configured store.
        bot: the pure bot.
        deferrer: where slow turns go (default: async self-invoke in Lambda, else threads).
        serialiser: where a turn still busy at the webhook's deadline goes, behind the other
            turns of its item (default: the SQS FIFO queue when configured, else threads).
        send_api: the Send API client (default: ``MESSENGER_API_URL`` with the page token).
        workers: senders handled in parallel within one batch (one sender's messages always
            run in timestamp order).
    """

    #: Logs and metrics around each invocation (set by ``build``; ``None``: off).
    telemetry: Telemetry | None = None
    #: Seconds a follow-up turn may spend retrying lost races within a webhook.
    turn_budget = TURN_BUDGET
    function = "messenger"

    def __init__(
        self,
        *,
        settings: Settings,
        sessions: Sessions,
        bot: Any,
        deferrer: Deferrer | None = None,
        serialiser: Serialiser | None = None,
        send_api: SendAPI | None = None,
        workers: int = 4,
    ) -> None:
        settings.require(
            "messenger_app_secret",
            "messenger_verify_token",
            # Inside Lambda the page token too: a cold start fails by name, not the first send.
            *(["messenger_page_token"] * settings.in_lambda),
        )
        self.settings = settings
        self.sessions = sessions
        self.spec = spec_of(bot)
        self.bot = self.spec.bot
        self.send_api = send_api or SendAPI(
            settings.messenger_api_url, settings.messenger_page_token
        )
        self.tokens = PageTokens(sessions.installations, settings.messenger_page_token)
        self.deferrer = deferrer or default_deferrer(settings, self.run_deferred)
        self.serialiser = serialiser or default_serialiser(
            settings, self.run_deferred, self.run_batch
        )
        self.pipeline = Pipeline(
            sessions=sessions,
            spec=self.spec,
            platform=self,
            deferrer=lambda: self.deferrer,
            serialiser=lambda: self.serialiser,
        )
        self.workers = workers

    def handle(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        if isinstance(event, Mapping) and DEFERRED_KEY in event:
            self.run_deferred(event[DEFERRED_KEY])  # raises so that Lambda retries
            return {"ok": True}
        try:
            request = from_lambda(event)
        except BadRequest as exc:
            log.warning("unreadable Lambda event: %s", type(exc).__name__)
            return response(400, "bad request")
        if request.method == "GET":
            return self._verify(request)
        if request.method == "POST":
            return self._webhook(request)
        return response(405, "method not allowed", headers={"allow": "GET, POST"})

    def run_deferred(self, job: Any) -> None:
        """Run a handed-off job (or replay a dead letter: ``job["retry_failed"]``); raises
        what can heal, so that whoever runs it retries."""
        self.pipeline.run_job(job)

    def run_batch(self, jobs: list[Any]) -> None:
        """Run one busy item's serialised jobs, in order: its turns as group commits."""
        hot.run_jobs(self.pipeline, jobs, self.run_deferred)

    # -- requests -> deliveries ------------------------------------------------------------

    def _verify(self, request: HttpRequest) -> dict[str, Any]:
        return meta.verify(request, str(self.settings.messenger_verify_token))

    def _webhook(self, request: HttpRequest) -> dict[str, Any]:
        refusal = meta.refused(request, str(self.settings.messenger_app_secret))
        if refusal is not None:
            return refusal
        rejected: list[tuple[str, str]] = []
        try:
            data = json.loads(request.body)
            batch = payloads.parse_batch(data, self.spec.handles_action, rejected=rejected)
        except (ValueError, RecursionError) as exc:  # not JSON, not a batch, too deep
            log.warning("rejected webhook batch: %s", type(exc).__name__)
            return response(400, "malformed batch")
        for reason, digest in rejected:  # the rest of the batch goes on
            log.warning("message refused: %s", reason, extra={"message_hash": digest})
        deadline = Deadline.webhook(self.turn_budget, ACK_BUDGET)
        return meta.run_by_sender(
            (delivery_of(incoming) for incoming in batch),  # in timestamp order
            lambda group: self._run_sender(group, deadline),
            self.workers,
        )

    def _run_sender(self, messages: Sequence[Delivery], deadline: Deadline) -> int:
        """One sender's messages, in timestamp order. A slow one is handed off together with
        every later one (one job, run in order), so a fast message never overtakes a slow
        one. A message that fails in a way that can heal stops the rest (they would run on a
        state that misses it) and returns 1; a dead letter is skipped, as a redelivery would
        skip it, and the rest go on."""
        key = messages[0].key
        try:
            token = self.tokens.token(key.platform, key.workspace)
        except SessionError:  # the store failed: it may heal, Meta redelivers
            self.pipeline.report(messages[0], "page token lookup failed")
            return 1
        if token is None:
            # Retrying cannot make a token appear: logged, acked, nothing run or stored.
            log.error(
                "no access token for this %s account; its messages are not handled "
                '(make admin ARGS="add-page <id>")',
                key.platform,
                extra={"page": fingerprint(key.workspace), "messages": len(messages)},
            )
            return 0
        return meta.run_in_order(self.pipeline, self.spec, messages, deadline)

    # -- the pipeline's platform -----------------------------------------------------------

    def deliver(
        self,
        delivery: Delivery,
        replies: Sequence[AnyReply],
        answer: Answer | None,
        deadline: Deadline,
    ) -> None:
        token = self._token(delivery)
        if token is None:
            # The same rule as a fresh message: no token of its own (an Instagram account's
            # removed, say), nothing sent, never with another page's token (a timer's fire,
            # a follow-up or a replay lands here without the webhook's check).
            log.error(
                "no access token for this %s account; replies not sent",
                delivery.key.platform,
                extra={"page": fingerprint(delivery.key.workspace)},
            )
            raise SendError("no access token for this account")
        for message in render.render(replies):
            try:
                self.send_api.send(delivery.key.user, message, deadline=deadline.sends, token=token)
            except SendError:
                log.error("reply not sent", exc_info=True, extra={"mid": _mid(delivery)})
                raise

    def apologise(self, delivery: Delivery, answer: Answer | None, deadline: Deadline) -> None:
        try:
            token = self._token(delivery)
            if token is None:
                raise SendError("no access token for this account")
            self.send_api.send(
                delivery.key.user, {"text": APOLOGY}, deadline=deadline.sends, token=token
            )
        except (SendError, SessionError):
            log.error("apology not sent", exc_info=True, extra={"mid": _mid(delivery)})

    def stream_target(self, delivery: Delivery) -> Any:
        """Where a streamed effect's answer goes (``handlers.messenger.stream``)."""
        from handlers.messenger.stream import MessengerStream

        token = self._token(delivery)
        if token is None:  # never another page's token (as ``deliver``)
            raise SendError("no access token for this account")
        return MessengerStream(self.send_api, delivery.key.user, token)

    def _token(self, delivery: Delivery) -> str | None:
        return self.tokens.token(delivery.key.platform, delivery.key.workspace)


def delivery_of(incoming: payloads.Incoming) -> Delivery:
    """A parsed message as the pipeline runs it."""
    return Delivery(
        key=incoming.key,
        idempotency_key=incoming.idempotency_key,
        message=incoming.message,
        event_time=incoming.timestamp / 1000,
        route=MessengerRoute(incoming.mid),
    )


def _mid(delivery: Delivery) -> str:
    route = delivery.route
    return fingerprint(route.mid if isinstance(route, MessengerRoute) else "")


def build(settings: Settings | None = None, **overrides: Any) -> MessengerEdge:
    """The edge as the environment configures it (``overrides`` for tests and the server)."""
    return build_edge(MessengerEdge, settings, **overrides)


#: Lambda entry point: ``handlers/messenger.handler``.
#: Before a SnapStart snapshot, the first event's imports (handlers.snapstart).
handler = Entry(build, warm=("boto3", "botocore.client", "urllib3"))
reset = handler.reset

__all__ = ["MIN_SEND_TIMEOUT", "MessengerEdge", "SendAPI", "SendError", "build", "handler"]
