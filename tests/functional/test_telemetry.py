"""Structured logs and metrics of a turn: the JSON lines and EMF blobs the Lambda entry points
write (SESSIONS_TELEMETRY=on, as inside Lambda), read back and checked field by field."""

from __future__ import annotations

import json
import logging
import types
from collections.abc import Iterator
from typing import Any

import pytest

import handlers.messenger
import handlers.slack
from handlers.telemetry import conversation_hash
from sessions import ConversationKey
from sessions.dynamodb import DynamoDBStore
from sessions.privacy import fingerprint
from tests import messenger_requests as mr
from tests.functional.conftest import MessengerWorld, SlackWorld
from tests.keys import stored
from tests.slack_requests import dm_body, json_event


def context(request_id: str) -> Any:
    return types.SimpleNamespace(
        aws_request_id=request_id,
        function_name="chat-sessions-test",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:chat-sessions-test",
        memory_limit_in_mb=512,
    )


@pytest.fixture(autouse=True)
def telemetry_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Telemetry on, and our loggers as they were afterwards (Powertools rewires them)."""
    monkeypatch.setenv("SESSIONS_TELEMETRY", "on")
    saved = {
        name: (lg.handlers[:], lg.propagate, lg.level)
        for name in ("sessions", "handlers")
        for lg in [logging.getLogger(name)]
    }
    yield
    for name, (kept, propagate, level) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers, lg.propagate, lg.level = kept, propagate, level


def lines(out: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The stdout of an invocation: (log lines, EMF blobs). Every line must be JSON."""
    parsed = [json.loads(line) for line in out.splitlines() if line.strip()]
    emf = [p for p in parsed if "_aws" in p]
    return [p for p in parsed if "_aws" not in p], emf


def metrics_of(blob: dict[str, Any]) -> dict[str, Any]:
    [directive] = blob["_aws"]["CloudWatchMetrics"]
    names = {m["Name"]: m.get("Unit") for m in directive["Metrics"]}
    return {"namespace": directive["Namespace"], "dimensions": directive["Dimensions"], **{
        name: (blob[name], unit) for name, unit in names.items()
    }}  # fmt: skip


