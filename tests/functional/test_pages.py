"""One Meta app, one webhook, many Pages and Instagram accounts, through the real Messenger
edge with really signed requests, on SQLite and on DynamoDB Local: each page answered with its
own token (kept sealed by the admin CLI), a page with no token logged and acked (never a 5xx
loop), and an Instagram message applied once and answered as ``platform="instagram"``."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import handlers.messenger
from bot import Message
from handlers.settings import from_env
from handlers.tools import admin
from sessions import ConversationKey, Sessions
from sessions.store import Store
from tests.fakes import FakeSlack, fake_slack
from tests.functional.conftest import select_store
from tests.keys import stored
from tests.messenger_requests import batch, post, text

PAGE_A, PAGE_B, PAGE_C = "100000001", "100000002", "100000003"
ACCOUNT = "178000000000001"  # an Instagram professional account


class Echo:
    """A bot that says which platform and page it was reached on, and counts."""

    def turn(self, state: Any, message: Message) -> Any:
        n = (state or {}).get("n", 0) + 1
        return {"n": n}, [f"{message.platform} {message.workspace} #{n}: {message.text}"]


@pytest.fixture(params=["sqlite", "dynamodb_local"])
def world(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[FakeSlack, Store]]:
    with fake_slack() as fake:
        for name, value in fake.edge_env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("MESSENGER_PAGE_TOKEN")  # many pages: no single page's token
        store = select_store(request, monkeypatch, tmp_path)
        yield fake, store
        store.close()


def edge(store: Store) -> handlers.messenger.MessengerEdge:
    return handlers.messenger.build(from_env(), sessions=Sessions(store), bot=Echo())


def add_page(page: str, token: str, *flags: str) -> None:
    assert admin.main(["add-page", page, *flags], stdin=io.StringIO(token + "\n")) == 0


def tokens_used(fake: FakeSlack) -> list[tuple[str, str]]:
    return [
        (parse_qs(urlsplit(c.path).query)["access_token"][0], c.body["message"]["text"])
        for c in fake.sends()
    ]


def test_each_page_is_answered_with_its_own_token(
    world: tuple[FakeSlack, Store], caplog: pytest.LogCaptureFixture
) -> None:
    fake, store = world
    edge(store).handle(post(batch()))  # creates the SQLite file the admin CLI opens
    add_page(PAGE_A, "token-of-a")
    add_page(PAGE_B, "token-of-b")
    messenger = edge(store)
    both = batch(
        (PAGE_A, [text("hello a", psid="5550001", page=PAGE_A)]),
        (PAGE_B, [text("hello b", psid="5550001", page=PAGE_B)]),
    )
    assert messenger.handle(post(both))["statusCode"] == 200
    assert sorted(tokens_used(fake)) == [
        ("token-of-a", "messenger 100000001 #1: hello a"),
        ("token-of-b", "messenger 100000002 #1: hello b"),
    ]
    # A page with no token: one clear log line, 200, nothing run and nothing stored.
    caplog.clear()
    lone = batch((PAGE_C, [text("anyone?", psid="5550001", page=PAGE_C)]))
    assert messenger.handle(post(lone))["statusCode"] == 200
    assert any("no access token" in r.getMessage() for r in caplog.records)
    assert PAGE_C not in caplog.text and "5550001" not in caplog.text
    assert len(fake.sends()) == 2
    user_c = ConversationKey.messenger(page=PAGE_C, psid="5550001")
    assert Sessions(store).get(stored(user_c, Echo())) is None

    # Tokens are sealed at rest when encryption is on (tests/contract/test_records.py); a
    # removed page is no longer answered, once the container's cache (5 minutes) forgets it.
    assert admin.main(["remove-page", PAGE_B]) == 0
    assert admin.main(["remove-page", PAGE_B]) == 1
    assert edge(store).tokens.token("messenger", PAGE_B) is None


def test_an_instagram_message_is_applied_once_and_answered(
    world: tuple[FakeSlack, Store],
) -> None:
    fake, store = world
    edge(store).handle(post(batch()))
    add_page(ACCOUNT, "token-of-the-account", "--instagram")
    add_page(PAGE_A, "token-of-a")
    messenger = edge(store)
    message = text("hi from instagram", psid="8000000000001", page=ACCOUNT, mid="aWdfZG1fbWlk")
    body = {"object": "instagram", "entry": [{"id": ACCOUNT, "time": 1, "messaging": [message]}]}
    raw = json.dumps(body).encode()
    for _ in range(2):  # Meta redelivers: the mid makes it once
        assert messenger.handle(post(raw))["statusCode"] == 200
    assert tokens_used(fake) == [
        ("token-of-the-account", f"instagram {ACCOUNT} #1: hi from instagram")
    ]
    key = ConversationKey.instagram(account=ACCOUNT, igsid="8000000000001")
    assert key.pk == f"instagram#{ACCOUNT}#8000000000001"
    conversation = Sessions(store).get(stored(key, Echo()))
    assert conversation is not None and conversation.state == {"n": 1}
    # The same user id on a page is another conversation.
    page = batch((PAGE_A, [text("hi from the page", psid="8000000000001", page=PAGE_A)]))
    assert messenger.handle(post(page))["statusCode"] == 200
    assert tokens_used(fake)[-1] == ("token-of-a", "messenger 100000001 #1: hi from the page")
