"""Slack threads and assistant threads at the edge: what a payload says of its thread, the
``assistant_thread_*`` events as deliveries, and the replies that go into a thread (messages
with ``thread_ts``; ``assistant.threads.setStatus`` / ``setSuggestedPrompts`` / ``setTitle``).

A message's thread is its ``thread_ts`` (the root's ``ts``); a top-level message is the root
of its own thread, so its ``ts`` keys the thread scope, and a ``Reply(in_thread=True)`` to it
starts that thread. The root travels on the key (``ConversationKey.thread``: the thread
scope's item) and on the route (``SlackRoute.thread``: where replies go; ``SlackRoute.ts``: the
message a reply may thread under), so a timer's fire and an effect's follow-up answer in the
same thread as the turn that set them.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bot.assistant import Prompts, Status, Title
from bot.messages import Message
from bot.replies import AnyReply, Reply
from handlers.pipeline.delivery import Delivery, SlackRoute
from handlers.slack import parse as payloads
from handlers.slack import render
from sessions import ConversationKey, InvalidKeyError
from sessions.privacy import private

if TYPE_CHECKING:  # slack_sdk is imported on the first reply, not at cold start
    from handlers.slack.send import SlackSender

log = private(logging.getLogger("handlers.slack"))

#: The assistant events and the message kind each becomes.
ASSISTANT_EVENTS = {
    "assistant_thread_started": "thread_started",
    "assistant_thread_context_changed": "thread_context",
}
#: A Slack ``ts``: what a thread root must look like (anything else is no thread).
_TS = re.compile(r"[0-9]{1,12}\.[0-9]{1,9}")
#: Slack's limits: 4 suggested prompts; a status of 50 characters is what its UI shows.
MAX_PROMPTS = 4


def ts_of(value: Any) -> str | None:
    """``value`` if it is a Slack ``ts``, else ``None``."""
    return value if isinstance(value, str) and _TS.fullmatch(value) else None


def threaded(delivery: Delivery, *, thread: str | None, ts: str | None) -> Delivery:
    """``delivery`` in its thread: ``thread`` the root of the thread the message is in
    (``None``: a top-level message), ``ts`` the message's own ``ts`` (the root of the thread
    it would start). The key carries the root (the thread scope), the message its
    ``thread``, the route where the replies go."""
    root = thread or ts
    route = delivery.route
    assert isinstance(route, SlackRoute)
    return dataclasses.replace(
        delivery,
        key=dataclasses.replace(delivery.key, thread=root),
        message=dataclasses.replace(delivery.message, thread=thread),
        route=dataclasses.replace(route, thread=thread or "", ts=ts or ""),
    )


def event_thread(event: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """An Events API message's ``(thread_ts, ts)``: a top-level message has no thread_ts (nor
    has a root, whose ``thread_ts`` equals its own ``ts``)."""
    ts = ts_of(event.get("ts"))
    thread = ts_of(event.get("thread_ts"))
    return (None if thread == ts else thread), ts


def action_thread(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """A button's message's ``(thread_ts, ts)`` (``container``)."""
    container = body.get("container")
    if not isinstance(container, Mapping):
        return None, None
    ts = ts_of(container.get("message_ts"))
    thread = ts_of(container.get("thread_ts"))
    return (None if thread == ts else thread), ts


def ignored_mention(body: Mapping[str, Any], event: Mapping[str, Any]) -> str | None:
    """Why an ``app_mention`` must not reach the bot (a bot's, an edit), or ``None``."""
    if event.get("bot_id") or event.get("subtype"):
        return "mention from a bot, or not a new message"
    if not isinstance(event.get("text"), str):
        return "no text"
    return None


def mention_delivery(body: Mapping[str, Any], event: Mapping[str, Any]) -> Delivery:
    """An ``app_mention`` (a channel's message that names the bot; a thread's too) as a
    delivery: a ``text`` message in its thread.

    Raises:
        InvalidKeyError: the ids are malformed.
    """
    key = payloads.event_key(body)
    event_id = body.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        raise InvalidKeyError("missing event_id")
    key.event_sk(f"event:{event_id}")
    when = payloads.event_time(body, {})
    message = payloads.event_message(body, key, when)
    delivery = Delivery(key, f"event:{event_id}", message, when, SlackRoute("event"))
    thread, ts = event_thread(event)
    return threaded(delivery, thread=thread, ts=ts)


def assistant_delivery(body: Mapping[str, Any], event: Mapping[str, Any]) -> Delivery:
    """``assistant_thread_started`` / ``assistant_thread_context_changed`` as a delivery:
    ``Message(kind="thread_started" | "thread_context", thread=<root>, payload={"channel":
    <the channel the user was viewing>, **context})`` in the assistant's DM thread.

    Raises:
        InvalidKeyError: no thread, or malformed ids.
    """
    assistant = event.get("assistant_thread")
    if not isinstance(assistant, Mapping):
        raise InvalidKeyError("assistant event without assistant_thread")
    thread = ts_of(assistant.get("thread_ts"))
    if thread is None:
        raise InvalidKeyError("assistant thread without a thread_ts")
    event_id = body.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        raise InvalidKeyError("missing event_id")
    user, channel = assistant.get("user_id"), assistant.get("channel_id")
    key = ConversationKey.slack(
        team=payloads._team(body, body.get("team_id")),
        channel=channel if isinstance(channel, str) else "",
        user=user if isinstance(user, str) else "",
        enterprise=payloads._enterprise(body),
        thread=thread,
    )
    key.event_sk(f"event:{event_id}")
    context = assistant.get("context")
    context = dict(context) if isinstance(context, Mapping) else {}
    context["channel"] = context.get("channel_id")
    when = payloads.event_time(body, {})
    message = Message(
        kind=ASSISTANT_EVENTS[str(event.get("type"))],  # type: ignore[arg-type]  # a Kind
        platform="slack",
        workspace=key.workspace,
        conversation=key.channel,
        user=key.user,
        time=when,
        thread=thread,
        payload=context,
        raw=payloads.raw(body),
    )
    route = SlackRoute("event", thread=thread, ts=thread)
    return Delivery(key, f"event:{event_id}", message, when, route)


# -- replies into a thread ---------------------------------------------------------------------


def thread_of(route: SlackRoute, reply: AnyReply) -> str:
    """The ``thread_ts`` a reply goes to: the message's thread, or a new one under it for a
    ``Reply(in_thread=True)`` to a top-level message; ``""``: the channel."""
    if route.thread:
        return route.thread
    if isinstance(reply, Reply) and reply.in_thread and route.ts:
        return route.ts
    return ""


def is_assistant(reply: AnyReply) -> bool:
    return isinstance(reply, Status | Prompts | Title)


def messages(
    route: SlackRoute, replies: Sequence[AnyReply], *, visibility: str | None
) -> list[tuple[dict[str, Any] | AnyReply, str]]:
    """What to send, in the bot's order: each message (``payloads.render`` of consecutive
    replies to one thread, with its ``thread_ts``) or assistant reply, with its thread."""
    out: list[tuple[dict[str, Any] | AnyReply, str]] = []
    run: list[AnyReply] = []
    run_thread = ""

    def flush() -> None:
        for message in render.render(run, visibility=visibility):
            if run_thread and not route.response_url:
                message["thread_ts"] = run_thread
            out.append((message, run_thread))
        run.clear()

    for reply in replies:
        if is_assistant(reply):
            flush()
            out.append((reply, route.thread))
            continue
        thread = thread_of(route, reply)
        if run and thread != run_thread:
            flush()
        run_thread = thread
        run.append(reply)
    flush()
    return out


def set_assistant(
    sender: SlackSender, key: ConversationKey, thread: str, reply: Status | Prompts | Title
) -> None:
    """One assistant call for ``reply`` in ``thread`` (``""``: none, so nothing to set: a
    status, prompts or a title belong to a thread). A refusal is logged, never raised: it is
    how the thread looks, not a message the user waits for."""
    from slack_sdk.errors import SlackApiError

    if not thread:
        log.info("%s outside a thread; not set", reply.kind)
        return
    web = sender.web_for(key)
    try:
        if isinstance(reply, Status):
            web.api_call(
                "assistant.threads.setStatus",
                json={
                    "channel_id": key.channel,
                    "thread_ts": thread,
                    "status": reply.text,
                    **({"loading_messages": list(reply.loading)} if reply.loading else {}),
                },
            )
        elif isinstance(reply, Prompts):
            prompts = [{"title": t, "message": m} for t, m in reply.prompts[:MAX_PROMPTS]]
            web.api_call(
                "assistant.threads.setSuggestedPrompts",
                json={
                    "channel_id": key.channel,
                    "thread_ts": thread,
                    "prompts": prompts,
                    **({"title": reply.title} if reply.title else {}),
                },
            )
        else:
            web.api_call(
                "assistant.threads.setTitle",
                json={"channel_id": key.channel, "thread_ts": thread, "title": reply.text},
            )
    except SlackApiError as exc:
        sender.refused(key, exc)
        log.warning("Slack refused %s (%s)", reply.kind, str(exc.response.get("error"))[:40])
    except Exception as exc:
        log.warning("%s not set (%s)", reply.kind, type(exc).__name__)
