"""``make admin delete`` of a user who wrote to a channel-scope bot that is not the configured
``BOT`` (issue 33, item 3): the delete finds the bot recorded with the user's membership mark
and runs its forget turn; when it cannot load that bot it refuses, naming it, and deletes
nothing. Run as the operator runs it: ``admin.main`` over the SQLite file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot import Bot, Message, Outcome
from bot.spec import BotSpec
from examples.poll import bot as poll
from handlers.pipeline import Pipeline
from handlers.pipeline.delivery import Delivery, SlackRoute
from handlers.tools import admin
from sessions import ConversationKey, Sessions, UserKey
from sessions.dynamodb import DynamoDBStore
from sessions.sqlite import SQLiteStore
from sessions.store import Store
from tests.contract.test_timers import Recorder

ADA = UserKey("slack", "T0001", "U0001")


def write(sessions: Sessions, the_bot: Any, text: str) -> ConversationKey:
    """Ada's message on channel C0001, through the edges' pipeline (her mark first)."""
    pipeline = Pipeline(sessions=sessions, spec=BotSpec.of(the_bot), platform=Recorder(),
                        deferrer=lambda: None)  # type: ignore[arg-type,return-value]  # fmt: skip
    key = ConversationKey.slack(team="T0001", channel="C0001", user="U0001")
    now = sessions.clock()
    message = Message(text=text, platform="slack", workspace="T0001", conversation="C0001",
                      user="U0001", time=now)  # fmt: skip
    pipeline.run(Delivery(key, f"Ev-{text}", message, now, SlackRoute("event")))
    return pipeline.keys(Delivery(key, "x", message, now, SlackRoute("event")))[0]


@pytest.fixture(params=["sqlite", "dynamodb_local"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Store, list[str]]:
    """The store, and the admin CLI's flags that open it."""
    monkeypatch.delenv("SESSIONS_TABLE", raising=False)
    if request.param == "sqlite":
        path = tmp_path / "s.sqlite3"
        return SQLiteStore(path), ["--db", str(path)]
    table = request.getfixturevalue("local_table")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", request.getfixturevalue("dynamodb_endpoint"))
    return DynamoDBStore(table, client=request.getfixturevalue("local_client")), ["--table", table]


def test_delete_runs_the_forget_turn_of_the_bot_recorded_with_the_mark(
    store: tuple[Store, list[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sessions = Sessions(store[0])
    channel = write(sessions, poll, "poll Lunch? pizza, sushi")
    assert "U0001" in json.dumps(sessions.get(channel).state)  # type: ignore[union-attr]
    monkeypatch.delenv("BOT", raising=False)  # the configured bot is the todo bot
    assert admin.main([*store[1], "delete", "--yes", "--settle", "0", ADA.pk]) == 0
    assert "forgot the user on 1 channel" in capsys.readouterr().out
    assert "U0001" not in json.dumps(sessions.get(channel).state)  # type: ignore[union-attr]


def test_delete_refuses_when_it_cannot_run_the_bots_forget_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Wall(Bot[dict]):  # built in a function: no module-level name records it
        namespace = "wall"
        scope = "channel"

        def turn(self, state: dict, message: Message) -> Outcome[dict]:
            if message.kind == "user_deleted":
                return Outcome({}, [])
            return Outcome({**state, message.user or "": message.text}, [])

    path = tmp_path / "s.sqlite3"
    sessions = Sessions(SQLiteStore(path))
    channel = write(sessions, Wall(), "hello")
    monkeypatch.delenv("BOT", raising=False)
    items = sessions.store.user_items(ADA)
    assert admin.main(["--db", str(path), "delete", "--yes", "--settle", "0", ADA.pk]) == 1
    err = capsys.readouterr().err
    assert "'wall'" in err and "nothing deleted" in err
    assert sessions.store.user_items(ADA) == items
    assert sessions.get(channel).state == {"U0001": "hello"}  # type: ignore[union-attr]


class Grudge(Bot[dict]):
    """A channel bot whose forget turn raises."""

    namespace = "grudge"
    scope = "channel"

    def turn(self, state: dict, message: Message) -> Outcome[dict]:
        if message.kind == "user_deleted":
            raise KeyError("never forgets")
        return Outcome({**state, message.user or "": message.text}, [])


grudge = Grudge()


def test_delete_does_not_report_success_when_a_forget_turn_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The forget turn raised (a dead letter on the channel): the user's partition, and the
    mark that finds the channel, stay, so that the delete can run again once the bot is
    fixed; the CLI says so and exits 1."""
    path = tmp_path / "s.sqlite3"
    sessions = Sessions(SQLiteStore(path))
    channel = write(sessions, grudge, "hello")
    monkeypatch.setenv("BOT", "tests.integration.test_admin_forget:grudge")
    assert admin.main(["--db", str(path), "delete", "--yes", "--settle", "0", ADA.pk]) == 1
    assert "nothing of the user deleted" in capsys.readouterr().err
    assert sessions.store.user_items(ADA) != []
    assert sessions.get(channel).state == {"U0001": "hello"}  # type: ignore[union-attr]
