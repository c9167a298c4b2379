"""A streamed answer on Messenger and Instagram, which cannot show a growing message: a
typing indicator while the answer is made, then the whole text as messages within the Send
API's limits (``handlers.pipeline.streams`` records the stop before it goes: sent once)."""

from __future__ import annotations

import logging

from urllib3.exceptions import HTTPError

from bot.replies import Reply
from handlers.messenger import render
from handlers.messenger.send import SendAPI
from sessions.privacy import private

log = private(logging.getLogger("handlers.messenger"))


class MessengerStream:
    """One answer to a Messenger or Instagram user (a ``streams.StreamTarget``)."""

    whole = True

    def __init__(self, send_api: SendAPI, psid: str, token: str | None) -> None:
        self.send_api = send_api
        self.psid = psid
        self.token = token

    def open(self) -> str:
        """The typing indicator (best effort: the answer matters, the dots do not)."""
        try:
            self.send_api.http.post(
                self.send_api.url,
                params={"access_token": self.token or self.send_api.page_token or ""},
                json={"recipient": {"id": self.psid}, "sender_action": "typing_on"},
                timeout=self.send_api.timeout,
            )
        except (OSError, HTTPError):
            log.info("the typing indicator was not sent")
        return ""

    def append(self, ref: str, text: str) -> None:  # never called: ``whole``
        raise NotImplementedError("Messenger shows the whole answer at once")

    def stop(self, ref: str, text: str) -> None:
        for message in render.render([Reply(text or " ")]):
            self.send_api.send(self.psid, message, token=self.token)
