"""What serving many workspaces and many pages costs, on DynamoDB Local, through the real
edges: an install (a signed state, used once at the redirect; the installation stored as its
parts), then events of an installed Slack workspace and of a Page with its own token: the
first in a container (which reads the workspace's or the page's token once) and warm ones (the
token cached: the usual turn; the workspace's stone read again every ``RECHECK`` seconds); a
token's rotation (the deferred refresh off the ack path); an uninstall of a workspace with 100
conversations (the ack's close and deletes, then the erase, then its settle pass). Requests
counted with botocore's hooks; billed units by AWS's sizing rules (``benchmarks.billing``);
seconds on this machine's DynamoDB Local (per operation)."""

from __future__ import annotations

import os
import re
import time
import uuid
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import handlers.messenger
import handlers.slack
from benchmarks.capacity import Meter
from examples.todo import TodoBot
from handlers.settings import from_env
from sessions import Sessions
from sessions.dynamodb import DynamoDBStore, create_table, make_client
from tests import messenger_requests as mr
from tests import slack_requests as sr
from tests.fakes import fake_slack

WARM = 20


UNINSTALLED_CONVERSATIONS = 100


def _get(
    path: str, query: dict[str, str] | None = None, cookie: str | None = None
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "version": "2.0",
        "rawPath": path,
        "rawQueryString": urlencode(query or {}),
        "headers": {"host": "bench.example.com"},
        "requestContext": {"http": {"method": "GET", "path": path}},
        "isBase64Encoded": False,
    }
    if cookie:
        event["cookies"] = [cookie]
    return event


def row(name: str, meter: Meter, count: int, seconds: float | None = None) -> dict[str, Any]:
    assert meter.billing is not None
    row: dict[str, Any] = {
        "what": name,
        "requests": round(sum(meter.requests.values()) / count, 2),
        "by_operation": {k: round(v / count, 2) for k, v in sorted(meter.requests.items())},
        "rcu": round(meter.billing.read / count, 2),
        "wcu": round(meter.billing.write / count, 2),
    }
    if seconds is not None:
        row["seconds"] = round(seconds / count, 4)
    meter.reset()
    return row


def _install(slack: Any, code: str) -> None:
    page = slack.handle(_get("/slack/install"))
    href = unescape(re.search(r'href="([^"]+)"', page["body"]).group(1))  # type: ignore[union-attr]
    state = parse_qs(urlsplit(href).query)["state"][0]
    cookie = page["headers"]["set-cookie"].split(";")[0]
    done = slack.handle(_get("/slack/oauth_redirect", {"code": code, "state": state}, cookie))
    assert done["statusCode"] == 200


def _uninstall(team: str) -> dict[str, Any]:
    return {
        "type": "event_callback",
        "team_id": team,
        "api_app_id": "A0APP",
        "event": {"type": "app_uninstalled", "event_ts": f"{time.time():.6f}"},
        "event_id": f"EvUNINSTALL{team}",
        "event_time": int(time.time()),
        "authorizations": [{"enterprise_id": None, "team_id": team, "user_id": "UBOT",
                            "is_bot": True, "is_enterprise_install": False}],
    }  # fmt: skip


