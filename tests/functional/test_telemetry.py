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
from tests import messenger_requests as mr
from tests.functional.conftest import MessengerWorld, SlackWorld
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
    key = ConversationKey.slack(team="T0001", channel="D0001", user="U0001")
    assert turn["level"] == "INFO" and turn["service"] == "chat-sessions"
    assert turn["function_request_id"] == "req-1" and turn["cold_start"] is True
    assert turn["platform"] == "slack" and turn["outcome"] == "applied"
    assert turn["conversation"] == conversation_hash(key.pk, key.sk)
    assert turn["idempotency_key"] == f"event:{body['event_id']}"
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
