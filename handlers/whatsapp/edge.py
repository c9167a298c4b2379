"""WhatsApp Cloud API on Lambda: the webhook (``GET``/``POST /whatsapp/webhook``) through the
delivery pipeline, replies through ``POST /<phone_number_id>/messages``. One adapter: it
parses signed webhooks into deliveries, renders and sends a committed turn's replies, and
builds Meta's answer; the pipeline (``handlers.pipeline``) and the session core do the rest,
unchanged. This path never imports slack_bolt.

Who retries what: Meta wants 200 quickly and redelivers what failed with backoff for up to
7 days (at least once). So a WhatsApp event's record lives :data:`~handlers.whatsapp.config.
RECORD_TTL` (7 days and an hour; the other platforms' default is a day): a redelivery on day
six is still a duplicate. Fast turns run inline and the webhook is answered 200 once every
message in it is committed; an error of ours that can heal answers 5xx (Meta redelivers; the
committed ``wamid``\\ s are skipped); one that would recur is a dead letter with an apology,
and the rest of the batch goes on. A slow turn is handed off with the sender's later ones.

``statuses[]`` (sent, delivered, read, failed: what became of our replies) run no turn; a
``failed`` one is logged by the hash of its ``wamid`` and its Graph error codes, and counted
(metric ``FailedStatuses``).

The 24-hour customer-service window: WhatsApp delivers free-form messages only within 24 h
of the user's last message. A reply sent later (a timer's, a slow effect's) is refused by
Graph (error 131047); the bot gets it back as a follow-up turn, the way an effect's failure
comes back: ``Message(kind="effect", action="whatsapp.window", error="OutsideWindow: ...",
payload={"unsent": [<the replies not sent, as dicts>]})``, an event of its own (exactly once,
handed to the deferral), so it can answer with an approved ``Template``. A window follow-up's
own refused replies are only logged (no loop).
"""

from __future__ import annotations

import copy
import dataclasses
import hmac
import json
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from bot.messages import Message
from bot.replies import WINDOW_CLOSED, WINDOW_ERROR, AnyReply
from bot.spec import MAX_FOLLOW_UPS
from handlers.entry import Entry, build_edge, spec_of
from handlers.http import BadRequest, HttpRequest, from_lambda, response
from handlers.pipeline import Answer, Deadline, Pipeline
from handlers.pipeline.deferral import DEFERRED_KEY, Deferrer, default_deferrer
from handlers.pipeline.delivery import Delivery, MessengerRoute
from handlers.pipeline.serial import Serialiser, default_serialiser
from handlers.settings import Settings
from handlers.whatsapp import config, parse, render
from handlers.whatsapp.send import CloudAPI, OutsideWindow, SendError
from handlers.whatsapp.tokens import NumberTokens
from sessions import ConversationKey, SessionError, Sessions
from sessions.privacy import fingerprint, private

if TYPE_CHECKING:
    from handlers.telemetry import Telemetry

log = private(logging.getLogger("handlers.whatsapp"))

APOLOGY = "Sorry, something went wrong on my side with your last message."
#: Seconds the turns of one webhook may spend retrying lost races.
TURN_BUDGET = 3.0
#: Seconds after the request's arrival past which no send of the webhook is retried.
ACK_BUDGET = 4.5


def with_record_ttl(sessions: Sessions, ttl: int) -> Sessions:
    """``sessions`` with event records kept at least ``ttl`` seconds: the same store, sealing
    and scheduler (a shallow copy), only this adapter's records live longer. The session core
    is unchanged: its record TTL is already per instance."""
    if sessions.event_ttl >= ttl:
        return sessions
    own = copy.copy(sessions)
    own.event_ttl = ttl
    return own


