"""The Messenger Send API client: ``POST {MESSENGER_API_URL}/me/messages`` over urllib3
(``handlers.meta.GraphHTTP``: requests' calls without its import on a cold start).

The Send API has no idempotency key, so a message is retried only when it certainly did not
arrive: the connection was refused, Meta answered 429, or a 5xx whose Graph error says it is
transient. A timeout or a reset after the request went out may follow a delivered message;
it is raised, never repeated (replies at most once).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from urllib3.exceptions import HTTPError

from handlers import meta

#: The shortest timeout an attempt gets, however little time is left: the Graph API answers
#: in well under a second, and a reply cut off sooner would be lost for nothing.
MIN_SEND_TIMEOUT = 1.0


class SendError(RuntimeError):
    """The Send API refused a message, or kept failing through every retry."""


class SendAPI:
    """``POST {MESSENGER_API_URL}/me/messages`` with timeouts. Retried (jittered backoff) only
    when the message certainly did not arrive: connection refused or never established, 429,
    or a 5xx whose Graph error is marked transient. Anything else is final."""

    def __init__(
        self,
        base_url: str,
        page_token: str | None,
        *,
        session: Any = None,
        attempts: int = 3,
        backoff: float = 0.3,
        timeout: tuple[float, float] = (3.05, 5.0),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = base_url.rstrip("/") + "/me/messages"
        self.page_token = page_token
        #: ``requests.Session``'s ``post`` (``params=``, ``json=``, ``timeout=``): a
        #: ``requests.Session`` or, by default, :class:`handlers.meta.GraphHTTP`.
        self.http = session or meta.GraphHTTP()
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self.sleep = sleep

    def send(
        self,
        psid: str,
        message: Mapping[str, Any],
        *,
        deadline: float | None = None,
        token: str | None = None,
    ) -> None:
        """Send one message, with ``token`` (the page's or the Instagram account's own; default
        the configured single page's).

        ``deadline`` (``time.monotonic()``) keeps a webhook's sends within the platform's
        patience: each attempt's timeouts are cut to the time left (never below
        ``MIN_SEND_TIMEOUT``) and nothing is retried past it. A send that starts after it (the
        commit itself came late, say under throttling) still gets its one attempt: the answer
        is late either way, the platform's redelivery will be a duplicate, and skipping the
        send would only lose the reply.

        Raises:
            SendError: refused, failed through every allowed retry (or past the deadline),
                or possibly delivered but unanswered (never retried).
        """
        body: dict[str, Any] = {"recipient": {"id": psid}, "messaging_type": "RESPONSE"}
        if "sender_action" in message:  # a typing indicator (an assistant's Status)
            body = {"recipient": {"id": psid}, "sender_action": message["sender_action"]}
        else:
            body["message"] = message
        problem = ""
        for attempt in range(1, self.attempts + 1):
            timeout = self.timeout
            if deadline is not None:
                left = max(deadline - time.monotonic(), MIN_SEND_TIMEOUT)
                timeout = (min(timeout[0], left), min(timeout[1], left))
            try:
                answer = self.http.post(
                    self.url,
                    params={"access_token": token or self.page_token or ""},
                    json=body,
                    timeout=timeout,
                )
            except (OSError, HTTPError) as exc:  # requests' failures are OSErrors, urllib3's not
                if not meta.never_sent(exc):
                    raise SendError(
                        f"Send API call failed after the request went out ({type(exc).__name__});"
                        " not retried: the message may have been delivered"
                    ) from exc
                problem = type(exc).__name__
            else:
                if answer.status_code < 300:
                    return
                problem = f"HTTP {answer.status_code}: {answer.text[:200]}"
                if not _not_processed(answer):
                    raise SendError(f"Send API refused the message: {problem}")
            if attempt < self.attempts:
                pause = random.uniform(0.5, 1.0) * self.backoff * 2 ** (attempt - 1)
                if deadline is not None and time.monotonic() + pause >= deadline:
                    raise SendError(f"Send API failed, no retry past the deadline: {problem}")
                self.sleep(pause)
        raise SendError(f"Send API failed {self.attempts} times, last: {problem}")


def _not_processed(answer: Any) -> bool:
    """429 (rate limited: nothing was done), or a 5xx whose Graph error says it is transient
    (``is_transient``, or codes 1 and 2: "unknown"/"service" errors Meta says to retry)."""
    if answer.status_code == 429:
        return True
    if answer.status_code < 500:
        return False
    try:
        error = answer.json().get("error") or {}
    except (ValueError, AttributeError):
        return False
    return isinstance(error, dict) and (
        error.get("is_transient") is True or error.get("code") in (1, 2)
    )