def run(endpoint: str) -> list[dict[str, Any]]:
    client = make_client(endpoint_url=endpoint)
    probe = make_client(endpoint_url=endpoint)
    table = f"bench-installs-{uuid.uuid4().hex[:8]}"
    create_table(client, table)
    store = DynamoDBStore(table, client=client)
    sessions = Sessions(store)
    rows = []
    with fake_slack() as fake:
        env = {**os.environ, **fake.edge_env(), "SLACK_CLIENT_ID": "1.2",
               "SLACK_CLIENT_SECRET": "secret"}  # fmt: skip
        env.pop("SLACK_BOT_TOKEN")
        settings = from_env(env)
        slack = handlers.slack.build(settings, sessions=sessions, bot=TodoBot())
        with Meter(client, probe=probe) as meter:
            clock = time.perf_counter()
            _install(slack, "code-T0B")
            rows.append(
                row("Slack install (a signed state used once; installation stored in parts)",
                    meter, 1, time.perf_counter() - clock)
            )  # fmt: skip

            def event(n: int, team: str = "T0B", user: str = "U0001") -> None:
                body = sr.dm_body(f"add item {n}", user=user)
                body["team_id"] = team
                assert slack.handle(sr.json_event(body))["statusCode"] == 200

            clock = time.perf_counter()
            event(0)
            rows.append(
                row("Slack: first event in a container (token read, new conversation)",
                    meter, 1, time.perf_counter() - clock)
            )  # fmt: skip
            clock = time.perf_counter()
            for n in range(1, WARM + 1):
                event(n)
            rows.append(row("Slack: warm event of an installed workspace", meter, WARM,
                            time.perf_counter() - clock))  # fmt: skip

            _install(slack, "code-T0R-rot")  # a rotating token, inside its refresh window
            meter.reset()
            clock = time.perf_counter()
            slack.run_deferred({"kind": "rotate", "enterprise": None, "team": "T0R"})
            rows.append(
                row("Slack: a token's rotation (deferred: lock, refresh, bot and latest saved)",
                    meter, 1, time.perf_counter() - clock)
            )  # fmt: skip
            assert fake.refreshes == 1

            _install(slack, "code-T0U")
            for n in range(UNINSTALLED_CONVERSATIONS):
                event(n, team="T0U", user=f"U{n:05d}")
            meter.reset()
            clock = time.perf_counter()
            assert slack.handle(sr.json_event(_uninstall("T0U")))["statusCode"] == 200
            rows.append(row("Slack: app_uninstalled, the ack (workspace closed, records deleted)",
                            meter, 1, time.perf_counter() - clock))  # fmt: skip
            clock = time.perf_counter()
            assert slack.deferrer.drain(timeout=120)  # type: ignore[attr-defined]
            rows.append(
                row(f"Slack: the uninstall's erase ({UNINSTALLED_CONVERSATIONS} conversations)",
                    meter, 1, time.perf_counter() - clock)
            )  # fmt: skip
            stone = store.workspace_stone("slack#T0U")
            assert stone is not None and stone.closed
            clock = time.perf_counter()
            slack.run_deferred({"kind": "erase", "platform": "slack", "workspace": "T0U",
                                "generation": stone.generation, "settle": True})  # fmt: skip
            rows.append(row("Slack: its settle pass, 90 s later (nothing left to delete)",
                            meter, 1, time.perf_counter() - clock))  # fmt: skip

        messenger = handlers.messenger.build(from_env({**env, "MESSENGER_PAGE_TOKEN": ""}),
                                             sessions=sessions, bot=TodoBot())  # fmt: skip
        sessions.installations.put("messenger-page", "100000009", {"token": "page-token-9"})
        with Meter(client, probe=probe) as meter:

            def message(n: int) -> None:
                item = mr.text(f"add item {n}", psid="5550009", page="100000009")
                assert (
                    messenger.handle(mr.post(mr.single(item, page="100000009")))["statusCode"]
                    == 200
                )

            message(0)
            rows.append(
                row("Page: first message in a container (token read, new conversation)", meter, 1)
            )
            for n in range(1, WARM + 1):
                message(n)
            rows.append(row("Page: warm message of a page with its own token", meter, WARM))
        assert all("token" in c.path for c in fake.sends())
    return rows


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| what | requests | billed RCU | billed WCU | seconds |", "|---|---|---|---|---|"]
    for r in rows:
        ops = ", ".join(f"{v:g} {k}" for k, v in r["by_operation"].items())
        seconds = r.get("seconds", "")
        lines.append(
            f"| {r['what']} ({ops}) | {r['requests']} | {r['rcu']} | {r['wcu']} | {seconds} |"
        )
    return lines


if __name__ == "__main__":  # python -m benchmarks.installs (DynamoDB Local started for it)
    from tests import dynamodb_local

    with dynamodb_local.running() as server:
        print("\n".join(table(run(server.endpoint))))
