"""Install once, serve every workspace, through the real Slack edge and its real routes, on
SQLite and on DynamoDB Local, with a fake ``oauth.v2.access`` that issues a token per team:
two installs (a state issued and consumed, a code exchanged), each workspace's events answered
with its own token, a replayed state refused, an uninstall that removes one workspace's
installation while the other keeps working, and a late event of the uninstalled workspace
that stores nothing."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

import handlers.slack
from examples.todo import TodoBot
from handlers.settings import from_env
from handlers.slack.installs import TableInstallationStore
from sessions import ConversationKey, Sessions
from sessions.dynamodb import DynamoDBStore
from sessions.store import Store
from tests.fakes import FakeSlack, fake_slack
from tests.functional.conftest import select_store
from tests.integration.test_request_budget import RequestCounter
from tests.keys import stored
from tests.slack_requests import dm_body, json_event


@pytest.fixture(params=["sqlite", "dynamodb_local"])
def world(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[FakeSlack, Store]]:
    with fake_slack() as fake:
        for name, value in fake.edge_env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("SLACK_BOT_TOKEN")  # many workspaces: no single bot token
        monkeypatch.setenv("SLACK_CLIENT_ID", "111.222")
        monkeypatch.setenv("SLACK_CLIENT_SECRET", "client-secret")
        monkeypatch.setenv("SLACK_SCOPES", "commands,chat:write")
        store = select_store(request, monkeypatch, tmp_path)
        yield fake, store
        store.close()


def get(
    path: str, query: dict[str, str] | None = None, *, cookie: str | None = None
) -> dict[str, Any]:
    """An HTTP API v2 GET (its cookies where API Gateway puts them: ``cookies``)."""
    raw = urlencode(query or {})
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"GET {path}",
        "rawPath": path,
        "rawQueryString": raw,
        "headers": {"host": "bot.example.com"},
        "requestContext": {"http": {"method": "GET", "path": path}, "stage": "$default"},
        "isBase64Encoded": False,
    }
    if cookie is not None:
        event["cookies"] = [cookie]
    return event


def install_link(slack: handlers.slack.SlackEdge) -> dict[str, str]:
    """The authorize link's query, and (``cookie``) the cookie the page set in the browser."""
    page = slack.handle(get("/slack/install"))
    assert page["statusCode"] == 200 and "text/html" in page["headers"]["content-type"]
    href = unescape(re.search(r'href="([^"]+)"', page["body"]).group(1))  # type: ignore[union-attr]
    assert href.startswith("https://slack.com/oauth/v2/authorize?")
    link = {k: v[0] for k, v in parse_qs(urlsplit(href).query).items()}
    set_cookie = page["headers"]["set-cookie"]
    assert "HttpOnly" in set_cookie and "Secure" in set_cookie and "SameSite=Lax" in set_cookie
    link["cookie"] = set_cookie.split(";")[0]
    return link


def redirect(link: dict[str, str], code: str) -> dict[str, Any]:
    """Slack's redirect back to the browser that started the install (its cookie sent)."""
    return get("/slack/oauth_redirect", {"code": code, "state": link["state"]},
               cookie=link["cookie"])  # fmt: skip


