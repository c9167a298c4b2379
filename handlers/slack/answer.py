"""What Slack gets back: a request's body read as Slack sends it, the ack (and a slash
command's answer in it), a refusal, and a turn's replies rendered once and sent (modals first,
a submission's form errors in the ack, messages in order, an assistant thread's status, prompts
and title through its methods); the apology for an event that failed on our side."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from bot.replies import AnyReply, FormErrors, Modal
from handlers.http import HttpRequest, response
from handlers.pipeline import Answer
from handlers.pipeline.delivery import Delivery, SlackRoute, private_exchange
from handlers.slack import render, threads
from sessions import ConversationKey
from sessions.privacy import private

if TYPE_CHECKING:
    from handlers.slack.send import SlackSender

log = private(logging.getLogger("handlers.slack"))

APOLOGY = "Sorry, something went wrong on my side. Please try again in a moment."


def deliver(
    sender: Callable[[], SlackSender],  # built on first use: an ack needs none
    delivery: Delivery,
    replies: Sequence[AnyReply],
    answer: Answer | None,
) -> None:
    """Render once: a submission's form errors into the ack; modals opened first (one
    that cannot open stays in place as its fallback text); then the messages in order, a
    slash command's only message in the ack's body."""
    route = delivery.route
    assert isinstance(route, SlackRoute)
    if route.kind == "submission" and answer is not None:
        errors = render.form_errors(replies)
        if errors:
            answer.body = {"response_action": "errors", "errors": errors}
        replies = [r for r in replies if not isinstance(r, FormErrors)]
    plain: list[AnyReply] = []
    for reply in replies:
        if not (isinstance(reply, Modal) and sender().open_modal(route, delivery.key, reply)):
            plain.append(reply)  # a modal that did not open renders as its fallback
    visibility = default_visibility(route, delivery.key)
    messages = threads.messages(route, plain, visibility=visibility)
    if route.kind == "command" and answer is not None and len(messages) == 1:
        only = messages[0][0]
        if isinstance(only, dict):
            answer.body = ack_body(only)
            return
    for message, thread in messages:
        if isinstance(message, dict):
            sender().post(route, delivery.key, message)
        elif threads.is_assistant(message):
            threads.set_assistant(sender(), delivery.key, thread, message)  # type: ignore[arg-type]


def apologise(sender: Callable[[], SlackSender], delivery: Delivery, answer: Answer | None) -> None:
    """Tell the user once that their event failed on our side: in a slash command's ack,
    else where its replies would have gone."""
    route = delivery.route
    assert isinstance(route, SlackRoute)
    if route.kind == "command" and answer is not None:
        answer.body = {"text": APOLOGY, "response_type": "ephemeral"}
        return
    try:
        visibility = default_visibility(route, delivery.key)
        sender().post(route, delivery.key, {"text": APOLOGY, "visibility": visibility})
    except Exception:
        log.exception("could not send the apology either")


def default_visibility(route: SlackRoute, key: ConversationKey) -> str | None:
    """Slash commands and buttons answer privately, and so do the later answers (a timer's)
    of such an exchange; DMs (and modals opened from one) normally."""
    return "ephemeral" if private_exchange(route, key) else None


def parse(request: HttpRequest) -> tuple[str, dict[str, Any]]:
    """The body as Slack sends it: a slash command or ``ssl_check`` as form fields, an
    interactivity payload as JSON in the ``payload`` field, the Events API as JSON.

    Raises:
        ValueError: not UTF-8, malformed JSON, or not an object where one is expected.
    """
    text = request.body.decode("utf-8")
    content_type = (request.header("content-type") or "").lower()
    if content_type.startswith("application/json") or text.lstrip().startswith("{"):
        kind, data = "json", json.loads(text)
    else:
        form = {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}
        if "payload" in form:
            kind, data = "interactive", json.loads(form["payload"])
        elif form.get("ssl_check") == "1":
            return "ssl_check", form
        elif "command" in form:
            return "command", form
        else:
            raise ValueError("form without payload, command or ssl_check")
    if not isinstance(data, dict):
        raise ValueError(f"payload is {type(data).__name__}, not an object")
    return kind, data


def ack(body: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """200, with a JSON body when there is one (Slack reads it as the answer)."""
    if not body:
        return response(200)
    return response(200, json.dumps(body), content_type="application/json")


def ack_body(message: dict[str, Any]) -> dict[str, Any]:
    visibility = message.pop("visibility", None)
    message.pop("replace", None)  # an ack answers a command: there is no message to replace
    return {"response_type": visibility or "ephemeral", **message}


def bad(reason: str) -> dict[str, Any]:
    log.warning("rejected signed request: %s", reason)
    return response(400, reason)
