"""What serving many workspaces and many pages costs, on DynamoDB Local, through the real
edges: an install (the state issued and consumed, the installation stored), then events of an
installed Slack workspace and of a Page with its own token: the first in a container (which
reads the workspace's or the page's token once) and warm ones (the token cached: the usual
turn). Requests counted with botocore's hooks; billed units by AWS's sizing rules
(``benchmarks.billing``)."""

from __future__ import annotations

import os
import re
import uuid
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import handlers.messenger
import handlers.slack
from benchmarks.capacity import Meter
from bot.todo import TodoBot
from handlers.settings import from_env
from sessions import Sessions
from sessions.dynamodb import DynamoDBStore, create_table, make_client
from tests import messenger_requests as mr
from tests import slack_requests as sr
from tests.fakes import fake_slack

WARM = 20


def _get(path: str, query: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "version": "2.0",
        "rawPath": path,
        "rawQueryString": urlencode(query or {}),
        "headers": {"host": "bench.example.com"},
        "requestContext": {"http": {"method": "GET", "path": path}},
        "isBase64Encoded": False,
    }


def row(name: str, meter: Meter, count: int) -> dict[str, Any]:
    assert meter.billing is not None
    row = {
        "what": name,
        "requests": round(sum(meter.requests.values()) / count, 2),
        "by_operation": {k: round(v / count, 2) for k, v in sorted(meter.requests.items())},
        "rcu": round(meter.billing.read / count, 2),
        "wcu": round(meter.billing.write / count, 2),
    }
    meter.reset()
    return row


def run(endpoint: str) -> list[dict[str, Any]]:
    client = make_client(endpoint_url=endpoint)
    probe = make_client(endpoint_url=endpoint)
    table = f"bench-installs-{uuid.uuid4().hex[:8]}"
    create_table(client, table)
    sessions = Sessions(DynamoDBStore(table, client=client))
    rows = []
    with fake_slack() as fake:
        env = {**os.environ, **fake.edge_env(), "SLACK_CLIENT_ID": "1.2",
               "SLACK_CLIENT_SECRET": "secret"}  # fmt: skip
        env.pop("SLACK_BOT_TOKEN")
        settings = from_env(env)
        slack = handlers.slack.build(settings, sessions=sessions, bot=TodoBot())
        with Meter(client, probe=probe) as meter:
            page = slack.handle(_get("/slack/install"))
            href = unescape(re.search(r'href="([^"]+)"', page["body"]).group(1))  # type: ignore[union-attr]
            state = parse_qs(urlsplit(href).query)["state"][0]
            done = slack.handle(_get("/slack/oauth_redirect", {"code": "code-T0B", "state": state}))
            assert done["statusCode"] == 200
            rows.append(
                row("Slack install (state issued, consumed; installation stored)", meter, 1)
            )

            def event(n: int) -> None:
                body = sr.dm_body(f"add item {n}", user="U0001")
                body["team_id"] = "T0B"
                assert slack.handle(sr.json_event(body))["statusCode"] == 200

            event(0)
            rows.append(
                row("Slack: first event in a container (token read, new conversation)", meter, 1)
            )
            for n in range(1, WARM + 1):
                event(n)
            rows.append(row("Slack: warm event of an installed workspace", meter, WARM))

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
    lines = ["| what | requests | billed RCU | billed WCU |", "|---|---|---|---|"]
    for r in rows:
        ops = ", ".join(f"{v:g} {k}" for k, v in r["by_operation"].items())
        lines.append(f"| {r['what']} ({ops}) | {r['requests']} | {r['rcu']} | {r['wcu']} |")
    return lines


if __name__ == "__main__":  # python -m benchmarks.installs (DynamoDB Local started for it)
    from tests import dynamodb_local

    with dynamodb_local.running() as server:
        print("\n".join(table(run(server.endpoint))))
