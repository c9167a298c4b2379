"""The Slack Web API for a turn's replies, without loading slack_sdk on a cold start.

slack_sdk's ``WebClient`` module (its ~300 methods, Block Kit models and the asyncio and
email machinery its package imports: about 70 modules) costs a cold DM more than its first
reply's request. :class:`WebAPI` sends the three calls a turn's replies make
(``chat.postMessage``, ``chat.postEphemeral``, ``views.open``) exactly as ``WebClient``
sends them: ``POST {base_url}{method}`` over urllib, a JSON body without ``None`` values,
``Authorization: Bearer``; an answer that is not a 200 with ``"ok": true`` raises
slack_sdk's ``SlackApiError`` with the answer (slack_sdk is loaded then, on that error
only). Any other method goes to a ``WebClient`` of the same token, URL, timeout and retry
rule, built on first use.

Retries are ``NotSentRetryHandler``'s (:func:`never_reached`, the one rule both follow): a
call is sent again only when it certainly never reached Slack (connection refused, name
not resolved), once, after ``0.5 s`` plus up to 1 s of jitter (slack_sdk's default backoff
for a first retry); never after a reset, a timeout or any answer.
"""

from __future__ import annotations

import json
import random
import socket
import time
import urllib.request
from collections.abc import Callable
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any
from urllib.error import HTTPError
from urllib.parse import urljoin

if TYPE_CHECKING:
    from slack_sdk import WebClient

#: Retries of a call that never reached Slack (slack_sdk's ``RetryHandler`` default).
MAX_RETRIES = 1
#: The wait before retry ``n`` (from 0): ``BACKOFF * 2**n`` seconds plus up to 1 s of jitter.
BACKOFF = 0.5


def never_reached(error: BaseException) -> bool:
    """Whether a failed call certainly never reached Slack: the connection was refused, or
    the name did not resolve (urllib wraps both as the ``reason`` of a ``URLError``). A reset
    or a timeout may follow a message Slack already posted: never retried."""
    reason = getattr(error, "reason", error)
    return isinstance(reason, ConnectionRefusedError | socket.gaierror)


class WebAPI:
    """``chat.postMessage``, ``chat.postEphemeral`` and ``views.open`` as ``WebClient`` sends
    them; every other attribute is the ``WebClient``'s (``full``).

    Args:
        token: the bot token (``Authorization: Bearer``).
        base_url: the Web API's URL (``https://slack.com/api/``), joined as slack_sdk joins it.
        timeout: seconds per attempt.
        urlopen: opens a ``urllib.request.Request`` with a timeout (tests pass a fake;
            default urllib's, without TLS for an ``http://`` URL: :func:`_open`).
        sleep: waits before a retry (tests pass a fake).
    """

    def __init__(
        self,
        *,
        token: str | None,
        base_url: str,
        timeout: float,
        urlopen: Callable[..., Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.token = token
        self.base_url = base_url
        self.timeout = timeout
        self._urlopen = urlopen or _open
        self._sleep = sleep

    def chat_postMessage(self, **kwargs: Any) -> dict[str, Any]:
        return self.call("chat.postMessage", kwargs)

    def chat_postEphemeral(self, **kwargs: Any) -> dict[str, Any]:
        return self.call("chat.postEphemeral", kwargs)

    def views_open(self, **kwargs: Any) -> dict[str, Any]:
        return self.call("views.open", kwargs)

    @cached_property
    def full(self) -> WebClient:
        """slack_sdk's client, same token, URL, timeout and retry rule (built on first use)."""
        from slack_sdk import WebClient

        from handlers.slack.retry import NotSentRetryHandler

        return WebClient(
            token=self.token,
            base_url=self.base_url,
            timeout=int(self.timeout),
            retry_handlers=[NotSentRetryHandler()],
        )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "full":
            raise AttributeError(name)
        return getattr(self.full, name)

    def call(self, method: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """One Web API call with a JSON body; the answer's data when it is a 200 with
        ``"ok": true``.

        Raises:
            SlackApiError: any other answer (slack_sdk's, with the answer as its response).
            OSError: the call failed on the way (after the retry a refused one gets).
        """
        url = urljoin(self.base_url, method.lstrip("/"))
        if not url.lower().startswith("http"):  # as slack_sdk: no file: or custom schemes
            from slack_sdk.errors import SlackRequestError

            raise SlackRequestError(f"Invalid URL detected: {url}")
        body = json.dumps({k: v for k, v in arguments.items() if v is not None}).encode()
        headers = {"Content-Type": "application/json;charset=utf-8"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
        for attempt in range(MAX_RETRIES + 1):
            try:
                with self._urlopen(request, timeout=self.timeout) as answer:
                    status, text = answer.status, _text(answer)
                    answer_headers = dict(answer.headers.items())
                break
            except HTTPError as exc:  # an answer all the same: checked below, never retried
                status, text, answer_headers = exc.code, _text(exc), dict(exc.headers.items())
                break
            except Exception as exc:
                if attempt >= MAX_RETRIES or not never_reached(exc):
                    raise
                self._sleep(BACKOFF * 2**attempt + random.random())
        try:
            data = json.loads(text)
        except ValueError:
            data = {"ok": False, "error": f"Received a response in a non-JSON format: {text}"}
        if status == 200 and isinstance(data, dict) and data.get("ok"):
            return data
        raise _refused(self, url, arguments, data, answer_headers, status)


def _open(request: urllib.request.Request, *, timeout: float) -> Any:
    """``urllib.request.urlopen``, without building TLS for a plain-HTTP URL.

    urlopen's opener makes its TLS context when it is built, whatever the scheme: the system's
    CA certificates read and parsed, tens of milliseconds of a cold DM that a local or proxied
    ``http://`` Web API (``SLACK_API_URL``) never uses. An ``https://`` URL gets urllib's own
    default opener, as before."""
    return _opener(request.type).open(request, timeout=timeout)


@cache
def _opener(scheme: str) -> urllib.request.OpenerDirector:
    """One opener per scheme and process (as urlopen keeps one): urllib's default handlers,
    less the HTTPS one for ``http``."""
    if scheme != "http":
        return urllib.request.build_opener()
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def _text(answer: Any) -> str:
    charset = answer.headers.get_content_charset() or "utf-8"
    return str(answer.read().decode(charset))


def _refused(
    web: WebAPI,
    url: str,
    arguments: dict[str, Any],
    data: Any,
    headers: dict[str, str],
    status: int,
) -> Exception:
    """slack_sdk's ``SlackApiError`` for an answer Slack refused, as ``WebClient`` raises it."""
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web import SlackResponse

    response = SlackResponse(
        client=web.full,
        http_verb="POST",
        api_url=url,
        req_args={"json": arguments, "params": {}},
        data=data,
        headers=headers,
        status_code=status,
    )
    error: Exception = SlackApiError(  # type: ignore[no-untyped-call]
        f"The request to the Slack API failed. (url: {url})", response
    )
    return error


__all__ = ["WebAPI", "never_reached"]
