"""Bolt-native use: a listener declaring ``session``, committed on return, say held."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from slack_bolt import App, BoltRequest
from slack_bolt.authorization import AuthorizeResult
from slack_sdk import WebClient

from handlers.slack.bolt import with_session
from sessions import ConversationKey, Sessions
from sessions.sqlite import SQLiteStore
from tests.fakes import FakeSlack, fake_slack
from tests.slack_requests import SECRET, dm_body, form, sign


@pytest.fixture
def bolt(tmp_path: Path) -> Iterator[tuple[App, Sessions, FakeSlack, list[int]]]:
    with fake_slack() as fake:
        sessions = Sessions(SQLiteStore(tmp_path / "s.sqlite3"))
        app = App(
            signing_secret=SECRET,
            authorize=lambda enterprise_id, team_id: AuthorizeResult(
                enterprise_id=enterprise_id, team_id=team_id, bot_token="xoxb-t"
            ),
            client=WebClient(token="xoxb-t", base_url=fake.api_url),
            process_before_response=True,
        )
        runs: list[int] = []
        gate = threading.Barrier(2, timeout=10)

        @app.event("message")
        @with_session(sessions)
        def count(ack: Any, session: dict[str, Any], say: Any, event: dict[str, Any]) -> None:
            """May run more than once per event: pure apart from ack/say/respond."""
            runs.append(1)
            if event["text"] == "race" and len(runs) <= 2:
                gate.wait()  # both racing deliveries read the same version
            session["n"] = session.get("n", 0) + 1
            say(f"count is {session['n']}")
            ack()

        @app.command("/count")
        @with_session(sessions)
        def command(ack: Any, session: dict[str, Any]) -> None:
            session["n"] = session.get("n", 0) + 1
            ack(f"count is {session['n']}")

        yield app, sessions, fake, runs


def dispatch(app: App, body: dict[str, Any], retry: int | None = None) -> Any:
    raw = json.dumps(body).encode()
    headers = {"content-type": "application/json", **sign(raw)}
    if retry:
        headers["x-slack-retry-num"] = str(retry)
    return app.dispatch(BoltRequest(body=raw.decode(), headers=headers))


def test_session_is_committed_and_say_held_until_then(bolt: Any) -> None:
    app, sessions, fake, _ = bolt
    first = dm_body("hi")
    assert dispatch(app, first).status == 200
    assert dispatch(app, dm_body("hi again")).status == 200
    assert dispatch(app, first, retry=1).status == 200  # redelivery: nothing said again
    assert [c.body["text"] for c in fake.posts()] == ["count is 1", "count is 2"]
    key = ConversationKey.slack(team="T0001", channel="D0001", user="U0001")
    conversation = sessions.get(key)
    assert conversation is not None and conversation.state == {"n": 2}


def test_a_raced_listener_runs_again_but_speaks_once(bolt: Any) -> None:
    app, _, fake, runs = bolt
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda b: dispatch(app, b), [dm_body("race"), dm_body("race")]))
    assert [r.status for r in results] == [200, 200]
    assert len(runs) == 3  # the loser re-ran on the new state
    assert sorted(c.body["text"] for c in fake.posts()) == ["count is 1", "count is 2"]


def test_slash_command_ack_carries_the_session_result(bolt: Any) -> None:
    app, _, _, _ = bolt
    fields = {"command": "/count", "text": "", "team_id": "T0001", "channel_id": "C0001"}
    fields |= {"user_id": "U0001", "trigger_id": "1.2.3", "response_url": "http://127.0.0.1:9/"}
    body, headers = form(fields)
    response = app.dispatch(BoltRequest(body=body.decode(), headers=headers))
    assert response.status == 200 and "count is 1" in response.body
