"""``handlers.slack.webapi.WebAPI``, the Web API client of a turn's replies, sends what
slack_sdk's ``WebClient`` sends, fails as it fails (``SlackApiError`` with Slack's answer),
and retries by ``NotSentRetryHandler``'s rules: only a call that never reached Slack, once."""

from __future__ import annotations

import io
import socket
from email.message import Message
from http.client import RemoteDisconnected
from typing import Any
from urllib.error import HTTPError, URLError

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import HttpRequest, RetryState

from handlers.slack import NotSentRetryHandler
from handlers.slack.webapi import WebAPI
from tests.fakes import fake_slack

CALLS: list[tuple[str, dict[str, Any]]] = [
    ("chat_postMessage", {"channel": "D1", "text": "hi", "thread_ts": None, "unfurl_links": False}),
    ("chat_postEphemeral", {"channel": "C1", "user": "U1", "text": "only you", "blocks": []}),
    ("views_open", {"trigger_id": "t.1", "view": {"type": "modal", "title": "x"}}),
]


@pytest.mark.parametrize(("method", "arguments"), CALLS, ids=[c[0] for c in CALLS])
def test_a_call_is_sent_as_web_client_sends_it(method: str, arguments: dict[str, Any]) -> None:
    with fake_slack() as fake:
        ours = WebAPI(token="xoxb-1", base_url=fake.api_url, timeout=2)
        theirs = WebClient(token="xoxb-1", base_url=fake.api_url, timeout=2)
        assert getattr(ours, method)(**arguments)["ok"] is True
        getattr(theirs, method)(**arguments)
        mine, sdk = fake.calls
    assert mine.path == sdk.path
    assert mine.body == sdk.body
    assert "thread_ts" not in mine.body  # None values are left out, as WebClient does
    for header in ("Authorization", "Content-Type"):
        assert mine.headers[header] == sdk.headers[header]


@pytest.mark.parametrize(
    "failure",
    [
        (200, {"ok": False, "error": "token_revoked"}),
        (400, {"ok": False, "error": "invalid_blocks"}),
    ],
)
def test_a_refusal_raises_slack_api_error_with_slacks_answer(
    failure: tuple[int, dict[str, Any]],
) -> None:
    raised = []
    with fake_slack() as fake:
        for client in (
            WebAPI(token="xoxb-1", base_url=fake.api_url, timeout=2),
            WebClient(token="xoxb-1", base_url=fake.api_url, timeout=2),
        ):
            fake.failures["/api/chat.postMessage"] = [failure]
            with pytest.raises(SlackApiError) as caught:
                client.chat_postMessage(channel="D1", text="hi")
            response = caught.value.response
            raised.append((response.status_code, response.get("error"), response.data))
    assert raised[0] == raised[1] == (failure[0], failure[1]["error"], failure[1])


def test_other_methods_are_web_clients_with_the_same_settings() -> None:
    ours = WebAPI(token="xoxb-1", base_url="http://127.0.0.1:9/api/", timeout=2)
    assert isinstance(ours.full, WebClient)
    assert (ours.full.token, ours.full.base_url, ours.full.timeout) == (
        "xoxb-1",
        "http://127.0.0.1:9/api/",
        2,
    )
    assert [type(h) for h in ours.full.retry_handlers] == [NotSentRetryHandler]
    assert ours.api_call.__self__ is ours.full  # type: ignore[attr-defined]


class _Answer:
    status = 200
    headers = Message()

    def __enter__(self) -> _Answer:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def read(self) -> bytes:
        return b'{"ok": true}'


ERRORS: list[Exception] = [
    URLError(ConnectionRefusedError(111, "refused")),
    URLError(socket.gaierror(-2, "not known")),
    ConnectionRefusedError(111, "refused"),
    URLError(ConnectionResetError(104, "reset")),  # may have been posted
    ConnectionResetError(104, "reset"),
    RemoteDisconnected("closed"),
    URLError(TimeoutError("timed out")),
    TimeoutError("timed out"),
]


@pytest.mark.parametrize("error", ERRORS, ids=[repr(e) for e in ERRORS])
def test_retried_exactly_when_not_sent_retry_handler_retries(error: Exception) -> None:
    request = HttpRequest(method="POST", url="http://x", headers={}, body_params={})
    handler = NotSentRetryHandler()
    expected = handler.can_retry(state=RetryState(), request=request, error=error)
    assert not handler.can_retry(state=RetryState(current_attempt=1), request=request, error=error)

    attempts: list[float] = []
    slept: list[float] = []

    def urlopen(_request: Any, *, timeout: float) -> _Answer:
        attempts.append(timeout)
        raise error

    web = WebAPI(
        token="t", base_url="http://x/api/", timeout=2, urlopen=urlopen, sleep=slept.append
    )
    with pytest.raises(type(error)):
        web.chat_postMessage(channel="D1", text="hi")
    # One retry at most (slack_sdk's max_retry_count), after slack_sdk's first backoff.
    assert len(attempts) == (2 if expected else 1)
    assert len(slept) == len(attempts) - 1
    assert all(0.5 <= s < 1.5 for s in slept)


def test_a_retry_that_gets_through_is_one_post() -> None:
    outcomes: list[Exception | None] = [URLError(ConnectionRefusedError(111, "refused")), None]

    def urlopen(_request: Any, *, timeout: float) -> _Answer:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return _Answer()

    web = WebAPI(
        token="t", base_url="http://x/api/", timeout=2, urlopen=urlopen, sleep=lambda _: None
    )
    assert web.chat_postMessage(channel="D1", text="hi") == {"ok": True}
    assert outcomes == []


def test_an_answer_is_never_retried() -> None:
    """An HTTP error status is an answer: Slack got the call (as the handler, which never
    retries once there is a response)."""
    attempts = []

    def urlopen(request: Any, *, timeout: float) -> _Answer:
        attempts.append(request)
        raise HTTPError(request.full_url, 503, "unavailable", Message(), io.BytesIO(b"{}"))

    web = WebAPI(
        token="t", base_url="http://x/api/", timeout=2, urlopen=urlopen, sleep=lambda _: None
    )
    with pytest.raises(SlackApiError) as caught:
        web.chat_postMessage(channel="D1", text="hi")
    assert caught.value.response.status_code == 503
    assert len(attempts) == 1
