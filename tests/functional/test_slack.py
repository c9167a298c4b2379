"""``handlers.slack.handler`` with really signed requests, a fake Slack API, SQLite and
DynamoDB Local."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.functional.conftest import SlackWorld
from tests.slack_requests import (
    BOT_USER,
    block_action,
    dm_body,
    form,
    function_url,
    http_v2,
    json_event,
    rest_v1,
    sign,
    slash,
)


def ack_text(result: dict[str, Any]) -> str:
    assert result["statusCode"] == 200, result
    return str(json.loads(result["body"])["text"])


def test_url_verification_and_ssl_check(slack: SlackWorld) -> None:
    challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    result = slack.call(json_event({"type": "url_verification", "challenge": challenge}))
    assert result["statusCode"] == 200
    assert challenge in result["body"]
    body, headers = form({"ssl_check": "1", "token": "x"})
    assert slack.call(http_v2(body, headers))["statusCode"] == 200
    assert slack.stored() == []


def test_slash_command_add_list_done_clear(slack: SlackWorld) -> None:
    assert "Added “milk”" in ack_text(slack.call(slash("add milk")))
    assert "Added “eggs”" in ack_text(slack.call(slash("todo add eggs")))
    listed = slack.call(slash("list"))
    body = json.loads(listed["body"])
    assert body["response_type"] == "ephemeral"
    assert "1. milk" in body["text"] and "2. eggs" in body["text"]
    buttons = [b["accessory"] for b in body["blocks"] if "accessory" in b]
    assert [b["action_id"] for b in buttons] == ["todo_done", "todo_done"]
    assert "Done: “milk”" in ack_text(slack.call(slash("done 1")))
    assert slack.items() == ["eggs"]
    assert "There is no item '7'" in ack_text(slack.call(slash("done 7")))
    assert "Cleared 1 item" in ack_text(slack.call(slash("clear")))
    assert slack.items() == []
    assert "`add &lt;text&gt;`" in ack_text(slack.call(slash("fly me to the moon")))
    assert "`add &lt;text&gt;`" in ack_text(slack.call(slash("help")))
    assert slack.fake.posts() == []  # slash commands answer in the ack body


def test_dm_add_and_multi_turn_prompt(slack: SlackWorld) -> None:
    assert slack.call(json_event(dm_body("add")))["statusCode"] == 200
    assert slack.call(json_event(dm_body("buy bread")))["statusCode"] == 200
    assert slack.call(json_event(dm_body("add")))["statusCode"] == 200
    assert slack.call(json_event(dm_body("cancel")))["statusCode"] == 200
    texts = [c.body["text"] for c in slack.fake.posts()]
    assert texts[0] == "What should I add?"
    assert "Added “buy bread”" in texts[1]
    assert texts[2] == "What should I add?"
    assert "won't add" in texts[3]
    assert all(c.body["channel"] == "D0001" for c in slack.fake.posts())
    assert all(c.headers["Authorization"] == "Bearer xoxb-test-token" for c in slack.fake.posts())
    assert slack.items(channel="D0001") == ["buy bread"]


def test_done_button_removes_the_item(slack: SlackWorld) -> None:
    slack.call(slash("add milk"))
    slack.call(slash("add eggs"))
    listed = json.loads(slack.call(slash("list"))["body"])
    eggs = next(b["accessory"]["value"] for b in listed["blocks"] if "eggs" in b["text"]["text"])
    result = slack.call(block_action(eggs, response_url=slack.fake.response_url("done")))
    assert result["statusCode"] == 200
    [answer] = slack.fake.responses()
    assert answer.path == "/response/done" and "Done: “eggs”" in answer.body["text"]
    assert slack.items() == ["milk"]
    # Pressing it again (a new payload) finds it gone, and says so.
    slack.call(block_action(eggs, response_url=slack.fake.response_url("again")))
    assert "already done" in slack.fake.responses()[-1].body["text"]


def test_isolation_between_users_and_channels(slack: SlackWorld) -> None:
    slack.call(slash("add mine"))
    slack.call(slash("add theirs", user="U0002"))
    slack.call(slash("add elsewhere", channel="C0002"))
    assert slack.items() == ["mine"]
    assert slack.items(user="U0002") == ["theirs"]
    assert slack.items(channel="C0002") == ["elsewhere"]
    assert "1. theirs" in ack_text(slack.call(slash("list", user="U0002")))


RETRY_REASONS = [
    "http_timeout",
    "too_many_redirects",
    "connection_failed",
    "ssl_error",
    "http_error",
    "unknown_error",
]


@pytest.mark.parametrize("reason", RETRY_REASONS)
def test_retried_deliveries_change_nothing_and_send_nothing(slack: SlackWorld, reason: str) -> None:
    body = dm_body("add once")
    assert slack.call(json_event(body))["statusCode"] == 200
    for retry in (1, 2, 3):
        assert slack.call(json_event(body, retry=retry, reason=reason))["statusCode"] == 200
    assert slack.items(channel="D0001") == ["once"]
    assert len(slack.fake.posts()) == 1


def test_retry_racing_the_first_delivery_changes_state_once(slack: SlackWorld) -> None:
    body = dm_body("add raced")
    events = [json_event(body)] + [json_event(body, retry=n) for n in (1, 2, 3)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(slack.call, events))
    assert [r["statusCode"] for r in results] == [200] * 4
    assert slack.items(channel="D0001") == ["raced"]
    assert len(slack.fake.posts()) == 1


def test_burst_of_twenty_adds_ends_with_twenty_items(slack: SlackWorld) -> None:
    events = [json_event(dm_body(f"add item {i}")) for i in range(20)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(slack.call, events))
    assert all(r["statusCode"] == 200 for r in results)
    assert sorted(slack.items(channel="D0001")) == sorted(f"item {i}" for i in range(20))
    assert len(slack.fake.posts()) == 20


COMMAND = {
    "command": "/todo",
    "text": "add x",
    "team_id": "T0001",
    "channel_id": "C0001",
    "user_id": "U0001",
    "trigger_id": "1.2",
}
BROKEN_JSON = b'{"type": "event_callback", '


def _signed_form(fields: dict[str, str], **sign_kw: Any) -> dict[str, Any]:
    body, headers = form(fields, **sign_kw)
    return http_v2(body, headers)


def _json(raw: bytes) -> dict[str, Any]:
    return http_v2(raw, {"content-type": "application/json", **sign(raw)}, base64_body=False)


BAD_REQUESTS = {
    "bad-signature": lambda: _signed_form(COMMAND, secret="wrong"),
    "stale-timestamp": lambda: _signed_form(COMMAND, timestamp=int(time.time()) - 301),
    "missing-headers": lambda: http_v2(b"command=%2Ftodo&text=add+x", {}),
    "malformed-json": lambda: _json(BROKEN_JSON),
    "not-utf8": lambda: http_v2(b"\xff\xfe", {"content-type": "text/plain", **sign(b"\xff\xfe")}),
    "bad-base64": lambda: {**http_v2(b"x", {}), "body": "%%%", "isBase64Encoded": True},
    "not-http": lambda: {"hello": "world"},
    "crafted-team-id": lambda: json_event({**dm_body("add x"), "team_id": "T1#U2"}),
    "long-user-id": lambda: _signed_form({**COMMAND, "user_id": "U" * 500}),
    "no-trigger-id": lambda: _signed_form({**COMMAND, "trigger_id": ""}),
}


@pytest.mark.parametrize("build", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_requests_are_rejected_and_store_nothing(slack: SlackWorld, build: Any) -> None:
    result = slack.call(build())
    assert result["statusCode"] in {400, 401}, result
    assert slack.stored() == []
    assert slack.fake.posts() == []


@pytest.mark.parametrize(
    "fields",
    [
        {"bot_id": "B0001"},
        {"subtype": "bot_message", "bot_id": "B0001"},
        {"subtype": "message_changed"},
        {"subtype": "message_deleted"},
        {"subtype": "channel_join"},
        {"user": BOT_USER},
        {"channel_type": "channel", "channel": "C0001"},
    ],
)
def test_bot_messages_edits_and_non_dms_are_ignored(
    slack: SlackWorld, fields: dict[str, Any]
) -> None:
    result = slack.call(json_event(dm_body("add loop", **fields)))
    assert result["statusCode"] == 200
    assert slack.stored() == [] and slack.stored(BOT_USER) == []
    assert slack.fake.posts() == []


def test_unhandled_event_types_get_200(slack: SlackWorld) -> None:
    body = dm_body("x")
    body["event"] = {"type": "app_home_opened", "user": "U0001", "channel": "D0001"}
    assert slack.call(json_event(body))["statusCode"] == 200
    assert slack.stored() == []


def test_rest_v1_and_function_url_events(slack: SlackWorld) -> None:
    body, headers = form({**COMMAND, "text": "add via rest", "trigger_id": uuid.uuid4().hex})
    assert "Added “via rest”" in ack_text(slack.call(rest_v1(body, headers)))
    body, headers = form({**COMMAND, "text": "add via url", "trigger_id": uuid.uuid4().hex})
    assert "Added “via url”" in ack_text(slack.call(function_url(body, headers)))
    assert slack.items() == ["via rest", "via url"]


def test_user_text_cannot_mention_everyone(slack: SlackWorld) -> None:
    text = ack_text(slack.call(slash("add <!channel> party")))
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
