"""Validly signed values that used to answer 5xx on every redelivery (a loop that gets a
Messenger webhook disabled): each is now applied, or refused as bad input with a 4xx before
anything is stored. Both edges, really signed requests, AWS's DynamoDB Local."""

from __future__ import annotations

import json

import pytest

from sessions import ConversationKey, Sessions
from sessions.dynamodb import DynamoDBStore
from tests import messenger_requests as mr
from tests import slack_requests as sr
from tests.fakes import FakeSlack
from tests.keys import stored
from tests.reliability.conftest import SpyBot, edges

pytestmark = pytest.mark.dynamodb_local

DM_KEY = ConversationKey.slack(team="T0001", channel="D0001", user="U0001")


def _items(sessions: Sessions, key: ConversationKey) -> list[str]:
    conversation = sessions.get(stored(key))
    return [] if conversation is None else [i["text"] for i in conversation.state["items"]]


@pytest.mark.parametrize(
    "text", ["\ud800", "a\udfffb", "\ud83d"], ids=["high", "low", "half-emoji"]
)
def test_a_lone_surrogate_is_kept_like_any_text(
    fake: FakeSlack, ddb_store: DynamoDBStore, text: str
) -> None:
    """JSON may carry a lone surrogate (``"\\ud800"``); a state holding one is stored and
    read back as it came, on both edges, and a redelivery is a duplicate."""
    sessions = Sessions(ddb_store)
    slack, messenger = edges(fake, sessions, SpyBot())
    body = sr.dm_body(f"add {text}")
    raw = json.dumps(body).encode()  # ensure_ascii: the surrogate travels as \\ud800
    headers = {"content-type": "application/json", **sr.sign(raw)}
    for _ in range(2):
        event = sr.http_v2(raw, headers, base64_body=False)
        assert slack.handle(event)["statusCode"] == 200
    assert _items(sessions, DM_KEY) == [text]

    psid = "7770001"
    raw = json.dumps(mr.single(mr.text(f"add {text}", psid=psid, mid="m_surrogate"))).encode()
    for _ in range(2):
        assert messenger.handle(mr.post(raw))["statusCode"] == 200
    assert _items(sessions, ConversationKey.messenger(page=mr.PAGE, psid=psid)) == [text]


@pytest.mark.parametrize(
    "value",
    ["\u00b2", "\u0661\u0662\u0663", "1e999", "9" * 400, "\uff11\uff12\uff13", "1.5.5", "NaN"],
    ids=["superscript", "arabic-indic", "exponent", "huge", "fullwidth", "two-dots", "nan"],
)
def test_a_time_that_is_not_ascii_digits_is_no_time(
    fake: FakeSlack, ddb_store: DynamoDBStore, value: str
) -> None:
    """``str.isdigit`` is true of "²" and of Arabic-Indic digits, which ``float`` refuses or
    reads as infinite: such an ``event_time`` or ``action_ts`` is no time at all (the
    signed request's timestamp stands in), never a 500."""
    sessions = Sessions(ddb_store)
    slack, _ = edges(fake, sessions, SpyBot())
    body = sr.dm_body("add milk")
    body["event_time"] = value
    assert slack.handle(sr.json_event(body))["statusCode"] == 200
    assert _items(sessions, DM_KEY) == ["milk"]
    action = sr.block_action("done:1", action_ts=value)
    assert slack.handle(action)["statusCode"] == 200