class WhatsAppEdge:
    """The WhatsApp adapter.

    Args:
        settings: the shared settings (store, deferral, serial queue, bot).
        sessions: the session core over the configured store (its event records are kept
            at least the adapter's record TTL).
        bot: the pure bot.
        whatsapp: the adapter's own settings (default: from the environment);
            ``WHATSAPP_APP_SECRET`` and ``WHATSAPP_VERIFY_TOKEN`` are required, inside Lambda
            ``WHATSAPP_TOKEN`` too.
        deferrer, serialiser: where slow turns and busy ones go (as the other edges).
        cloud_api: the messages endpoint's client (default: ``WHATSAPP_API_URL``).
        workers: senders handled in parallel within one webhook.
    """

    telemetry: Telemetry | None = None
    turn_budget = TURN_BUDGET
    function = "whatsapp"

    def __init__(
        self,
        *,
        settings: Settings,
        sessions: Sessions,
        bot: Any,
        whatsapp: config.WhatsAppSettings | None = None,
        deferrer: Deferrer | None = None,
        serialiser: Serialiser | None = None,
        cloud_api: CloudAPI | None = None,
        workers: int = 4,
    ) -> None:
        self.config = whatsapp or config.from_env()
        self.config.require("app_secret", "verify_token", *(["token"] * settings.in_lambda))
        self.settings = settings
        self.sessions = with_record_ttl(sessions, self.config.event_ttl)
        self.spec = spec_of(bot)
        self.bot = self.spec.bot
        self.cloud = cloud_api or CloudAPI(self.config.api_url, self.config.token)
        self.tokens = NumberTokens(self.sessions.installations, self.config.token)
        self.deferrer = deferrer or default_deferrer(settings, self.run_deferred)
        self.serialiser = serialiser or default_serialiser(settings, self.run_deferred)
        self.pipeline = Pipeline(
            sessions=self.sessions,
            spec=self.spec,
            platform=self,
            deferrer=lambda: self.deferrer,
            serialiser=lambda: self.serialiser,
        )
        self.workers = workers
        #: ``failed`` statuses seen by this container (also a metric with telemetry on).
        self.failed_statuses = 0

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
        """Run a handed-off job (or replay a dead letter); raises what can heal."""
        self.pipeline.run_job(job)

    # -- requests -> deliveries ------------------------------------------------------------

    def _verify(self, request: HttpRequest) -> dict[str, Any]:
        mode = request.first("hub.mode")
        token = request.first("hub.verify_token") or ""
        challenge = request.first("hub.challenge")
        expected = str(self.config.verify_token)
        token_ok = hmac.compare_digest(
            token.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")
        )
        if mode == "subscribe" and challenge is not None and token_ok:
            return response(200, challenge)
        log.warning("webhook verification refused")
        return response(403, "forbidden")

    def _webhook(self, request: HttpRequest) -> dict[str, Any]:
        header = request.header("x-hub-signature-256")
        if header is None:
            log.warning("webhook POST without X-Hub-Signature-256")
            return response(401, "missing X-Hub-Signature-256")
        if not parse.signature_ok(request.body, header, str(self.config.app_secret)):
            log.warning("webhook POST with a bad signature")
            return response(403, "invalid signature")
        rejected: list[tuple[str, str]] = []
        try:
            data = json.loads(request.body)
            batch = parse.parse_batch(data, self.spec.handles_action, rejected=rejected)
        except (ValueError, RecursionError) as exc:  # not JSON, not a webhook, too deep
            log.warning("rejected webhook: %s", type(exc).__name__)
            return response(400, "malformed webhook")
        for reason, digest in rejected:  # the rest goes on
            log.warning("item refused: %s", reason, extra={"item_hash": digest})
        self._statuses(batch.statuses)
        deadline = Deadline.webhook(self.turn_budget, ACK_BUDGET)
        by_sender: dict[ConversationKey, list[Delivery]] = defaultdict(list)
        for incoming in batch.messages:  # in timestamp order
            by_sender[incoming.key].append(delivery_of(incoming))
        groups = list(by_sender.values())
        if len(groups) <= 1 or self.workers <= 1:
            failures = sum(self._run_sender(group, deadline) for group in groups)
        else:
            with ThreadPoolExecutor(min(self.workers, len(groups))) as pool:
                failures = sum(pool.map(lambda g: self._run_sender(g, deadline), groups))
        if failures:
            return response(500, "retry later")  # committed wamids are skipped next time
        return response(200, "EVENT_RECEIVED")

    def _statuses(self, statuses: Sequence[parse.Status]) -> None:
        failed = [s for s in statuses if s.status == "failed"]
        for status in failed:
            log.warning(
                "a reply we sent failed",
                extra={"wamid": status.wamid_hash, "number": fingerprint(status.number),
                       "codes": list(status.codes)},
            )  # fmt: skip
        if not failed:
            return
        self.failed_statuses += len(failed)
        if self.telemetry is not None:
            from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

            metrics = EphemeralMetrics(
                namespace=self.telemetry.namespace, service=self.telemetry.service
            )
            metrics.add_dimension(name="platform", value=parse.PLATFORM)
            metrics.add_metric(name="FailedStatuses", unit=MetricUnit.Count, value=len(failed))
            metrics.flush_metrics()

    def _run_sender(self, messages: Sequence[Delivery], deadline: Deadline) -> int:
        """One sender's messages in timestamp order (as the Messenger edge: a slow one is
        handed off with every later one; one that can heal stops the rest and returns 1)."""
        key = messages[0].key
        try:
            token = self.tokens.token(key.workspace)
        except SessionError:
            self.pipeline.report(messages[0], "number token lookup failed")
            return 1
        if token is None:
            log.error(
                "no access token for this phone number; its messages are not handled "
                '(make admin ARGS="add-page <id> --whatsapp")',
                extra={"number": fingerprint(key.workspace), "messages": len(messages)},
            )
            return 0
        for index, delivery in enumerate(messages):
            if self.spec.is_slow(delivery.message):
                return 0 if self.pipeline.defer(tuple(messages[index:])) else 1
            try:
                self.pipeline.run(delivery, deadline=deadline)
            except SessionError:
                self.pipeline.report(delivery, "message turn failed before the commit")
                return 1
        return 0

    # -- the pipeline's platform -----------------------------------------------------------

    def deliver(
        self,
        delivery: Delivery,
        replies: Sequence[AnyReply],
        answer: Answer | None,
        deadline: Deadline,
    ) -> None:
        key = delivery.key
        token = self.tokens.token(key.workspace)
        if token is None:
            log.error("no access token for this phone number; replies not sent",
                      extra={"number": fingerprint(key.workspace)})  # fmt: skip
            raise SendError("no access token for this phone number")
        unsent: list[AnyReply] = []
        for reply in replies:
            for message in render.render([reply]):
                if unsent and render.free_form(message):
                    unsent.append(reply)  # the window is closed: a template may still go
                    break
                try:
                    self.cloud.send(key.workspace, key.user, message, deadline=deadline.sends,
                                    token=token)  # fmt: skip
                except OutsideWindow:
                    unsent.append(reply)
                    break
                except SendError:
                    log.error("reply not sent", exc_info=True, extra={"wamid": _wamid(delivery)})
                    raise
        if unsent:
            self._window_closed(delivery, unsent)

    def _window_closed(self, delivery: Delivery, unsent: Sequence[AnyReply]) -> None:
        """Tell the bot, in a turn of its own, that ``unsent`` met the closed window."""
        message = delivery.message
        looped = message.kind == "effect" and message.action == WINDOW_CLOSED
        if looped or delivery.depth + 1 > MAX_FOLLOW_UPS:
            log.error("replies outside the 24-hour window not sent", extra={
                "wamid": _wamid(delivery), "replies": len(unsent)})  # fmt: skip
            return
        log.warning("replies outside the 24-hour window; the bot is told",
                    extra={"wamid": _wamid(delivery), "replies": len(unsent)})  # fmt: skip
        told = Message(
            kind="effect",
            action=WINDOW_CLOSED,
            error=WINDOW_ERROR,
            payload={"unsent": [r.to_dict() for r in unsent]},
            platform=message.platform,
            workspace=message.workspace,
            conversation=message.conversation,
            user=message.user,
            time=message.time,
        )
        follow = dataclasses.replace(
            delivery.later(),
            idempotency_key=f"window:{delivery.idempotency_key}"[:1024],
            message=told,
            depth=delivery.depth + 1,
            replay=False,
        )
        # Handed off, not run here: this runs inside the turn's send, after its commit.
        if not self.pipeline.defer(follow):
            log.error("the window's follow-up was lost", extra={"wamid": _wamid(delivery)})

    def apologise(self, delivery: Delivery, answer: Answer | None, deadline: Deadline) -> None:
        key = delivery.key
        try:
            token = self.tokens.token(key.workspace)
            if token is None:
                raise SendError("no access token for this phone number")
            self.cloud.send(key.workspace, key.user, render.text_message(APOLOGY),
                            deadline=deadline.sends, token=token)  # fmt: skip
        except (SendError, SessionError):
            log.error("apology not sent", exc_info=True, extra={"wamid": _wamid(delivery)})

    def stream_target(self, delivery: Delivery) -> Any:
        """Where a streamed effect's answer goes (``handlers.whatsapp.stream``)."""
        from handlers.whatsapp.stream import WhatsAppStream

        token = self.tokens.token(delivery.key.workspace)
        if token is None:  # never another number's token (as ``deliver``)
            raise SendError("no access token for this phone number")
        key = delivery.key
        return WhatsAppStream(self.cloud, key.workspace, key.user, token)


def delivery_of(incoming: parse.Incoming) -> Delivery:
    """A parsed message as the pipeline runs it."""
    return Delivery(
        key=incoming.key,
        idempotency_key=incoming.idempotency_key,
        message=incoming.message,
        event_time=float(incoming.timestamp),
        route=MessengerRoute(incoming.wamid),
    )


def _wamid(delivery: Delivery) -> str:
    route = delivery.route
    return fingerprint(route.mid if isinstance(route, MessengerRoute) else "")


def build(settings: Settings | None = None, **overrides: Any) -> WhatsAppEdge:
    """The edge as the environment configures it (``overrides`` for tests and the server)."""
    return build_edge(WhatsAppEdge, settings, **overrides)


#: Lambda entry point: ``handlers/whatsapp.handler``.
handler = Entry(build, warm=("boto3", "botocore.client", "requests"))
reset = handler.reset

__all__ = ["WINDOW_CLOSED", "WhatsAppEdge", "build", "handler", "reset", "with_record_ttl"]