def test_two_workspaces_installed_answered_and_one_uninstalled(
    world: tuple[FakeSlack, Store],
) -> None:
    fake, store = world
    sessions = Sessions(store)
    slack = handlers.slack.build(from_env(), sessions=sessions, bot=TodoBot())
    states = []
    for team in ("T0001", "T0002"):
        link = install_link(slack)
        assert link["client_id"] == "111.222" and link["scope"] == "commands,chat:write"
        assert link["redirect_uri"] == "https://bot.example.com/slack/oauth_redirect"
        answer = slack.handle(redirect(link, f"code-{team}"))
        assert answer["statusCode"] == 200 and "installed in Team " + team in answer["body"]
        states.append(link)
    exchanges = [c for c in fake.calls if c.path.startswith("/api/oauth.v2.access")]
    assert [c.body["code"] for c in exchanges] == ["code-T0001", "code-T0002"]
    basic = base64.b64encode(b"111.222:client-secret").decode()
    assert exchanges[0].headers.get("Authorization") == f"Basic {basic}"  # the client's own
    # A state is good once, even with a good code.
    replayed = slack.handle(redirect(states[0], "code-T0009"))
    assert replayed["statusCode"] == 400 and "expired or was used" in replayed["body"]
    forged = slack.handle(get("/slack/oauth_redirect", {"code": "code-T0009", "state": "nope"}))
    assert forged["statusCode"] == 400
    cancelled = slack.handle(get("/slack/oauth_redirect", {"error": "access_denied"}))
    assert cancelled["statusCode"] == 200 and "cancelled" in cancelled["body"]

    # Tokens are kept sealed like every value (the contract tests check the bytes at rest).
    installs = TableInstallationStore(sessions.installations)
    bot = installs.find_bot(enterprise_id=None, team_id="T0001")
    assert bot is not None and bot.bot_token == "xoxb-T0001"

    # Each workspace's events are answered with that workspace's token.
    for team in ("T0001", "T0002"):
        body = dm_body("add milk", user="U0001")
        body["team_id"] = team
        assert slack.handle(json_event(body))["statusCode"] == 200
    posts = fake.posts()
    assert [p.headers.get("Authorization") for p in posts] == [
        "Bearer xoxb-T0001",
        "Bearer xoxb-T0002",
    ]

    # app_uninstalled for T0001: its installation goes; T0002 keeps working.
    uninstall = {
        "type": "event_callback",
        "team_id": "T0001",
        "api_app_id": "A0APP",
        "event": {"type": "app_uninstalled", "event_ts": "1.1"},
        "event_id": "EvUNINSTALL1",
        "event_time": 1,
    }
    before = ConversationKey.slack(team="T0001", channel="D0001", user="U0001")
    assert sessions.conversations(before.user_key)  # what T0001 stored so far
    assert slack.handle(json_event(uninstall))["statusCode"] == 200
    assert installs.find_bot(enterprise_id=None, team_id="T0001") is None
    assert slack.deferrer.drain(timeout=30)  # type: ignore[attr-defined]  # the erase job
    assert sessions.conversations(before.user_key) == []  # the workspace's data is gone
    kept = ConversationKey.slack(team="T0002", channel="D0001", user="U0001")
    assert [c.state["items"][0]["text"] for c in sessions.conversations(kept.user_key)] == ["milk"]
    fresh = handlers.slack.build(from_env(), sessions=sessions, bot=TodoBot())  # a new container
    for edge in (slack, fresh):
        late = dm_body("add bread", user="U0002")
        late["team_id"] = "T0001"
        assert edge.handle(json_event(late))["statusCode"] == 200
    key = ConversationKey.slack(team="T0001", channel="D0001", user="U0002")
    assert sessions.get(stored(key)) is None  # nothing of it was stored
    assert len(fake.posts()) == 2  # and nothing was said
    still = dm_body("add tea", user="U0001")
    still["team_id"] = "T0002"
    assert fresh.handle(json_event(still))["statusCode"] == 200
    assert fake.posts()[-1].headers.get("Authorization") == "Bearer xoxb-T0002"


def test_an_org_wide_install_answers_every_team_of_the_org(
    world: tuple[FakeSlack, Store],
) -> None:
    fake, store = world
    slack = handlers.slack.build(from_env(), sessions=Sessions(store), bot=TodoBot())
    link = install_link(slack)
    done = slack.handle(redirect(link, "code-E0001-org"))
    assert done["statusCode"] == 200
    body = dm_body("add milk", user="U0001")
    body["team_id"], body["enterprise_id"] = "T0042", "E0001"
    assert slack.handle(json_event(body))["statusCode"] == 200
    assert fake.posts()[-1].headers.get("Authorization") == "Bearer xoxb-E0001-org"
    # An org-level event that names no team: the org stands in for the workspace.
    orgwide = dm_body("add bread", user="U0001")
    del orgwide["team_id"]
    orgwide["enterprise_id"] = "E0001"
    assert slack.handle(json_event(orgwide))["statusCode"] == 200
    assert fake.posts()[-1].headers.get("Authorization") == "Bearer xoxb-E0001-org"
    assert len(fake.posts()) == 2


