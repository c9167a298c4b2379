"""A streamed answer on WhatsApp, which cannot show a growing message: the whole text as
messages within the Cloud API's limits once the answer is complete
(``handlers.pipeline.streams`` records the stop before it goes: sent once). Outside the 24-hour
window the answer cannot go: the stop raises ``OutsideWindow`` and the effect's follow-up
tells the bot, as for any reply."""

from __future__ import annotations

from bot.replies import Reply
from handlers.whatsapp import render
from handlers.whatsapp.send import CloudAPI


class WhatsAppStream:
    """One answer to a WhatsApp user (a ``streams.StreamTarget``)."""

    whole = True

    def __init__(self, cloud: CloudAPI, number: str, user: str, token: str) -> None:
        self.cloud = cloud
        self.number = number
        self.user = user
        self.token = token

    def open(self) -> str:
        return ""  # nothing to open: the answer goes whole

    def append(self, ref: str, text: str) -> None:  # never called: ``whole``
        raise NotImplementedError("WhatsApp shows the whole answer at once")

    def stop(self, ref: str, text: str) -> None:
        for message in render.render([Reply(text or " ")]):
            self.cloud.send(self.number, self.user, message, token=self.token)
