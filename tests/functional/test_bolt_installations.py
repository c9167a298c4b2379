"""Proof with Bolt itself: a real ``slack_bolt.App`` whose ``installation_store`` and
``oauth_settings`` are ours, over the table our edge installs into (SQLite and DynamoDB
Local), authorizes events of two workspaces and of an org-wide install with each one's own
token, gets the new token after our rotation, and answers nothing for an uninstalled
workspace. What a user writes::

    from handlers.slack.installs import TableInstallationStore, TableOAuthStateStore
"""

from __future__ import annotations

import json
from typing import Any

from slack_bolt import App, BoltContext, BoltRequest
from slack_bolt.oauth.oauth_settings import OAuthSettings
from slack_sdk import WebClient

from handlers.slack.installs import TableInstallationStore, TableOAuthStateStore
from sessions import Sessions
from sessions.schedules import SQLiteScheduler
from sessions.store import Store
from tests.fakes import FakeSlack
from tests.functional.test_uninstall import container, install, uninstall
from tests.functional.test_uninstall import world as world  # (the fixture)
from tests.slack_requests import SECRET, dm_body, sign


def bolt_app(store: Store, fake: FakeSlack, seen: list[dict[str, Any]]) -> App:
    records = Sessions(store).installations
    app = App(
        signing_secret=SECRET,
        client=WebClient(base_url=fake.api_url),
        process_before_response=True,
        oauth_settings=OAuthSettings(
            client_id="111.222",
            client_secret="client-secret",
            scopes=["commands", "chat:write"],
            installation_store=TableInstallationStore(records),
            state_store=TableOAuthStateStore(records, secret="client-secret"),
        ),
    )

    @app.event("message")
    def on_message(context: BoltContext) -> None:
        seen.append(
            {"token": context.bot_token, "team": context.team_id,
             "enterprise": context.enterprise_id}
        )  # fmt: skip

    return app


def event(team: str | None, *, enterprise: str | None = None, org: bool = False) -> BoltRequest:
    body = dm_body("hello", team=team or "T0042")
    body["enterprise_id"] = enterprise
    body["authorizations"] = [
        {"enterprise_id": enterprise, "team_id": None if org else team, "user_id": "UBOT",
         "is_bot": True, "is_enterprise_install": org}
    ]  # fmt: skip
    raw = json.dumps(body)
    headers = {"content-type": "application/json", **sign(raw.encode())}
    return BoltRequest(body=raw, headers=headers)


def test_a_bolt_app_over_our_store_authorizes_what_our_edge_installed(
    world: tuple[FakeSlack, Store, SQLiteScheduler],
) -> None:
    fake, store, scheduler = world
    edge = container(store, scheduler)
    for code in ("code-T0001", "code-T0002", "code-E0001-org", "code-T0007-rot"):
        install(edge, code)
    seen: list[dict[str, Any]] = []
    app = bolt_app(store, fake, seen)

    for request in (event("T0001"), event("T0002"), event(None, enterprise="E0001", org=True)):
        assert app.dispatch(request).status == 200
    assert [s["token"] for s in seen] == ["xoxb-T0001", "xoxb-T0002", "xoxb-E0001-org"]
    assert seen[2]["enterprise"] == "E0001"

    # Our rotation (the deferred refresh): Bolt's authorize reads the new token, and has
    # nothing to refresh itself.
    edge.run_deferred({"kind": "rotate", "enterprise": None, "team": "T0007"})
    assert fake.refreshes == 1
    assert app.dispatch(event("T0007")).status == 200
    assert seen[-1]["token"] == "xoxe.xoxb-rotated-1"
    assert fake.refreshes == 1

    # Uninstalled through our edge: Bolt finds no installation and runs no listener.
    uninstall(edge, team="T0001")
    before = len(seen)
    app.dispatch(event("T0001"))
    assert len(seen) == before
    assert app.dispatch(event("T0002")).status == 200
    assert seen[-1]["token"] == "xoxb-T0002"
