"""``make admin``: ``show`` with the README's bare channel (``D0LOCAL``) finds the bot's
namespaced item (``todo:D0LOCAL``); ``retry`` under another bot's ``BOT`` says so instead of
"failed again"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from handlers.tools import admin
from sessions import ConversationKey, Sessions
from sessions.sqlite import SQLiteStore

ME = ConversationKey.slack(team="T0LOCAL", channel="D0LOCAL", user="U0LOCAL")


def add(state: dict[str, Any] | None, text: str) -> tuple[dict[str, Any], list[str], None]:
    return {"items": [*(state or {}).get("items", []), text]}, [], None


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SESSIONS_TABLE", raising=False)
    monkeypatch.delenv("BOT", raising=False)
    path = tmp_path / "sessions.sqlite3"
    sessions = Sessions(SQLiteStore(path))
    sessions.run(ME.scoped("conversation", "todo"), "ev1", add, "milk")
    sessions.run(ME.scoped("conversation", "poll"), "ev2", add, "a poll's")
    sessions.store.close()
    return path


def test_show_takes_the_bare_channel_the_readme_shows(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert admin.main(["--db", str(db), "show", ME.pk, "D0LOCAL"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["key"] == "slack#T0LOCAL#U0LOCAL / todo:D0LOCAL"  # the default bot's
    assert shown["state"] == {"items": ["milk"]}
    monkeypatch.setenv("BOT", "examples.poll:bot")
    assert admin.main(["--db", str(db), "show", ME.pk, "D0LOCAL"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == {"items": ["a poll's"]}
    assert admin.main(["--db", str(db), "show", ME.pk, "todo:D0LOCAL"]) == 0  # as list prints
    assert json.loads(capsys.readouterr().out)["state"] == {"items": ["milk"]}
    assert admin.main(["--db", str(db), "show", ME.pk, "D0OTHER"]) == 1
    assert capsys.readouterr().err == "error: no conversation slack#T0LOCAL#U0LOCAL / D0OTHER\n"


def test_retry_under_another_bot_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead letter of the todo bot (its namespace leads the sort key), retried with
    ``BOT=examples.poll:bot``: refused by name, the dead letter left as it was."""
    from handlers.messenger import build
    from handlers.settings import from_env
    from tests import messenger_requests as mr
    from tests.fakes import fake_slack
    from tests.reliability.test_poison_and_bad_input import PoisonBot

    monkeypatch.delenv("SESSIONS_TABLE", raising=False)
    path = tmp_path / "sessions.sqlite3"
    store = SQLiteStore(path)
    user = ConversationKey.messenger(page="100", psid="300")
    with fake_slack() as fake:
        for name, value in fake.edge_env().items():
            monkeypatch.setenv(name, value)
        edge = build(from_env(), sessions=Sessions(store), bot=PoisonBot())
        raw = json.dumps(mr.single(mr.text("add poison", psid="300"), page="100")).encode()
        assert edge.handle(mr.post(raw))["statusCode"] == 200
        [(sk, _)] = Sessions(store).dead_letters(user.user_key)
        assert sk.startswith("todo:")
        monkeypatch.setenv("BOT", "examples.poll:bot")
        assert admin.main(["--db", str(path), "retry", user.pk, sk]) == 1
        err = capsys.readouterr().err
        assert "failed again" not in err
        assert f"error: {sk} is a dead letter of the bot whose namespace is todo" in err
        assert "BOT=examples.poll:bot is PollBot (namespace poll)" in err
        assert [s for s, _ in Sessions(store).dead_letters(user.user_key)] == [sk]
        monkeypatch.delenv("BOT")  # the todo bot recorded it, and handles it
        assert admin.main(["--db", str(path), "retry", user.pk, sk]) == 0
    store.close()