def test_without_a_client_id_the_install_routes_do_not_exist(
    world: tuple[FakeSlack, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, store = world
    monkeypatch.delenv("SLACK_CLIENT_ID")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-single")
    slack = handlers.slack.build(from_env(), sessions=Sessions(store), bot=TodoBot())
    assert slack.handle(get("/slack/install"))["statusCode"] == 404
    assert json.loads(json.dumps(slack.handle(get("/slack/oauth_redirect"))))["statusCode"] == 404


def test_an_expiring_token_is_refreshed_once_under_concurrent_requests(
    world: tuple[FakeSlack, Store],
) -> None:
    """Token rotation: ten requests in ten fresh containers find the token about to expire
    at once; one refreshes it (the fake refuses a refresh token used twice), all answer."""
    fake, store = world
    sessions = Sessions(store)
    slack = handlers.slack.build(from_env(), sessions=sessions, bot=TodoBot())
    link = install_link(slack)
    assert slack.handle(redirect(link, "code-T0007-rot"))["statusCode"] == 200
    edges = [handlers.slack.build(from_env(), sessions=sessions, bot=TodoBot()) for _ in range(10)]

    def event(n: int) -> int:
        body = dm_body(f"add item {n}", user=f"U000{n}")
        body["team_id"] = "T0007"
        return int(edges[n].handle(json_event(body))["statusCode"])

    with ThreadPoolExecutor(10) as pool:
        assert set(pool.map(event, range(10))) == {200}
    for edge in edges:  # the refreshes run off the ack path, deferred
        assert edge.deferrer.drain(timeout=30)  # type: ignore[attr-defined]
    refresh_calls = [c for c in fake.calls if c.body.get("grant_type") == "refresh_token"]
    assert len(refresh_calls) == 1 and fake.refreshes == 1  # one request refreshed, once
    tokens = {p.headers.get("Authorization") for p in fake.posts()}
    assert tokens <= {"Bearer xoxe.xoxb-first", "Bearer xoxe.xoxb-rotated-1"}
    assert len(fake.posts()) == 10
    bot = TableInstallationStore(sessions.installations).find_bot(
        enterprise_id=None, team_id="T0007"
    )
    assert bot is not None and bot.bot_token == "xoxe.xoxb-rotated-1"


def test_a_warm_turn_of_an_installed_workspace_costs_no_extra_request(
    world: tuple[FakeSlack, Store],
) -> None:
    """The workspace's token is read once per container (then cached 5 minutes): a known
    workspace's turns cost what a single-workspace app's do, 2 requests a new event."""
    fake, store = world
    if not isinstance(store, DynamoDBStore):
        pytest.skip("requests are counted on DynamoDB")
    counter = RequestCounter(store.client)
    sessions = Sessions(store)
    slack = handlers.slack.build(from_env(), sessions=sessions, bot=TodoBot())
    link = install_link(slack)
    assert slack.handle(redirect(link, "code-T0003"))["statusCode"] == 200
    counter.take()

    def event(text: str) -> None:
        body = dm_body(text, user="U0001")
        body["team_id"] = "T0003"
        assert slack.handle(json_event(body))["statusCode"] == 200

    event("add milk")  # the token read (once), then the first event's own two requests
    assert counter.take() == {"GetItem": 2, "TransactWriteItems": 1}
    event("add bread")  # warm: the turn's read and write, nothing else
    assert counter.take() == {"GetItem": 1, "PutItem": 1}
    assert len(fake.posts()) == 2


def test_users_installing_into_one_workspace_at_once_all_keep_their_installation(
    world: tuple[FakeSlack, Store],
) -> None:
    from handlers.slack.oauth import installation_of

    _, store = world
    containers = [TableInstallationStore(Sessions(store).installations) for _ in range(8)]

    def install(n: int) -> None:
        answer = {"access_token": "xoxb-T0005", "team": {"id": "T0005"},
                  "authed_user": {"id": f"U000{n}", "access_token": f"xoxp-{n}"}}  # fmt: skip
        containers[n].save(installation_of(answer))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(install, range(8)))
    for n in range(8):
        found = containers[0].find_installation(
            enterprise_id=None, team_id="T0005", user_id=f"U000{n}"
        )
        assert found is not None and found.user_token == f"xoxp-{n}", n


def test_an_install_finished_in_another_browser_is_refused_and_anonymous_visits_store_nothing(
    world: tuple[FakeSlack, Store],
) -> None:
    """As Bolt does: the state is bound to the browser that opened the install page (a
    cookie), and the page stores nothing (the state is signed): a hundred anonymous visits
    cost no request."""
    fake, store = world
    slack = handlers.slack.build(from_env(), sessions=Sessions(store), bot=TodoBot())
    counter = RequestCounter(store.client) if isinstance(store, DynamoDBStore) else None
    links = [install_link(slack) for _ in range(100)]
    if counter is not None:
        assert counter.take() == {}
    link = links[0]
    elsewhere = get("/slack/oauth_redirect", {"code": "code-T0001", "state": link["state"]})
    refused = slack.handle(elsewhere)
    assert refused["statusCode"] == 400 and "another browser" in refused["body"]
    other = slack.handle(redirect({**link, "cookie": links[1]["cookie"]}, "code-T0001"))
    assert other["statusCode"] == 400 and "another browser" in other["body"]
    assert not [c for c in fake.calls if c.path.startswith("/api/oauth.v2.access")]
    done = slack.handle(redirect(link, "code-T0001"))  # the browser that started it
    assert done["statusCode"] == 200 and "Max-Age=0" in done["headers"]["set-cookie"]


def test_a_state_is_signed_and_expires(world: tuple[FakeSlack, Store]) -> None:
    from handlers.slack.installs import TableOAuthStateStore

    _, store = world
    clock = [1_800_000_000.0]
    states = TableOAuthStateStore(
        Sessions(store).installations, secret="client-secret", clock=lambda: clock[0]
    )
    state = states.issue()
    stamp, nonce, mac = state.split(".")
    assert not states.consume(f"{stamp}.{nonce}x.{mac}")  # forged
    other = TableOAuthStateStore(Sessions(store).installations, secret="another-secret")
    assert not other.consume(state)  # another app's secret
    clock[0] += 601
    assert not states.consume(state)  # expired (Bolt's 600 s)
    clock[0] -= 2
    assert states.consume(state) and not states.consume(state)  # once
