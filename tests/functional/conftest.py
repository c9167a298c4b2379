from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import handlers.messenger
import handlers.slack
from handlers.settings import from_env
from handlers.store import store_from_settings
from sessions import ConversationKey, Sessions
from sessions.store import Store
from tests.fakes import FakeSlack, fake_slack
from tests.keys import stored
from tests.slack_requests import SECRET


@dataclass
class SlackWorld:
    fake: FakeSlack
    store: Store
    sessions: Sessions

    def call(self, event: dict[str, Any]) -> dict[str, Any]:
        return handlers.slack.handler(event, None)

    def items(self, *, channel: str = "C0001", user: str = "U0001") -> list[str]:
        key = ConversationKey.slack(team="T0001", channel=channel, user=user)
        conversation = self.sessions.get(stored(key))
        return [] if conversation is None else [i["text"] for i in conversation.state["items"]]

    def stored(self, user: str = "U0001") -> list[tuple[str, Any]]:
        key = ConversationKey.slack(team="T0001", channel="C0001", user=user)
        return self.store.user_items(key.user_key)


def select_store(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Store:
    """Point the environment at this test's store (outside Lambda) and open it too."""
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    monkeypatch.setenv("SESSIONS_TIMERS_DB", str(tmp_path / "timers.sqlite3"))
    if request.param == "sqlite":
        monkeypatch.setenv("SESSIONS_DB", str(tmp_path / "sessions.sqlite3"))
        monkeypatch.delenv("SESSIONS_TABLE", raising=False)
    else:
        monkeypatch.setenv("SESSIONS_TABLE", request.getfixturevalue("local_table"))
        monkeypatch.setenv(
            "AWS_ENDPOINT_URL_DYNAMODB", request.getfixturevalue("dynamodb_endpoint")
        )
    return store_from_settings(from_env())


@pytest.fixture(params=["sqlite", "dynamodb_local"])
def slack(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[SlackWorld]:
    with fake_slack() as fake:
        monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test-token")
        monkeypatch.setenv("SLACK_API_URL", fake.api_url)
        store = select_store(request, monkeypatch, tmp_path)
        handlers.slack.reset()
        yield SlackWorld(fake=fake, store=store, sessions=Sessions(store))
        handlers.slack.reset()
        store.close()


@dataclass
class MessengerWorld:
    fake: FakeSlack
    store: Store
    sessions: Sessions

    def call(self, event: dict[str, Any]) -> dict[str, Any]:
        return handlers.messenger.handler(event, None)

    def items(self, *, psid: str = "5550001", page: str = "100200300") -> list[str]:
        conversation = self.sessions.get(stored(ConversationKey.messenger(page=page, psid=psid)))
        return [] if conversation is None else [i["text"] for i in conversation.state["items"]]

    def stored(self, *, psid: str = "5550001", page: str = "100200300") -> list[tuple[str, Any]]:
        return self.store.user_items(ConversationKey.messenger(page=page, psid=psid).user_key)

    def texts(self, psid: str | None = None) -> list[str]:
        return [
            c.body["message"]["text"]
            for c in self.fake.sends()
            if psid is None or c.body["recipient"]["id"] == psid
        ]


@pytest.fixture(params=["sqlite", "dynamodb_local"])
def messenger(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[MessengerWorld]:
    from tests.messenger_requests import APP_SECRET, VERIFY_TOKEN

    with fake_slack() as fake:
        monkeypatch.setenv("MESSENGER_APP_SECRET", APP_SECRET)
        monkeypatch.setenv("MESSENGER_VERIFY_TOKEN", VERIFY_TOKEN)
        monkeypatch.setenv("MESSENGER_PAGE_TOKEN", "page-token-test")
        monkeypatch.setenv("MESSENGER_API_URL", fake.graph_url)
        store = select_store(request, monkeypatch, tmp_path)
        handlers.messenger.reset()
        yield MessengerWorld(fake=fake, store=store, sessions=Sessions(store))
        handlers.messenger.reset()
        store.close()
