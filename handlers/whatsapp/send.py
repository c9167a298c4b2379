"""The Cloud API's messages endpoint: ``POST {WHATSAPP_API_URL}/<phone_number_id>/messages``
with the number's token, through ``requests``.

Like Messenger's Send API it has no idempotency key, so a message is retried only when it
certainly did not arrive: no connection, 429, or a 5xx whose Graph error says it is transient.
A timeout or a reset after the request went out may follow a delivered message: raised,
never repeated (replies at most once). A refusal because the user's last message is older
than 24 hours (Graph error 131047, "re-engagement message") is :class:`OutsideWindow`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

#: The shortest timeout an attempt gets, however little time is left.
MIN_SEND_TIMEOUT = 1.0
#: Graph error codes of a free-form message outside the 24-hour customer-service window
#: (131047; 470 is its code in the older on-premises API).
WINDOW_CODES = (131047, 470)


class SendError(RuntimeError):
    """The Cloud API refused a message, or kept failing through every retry. ``code``: the
    Graph error's code, when it gave one."""

    def __init__(self, text: str, *, code: int | None = None) -> None:
        super().__init__(text)
        self.code = code


class OutsideWindow(SendError):
    """A free-form message to a user whose last message is older than 24 hours: only an
    approved template reaches them now."""


class CloudAPI:
    """``POST {base}/<phone_number_id>/messages`` (Bearer token) with timeouts, retried
    (jittered backoff) only when the message certainly did not arrive."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        session: requests.Session | None = None,
        attempts: int = 3,
        backoff: float = 0.3,
        timeout: tuple[float, float] = (3.05, 5.0),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.http = session or requests.Session()
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self.sleep = sleep

    def send(
        self,
        number: str,
        to: str,
        message: Mapping[str, Any],
        *,
        deadline: float | None = None,
        token: str | None = None,
    ) -> str | None:
        """Send one message from phone number ``number`` to user ``to`` (their id as Meta
        sent it), with ``token`` (the number's own; default ``WHATSAPP_TOKEN``). Returns the
        ``wamid`` Meta gave it, if it said.

        ``deadline`` (``time.monotonic()``): each attempt's timeouts are cut to the time left
        (never below ``MIN_SEND_TIMEOUT``) and nothing is retried past it.

        Raises:
            OutsideWindow: the 24-hour window is closed for free-form messages.
            SendError: refused, failed through every allowed retry (or past the deadline), or
                possibly delivered but unanswered (never retried).
        """
        url = f"{self.base_url}/{number}/messages"
        body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
                **message}  # fmt: skip
        headers = {"authorization": f"Bearer {token or self.token or ''}"}
        problem = ""
        for attempt in range(1, self.attempts + 1):
            timeout = self.timeout
            if deadline is not None:
                left = max(deadline - time.monotonic(), MIN_SEND_TIMEOUT)
                timeout = (min(timeout[0], left), min(timeout[1], left))
            try:
                answer = self.http.post(url, json=body, headers=headers, timeout=timeout)
            except requests.RequestException as exc:
                if not _never_sent(exc):
                    raise SendError(
                        f"Cloud API call failed after the request went out "
                        f"({type(exc).__name__}); not retried: it may have been delivered"
                    ) from exc
                problem = type(exc).__name__
            else:
                if answer.status_code < 300:
                    return _wamid(answer)
                error = _error(answer)
                code = error.get("code") if type(error.get("code")) is int else None
                problem = f"HTTP {answer.status_code}, Graph error {code}"
                if code in WINDOW_CODES:
                    raise OutsideWindow(f"outside the 24-hour window: {problem}", code=code)
                if not _not_processed(answer.status_code, error):
                    raise SendError(f"Cloud API refused the message: {problem}", code=code)
            if attempt < self.attempts:
                pause = random.uniform(0.5, 1.0) * self.backoff * 2 ** (attempt - 1)
                if deadline is not None and time.monotonic() + pause >= deadline:
                    raise SendError(f"Cloud API failed, no retry past the deadline: {problem}")
                self.sleep(pause)
        raise SendError(f"Cloud API failed {self.attempts} times, last: {problem}")


def _error(answer: requests.Response) -> dict[str, Any]:
    try:
        error = answer.json().get("error")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def _wamid(answer: requests.Response) -> str | None:
    try:
        sent = answer.json().get("messages") or [{}]
        wamid = sent[0].get("id")
    except (ValueError, AttributeError, IndexError, TypeError):
        return None
    return wamid if isinstance(wamid, str) else None


def _never_sent(exc: requests.RequestException) -> bool:
    """The request never reached Meta: no connection (refused, unresolvable, connect timeout).
    A read timeout or a connection reset mid-answer is not that."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError) or isinstance(exc, requests.ReadTimeout):
        return False
    import urllib3.exceptions as u3

    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # MaxRetryError wraps the cause
    return isinstance(reason, u3.NewConnectionError | u3.ConnectTimeoutError)


def _not_processed(status: int, error: Mapping[str, Any]) -> bool:
    """429, or a 5xx whose Graph error says it is transient (``is_transient``, or codes 1
    and 2: "unknown"/"service" errors Meta says to retry)."""
    if status == 429:
        return True
    return status >= 500 and (error.get("is_transient") is True or error.get("code") in (1, 2))
