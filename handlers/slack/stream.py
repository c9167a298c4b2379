"""A streamed answer on Slack: ``chat.startStream`` in the origin's thread, then
``chat.appendStream`` and ``chat.stopStream`` (the buffering and the exactly-once chain are
``handlers.pipeline.streams``'). Outside a DM, Slack wants the user and team the stream is for.

An exchange with no thread to stream into (a slash command, a button) gets the whole text
as one ``chat.postMessage`` at the end instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.messages import Message
from bot.replies import Reply
from handlers.pipeline.delivery import SlackRoute
from handlers.slack import render

if TYPE_CHECKING:
    from slack_sdk import WebClient

    from handlers.slack.webapi import WebAPI


def thread_of(route: SlackRoute) -> str | None:
    """The thread a Slack answer streams into: the thread the message is in, else a new
    thread under the message itself; ``None`` for what has no ``ts`` (a slash command, a
    button)."""
    return route.thread or route.ts or None


class SlackStream:
    """One Slack answer, streamed (:class:`handlers.pipeline.streams.StreamTarget`)."""

    def __init__(self, web: WebClient | WebAPI, message: Message, route: SlackRoute) -> None:
        self.web = web
        self.channel = message.conversation
        self.thread = thread_of(route)
        self.whole = self.thread is None
        self.recipient: dict[str, Any] = {}
        if not self.channel.startswith("D"):  # Slack requires them outside a DM
            self.recipient = {
                "recipient_user_id": message.user,
                "recipient_team_id": message.workspace,
            }

    def open(self) -> str:
        if self.thread is None:
            return ""
        answer = self.web.chat_startStream(
            channel=self.channel, thread_ts=self.thread, **self.recipient
        )
        return str(answer["ts"])

    def append(self, ref: str, text: str) -> None:
        self.web.chat_appendStream(channel=self.channel, ts=ref, markdown_text=text)

    def stop(self, ref: str, text: str) -> None:
        if self.thread is None:
            for message in render.render([Reply(text or " ")]):
                message.pop("visibility", None)
                self.web.chat_postMessage(channel=self.channel, **message)
            return
        if text:
            self.web.chat_stopStream(channel=self.channel, ts=ref, markdown_text=text)
        else:
            self.web.chat_stopStream(channel=self.channel, ts=ref)