def test_a_slack_turn_and_its_duplicate_log_one_line_each_and_emit_metrics(
    slack: SlackWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    body = dm_body("add buy milk")
    assert handlers.slack.handler(json_event(body), context("req-1"))["statusCode"] == 200
    logs, emf = lines(capsys.readouterr().out)
    [turn] = [entry for entry in logs if entry["message"] == "turn"]
    key = stored(ConversationKey.slack(team="T0001", channel="D0001", user="U0001"))
    assert turn["level"] == "INFO" and turn["service"] == "chat-sessions"
    assert turn["function_request_id"] == "req-1" and turn["cold_start"] is True
    assert turn["platform"] == "slack" and turn["outcome"] == "applied"
    assert turn["conversation"] == conversation_hash(key.pk, key.sk)
    assert turn["event_kind"] == "event"
    assert turn["event_hash"] == fingerprint(f"event:{body['event_id']}")
    assert turn["attempts"] == 1 and turn["retries"] == 0 and turn["sent"] is True
    assert turn["store_calls"] == 2 and turn["store_ms"] > 0
    assert (turn["large_reads"], turn["large_writes"], turn["key_requests"]) == (0, 0, 0)
    assert turn["turn_ms"] >= turn["store_ms"]
    # Nothing the user said, no user id, no secret.
    text = json.dumps(logs)
    for secret in ("buy milk", "U0001", "xoxb-test-token", "test-signing-secret"):
        assert secret not in text
    [blob] = emf
    m = metrics_of(blob)
    assert m["namespace"] == "ChatSessions" and blob["platform"] == "slack"
    assert m["Turns"] == ([1.0], "Count") and m["TurnLatency"][1] == "Milliseconds"
    assert "Duplicates" not in m and "DeadLetters" not in m

    # Slack redelivers: a duplicate, in the next invocation (another request id).
    retry = json_event(body, retry=1)
    assert handlers.slack.handler(retry, context("req-2"))["statusCode"] == 200
    logs, emf = lines(capsys.readouterr().out)
    [turn] = [entry for entry in logs if entry["message"] == "turn"]
    assert turn["outcome"] == "duplicate" and turn["function_request_id"] == "req-2"
    assert turn["cold_start"] is False and turn["store_calls"] == 1
    # Capacity as DynamoDB reports it (SQLite reports none): a duplicate is one read.
    dynamodb = isinstance(slack.store, DynamoDBStore)
    units = (turn.get("read_units"), turn.get("write_units"))  # a None field is left out
    assert units == ((1.0, 0.0) if dynamodb else (None, None))
    assert ("ReadUnits" in metrics_of(emf[0])) is dynamodb
    assert metrics_of(emf[0])["Duplicates"] == ([1.0], "Count")


def test_a_dead_letter_and_the_other_log_lines_are_json_with_their_fields(
    messenger: MessengerWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    class Broken:
        def turn(self, state: Any, message: Any) -> Any:
            raise KeyError(message.text)  # quotes the user: must not reach the turn line

    handlers.messenger.handler.reset()
    edge = handlers.messenger.build(bot=Broken())
    handlers.messenger.handler._edge = edge
    capsys.readouterr()
    event = mr.post(mr.single(mr.text("my secret plan", psid="5550001")))
    assert handlers.messenger.handler(event, context("req-9"))["statusCode"] == 200
    logs, emf = lines(capsys.readouterr().out)
    [turn] = [entry for entry in logs if entry["message"] == "turn"]
    assert turn["outcome"] == "dead_lettered" and turn["error"] == "TurnError"
    assert turn["platform"] == "messenger" and turn["function_request_id"] == "req-9"
    # The runner's own line, through Powertools' handler, with its extra= field.
    [letter] = [entry for entry in logs if "dead letter" in entry["message"]]
    assert letter["level"] == "ERROR" and letter["conversation"] == turn["conversation"]
    assert letter["message"] == "event recorded as a dead letter: TurnError < KeyError"
    assert letter["function_request_id"] == "req-9"
    # Neither the user's text (quoted by the bot's exception) nor their id, on any line.
    out = json.dumps(logs)
    assert "my secret plan" not in out and "5550001" not in out
    m = metrics_of(emf[0])
    assert m["DeadLetters"] == ([1.0], "Count") and emf[0]["platform"] == "messenger"


CANARY_TEXT = "canary-text-9q7w"
CANARY_SLACK = ("T0CANARY1", "U0CANARY2", "D0CANARY3")
CANARY_PSID = "5550987123"


class Quoting:
    """A bot that fails quoting the user on "boom", and otherwise echoes them."""

    commands = ("/todo",)
    actions = ("todo_done",)

    def turn(self, state: Any, message: Any) -> Any:
        from bot import Reply

        if "boom" in message.text or "boom" in (message.value or ""):
            raise KeyError(f"no item {message.text or message.value}")
        return state, [Reply(f"you said {message.text or message.value}")], None

    def is_slow(self, message: Any) -> bool:
        return False


def _no_canary(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    captured = capsys.readouterr()
    out = (
        captured.out
        + captured.err
        + "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    )
    assert "ERROR" in out and "withheld" in out, "no failure was logged: this proves nothing"
    for canary in (CANARY_TEXT, *CANARY_SLACK, CANARY_PSID):
        assert canary not in out, canary


def test_no_canary_from_a_slack_user_field_reaches_a_log_line_or_a_metric(
    slack: SlackWorld, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Canaries in every field a user (or whoever holds a leaked secret) controls: texts,
    user, team and channel ids, button values; through turns that succeed, fail in the bot
    (which quotes the user) or whose replies cannot be sent. None may reach stdout, stderr or
    an EMF blob."""
    from tests.slack_requests import block_action, slash

    team, user, channel = CANARY_SLACK
    handlers.slack.handler.reset()
    handlers.slack.handler._edge = handlers.slack.build(bot=Quoting())
    capsys.readouterr()

    def call(event: Any) -> None:
        assert handlers.slack.handler(event, context("req-s"))["statusCode"] < 500

    for text in (CANARY_TEXT, f"boom {CANARY_TEXT}"):
        body = dm_body(text, team=team, user=user, channel=channel)
        call(json_event(body))
        call(json_event(body, retry=1))
        call(slash(text, team=team, user=user, channel=channel))
        call(block_action(text, team=team, user=user, channel=channel))
    slack.fake.failures["/api/chat.postMessage"] = [500, 500, 500]
    call(json_event(dm_body(f"again {CANARY_TEXT}", team=team, user=user, channel=channel)))
    _no_canary(capsys, caplog)


def test_no_canary_from_a_messenger_user_field_reaches_a_log_line_or_a_metric(
    messenger: MessengerWorld, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The same on Messenger: texts, the psid, mids, an unreadable message, a failing Send
    API."""
    handlers.messenger.handler.reset()
    handlers.messenger.handler._edge = handlers.messenger.build(bot=Quoting())
    capsys.readouterr()

    def call(data: Any) -> None:
        raw = json.dumps(data).encode()
        assert handlers.messenger.handler(mr.post(raw), context("req-m"))["statusCode"] < 500

    for text in (CANARY_TEXT, f"boom {CANARY_TEXT}"):
        call(mr.single(mr.text(text, psid=CANARY_PSID, mid=f"m_{CANARY_TEXT}_{len(text)}")))
    call(mr.single(mr.text(CANARY_TEXT, psid=CANARY_PSID, mid="m" + CANARY_TEXT * 200)))
    messenger.fake.failures["/v25.0/me/messages"] = [500, 500, 500]
    call(mr.single(mr.text(f"late {CANARY_TEXT}", psid=CANARY_PSID)))
    _no_canary(capsys, caplog)
