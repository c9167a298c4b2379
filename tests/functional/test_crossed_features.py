"""Where features cross, through the real edges with really signed requests, on SQLite and on
DynamoDB Local (regression tests of issue 33, each failing on the code before its fix): a
private reminder stays private, a timer of an Instagram account whose token was removed is
never sent with the Facebook Page's token, and a record that no longer opens never answers
5xx twice."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import handlers.messenger
import handlers.slack
from handlers.messenger.tokens import KINDS
from handlers.pipeline.timers import next_time
from handlers.settings import from_env
from handlers.store import sessions_from_settings
from sessions import Sessions
from sessions.schedules import SQLiteScheduler
from sessions.store import Store
from tests import messenger_requests as mr
from tests.fakes import FakeSlack, fake_slack
from tests.functional.conftest import MessengerWorld, SlackWorld, select_store
from tests.slack_requests import slash

ACCOUNT = "178000000000001"  # an Instagram professional account
IGSID = "8000000000001"


@pytest.fixture
def scheduler() -> Iterator[SQLiteScheduler]:
    scheduler = SQLiteScheduler(os.environ["SESSIONS_TIMERS_DB"], next_time=next_time)
    yield scheduler
    scheduler.close()


def fire(handler: Any, scheduler: SQLiteScheduler) -> None:
    """What the scheduler hands our function for each pending schedule, at its time."""
    for pending in scheduler.pending():
        deferred = {**pending.payload["sessions_deferred"], "occurrence": pending.at}
        handler({"sessions_deferred": deferred}, None)


def test_a_reminder_set_in_a_channel_by_a_slash_command_stays_ephemeral(
    slack: SlackWorld, scheduler: SQLiteScheduler
) -> None:
    """Case 3: ``/todo`` in a channel answers ephemerally; its reminder too, to the user
    alone (``chat.postEphemeral``), never ``chat.postMessage`` to the whole channel."""
    url = slack.fake.response_url()
    for text in ("add buy a pregnancy test", "remind me about 1 in 10 minutes"):
        assert slack.call(slash(text, channel="C0001", response_url=url))["statusCode"] == 200
    assert len(scheduler.pending()) == 1
    fire(handlers.slack.handler, scheduler)
    ephemeral = [c for c in slack.fake.calls if c.path == "/api/chat.postEphemeral"]
    assert [(c.body["channel"], c.body["user"]) for c in ephemeral] == [("C0001", "U0001")]
    assert "pregnancy" in ephemeral[0].body["text"]
    assert slack.fake.posts() == []


def test_a_reminder_set_in_a_dm_is_a_plain_message_there(
    slack: SlackWorld, scheduler: SQLiteScheduler
) -> None:
    """Case 3, the other half: in a DM a plain message is already the user's alone."""
    url = slack.fake.response_url()
    for text in ("add water the plants", "remind me about 1 in 10 minutes"):
        slack.call(slash(text, channel="D0001", response_url=url))
    fire(handlers.slack.handler, scheduler)
    assert [p.body["channel"] for p in slack.fake.posts()] == ["D0001"]


def tokens_used(fake: FakeSlack) -> list[str]:
    return [parse_qs(urlsplit(c.path).query)["access_token"][0] for c in fake.sends()]


def instagram(text: str) -> dict[str, Any]:
    message = mr.text(text, psid=IGSID, page=ACCOUNT)
    entry = {"id": ACCOUNT, "time": 1, "messaging": [message]}
    return mr.post({"object": "instagram", "entry": [entry]})


def test_an_instagram_timer_is_never_sent_with_the_pages_token(
    messenger: MessengerWorld, scheduler: SQLiteScheduler
) -> None:
    """Case 6: the account's token is removed before its user's reminder fires: nothing is
    sent (as a fresh message of that account is dropped), never with MESSENGER_PAGE_TOKEN."""
    messenger.call(mr.post(mr.batch()))  # the store exists
    installations = Sessions(messenger.store).installations
    installations.put(KINDS["instagram"], ACCOUNT, {"token": "token-of-the-account"})
    handlers.messenger.reset()
    for text in ("add call mum", "remind me about 1 in 1 hour"):
        assert messenger.call(instagram(text))["statusCode"] == 200
    assert set(tokens_used(messenger.fake)) == {"token-of-the-account"}
    assert len(scheduler.pending()) == 1
    installations.delete(KINDS["instagram"], ACCOUNT)
    handlers.messenger.reset()  # a container that never cached the token
    sent = len(messenger.fake.sends())
    fire(handlers.messenger.handler, scheduler)
    assert messenger.fake.sends()[sent:] == []


@pytest.fixture(params=["sqlite", "dynamodb_local"])
def sealed(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[FakeSlack, Store]]:
    with fake_slack() as fake:
        for name, value in fake.edge_env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("MESSENGER_PAGE_TOKEN")  # many pages: each its own token
        store = select_store(request, monkeypatch, tmp_path)
        handlers.messenger.reset()
        yield fake, store
        handlers.messenger.reset()
        store.close()


def test_a_page_token_stored_before_encryption_never_answers_5xx_twice(
    sealed: tuple[FakeSlack, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Case 5: with SESSIONS_REQUIRE_SEALED=on, a page token written in clear (before
    encryption) does not open: treated as absent (logged by class), so the webhook answers
    200 and drops the message, however often Meta redelivers, never a 5xx loop."""
    fake, _ = sealed
    handlers.messenger.handler(mr.post(mr.batch()), None)  # the store exists
    clear = sessions_from_settings(from_env())  # no key yet: written in clear
    clear.installations.put(KINDS["messenger"], mr.PAGE, {"token": "page-token-in-clear"})
    monkeypatch.setenv("SESSIONS_ENCRYPTION_KEY", base64.b64encode(os.urandom(32)).decode())
    monkeypatch.setenv("SESSIONS_REQUIRE_SEALED", "on")
    handlers.messenger.reset()
    body = mr.single(mr.text("hello"))
    for _ in range(2):
        assert handlers.messenger.handler(mr.post(body), None)["statusCode"] == 200
    assert fake.sends() == []
