"""Bolt's error handler tells an error of ours (500: Slack redelivers events) from a payload
Bolt itself cannot route (400: malformed, never a 5xx)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sessions import Sessions
from sessions.sqlite import SQLiteStore
from tests import slack_requests as sr
from tests.fakes import FakeSlack
from tests.reliability.conftest import SpyBot, edges


class BrokenBot(SpyBot):
    def is_slow(self, message: Any) -> bool:
        raise RuntimeError("a bug of ours")


def test_a_bug_in_our_listener_is_a_500(fake: FakeSlack, tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "s.sqlite3"))
    slack, _ = edges(fake, Sessions(store), BrokenBot())
    answer = slack.handle(sr.json_event(sr.dm_body("add x")))
    assert answer["statusCode"] == 500
    store.close()


def test_a_payload_bolt_cannot_read_is_a_400(fake: FakeSlack, tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "s.sqlite3"))
    bot = SpyBot()
    slack, _ = edges(fake, Sessions(store), bot)
    payload = {"type": "block_actions", "actions": [], "team": {"id": "T0001"}}
    body, headers = sr.form({"payload": json.dumps(payload)})
    assert slack.handle(sr.http_v2(body, headers))["statusCode"] == 400
    assert bot.turns == []
    store.close()
