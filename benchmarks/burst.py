"""A burst on one conversation, on DynamoDB Local, through the real Slack edge: 20 events of
one user in one second, sent one after another with really signed requests, on a conversation
whose records are already paged (the item filled and moved its records out before), the burst
crossing the next move-out. Two kinds of event:

- DMs through the Events API (``list``): the edge keys each by its ``event_ts``
  (microseconds), so the events of one second have keys of their own;
- slash commands (``/todo list``), all signed in the same second: a slash command carries
  whole seconds only, so they share a key, and those after the move-out look past the page
  mark (one ``Query`` each; their records go to the next page, late within its window, not
  to an item each).

Reported per event: DynamoDB requests and billed units (AWS's sizing rules, from the real
item sizes: ``benchmarks.billing``), against the floor (a bare ``GetItem`` + ``PutItem``: 2
requests and the item's KB); then each event of the burst delivered again (a retry): requests
per duplicate. The todo bot's ``list`` changes no item of the state, but each event's record
is still written: every event is a commit."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import handlers.slack
from benchmarks.capacity import Meter
from handlers.settings import from_env
from sessions import ConversationKey, Sessions
from sessions.dynamodb import DynamoDBStore, create_table, make_client
from tests import slack_requests as sr
from tests.fakes import fake_slack

BURST = 20
#: The burst's move-out comes at about this event of the burst.
CROSSING = 10


def _dm(channel: str, user: str, at: int, fraction: float | None) -> dict[str, Any]:
    """A signed DM ``list`` whose ``event_time`` is ``at`` and ``event_ts`` in that second."""
    body = sr.dm_body("list", channel=channel, user=user)
    body["event_time"] = at
    ts = f"{at}.{round((fraction or 0.0) * 1_000_000):06d}"
    body["event"]["ts"] = body["event"]["event_ts"] = ts
    return sr.json_event(body)


def _slash(channel: str, user: str, at: int, response_url: str) -> dict[str, Any]:
    """A signed ``/todo list``, signed at ``at`` (the only time a slash command carries)."""
    body, headers = sr.form(
        {
            "team_id": "T0001",
            "channel_id": channel,
            "user_id": user,
            "command": "/todo",
            "text": "list",
            "api_app_id": "A0001",
            "response_url": response_url,
            "trigger_id": f"{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex[:10]}",
        },
        timestamp=at,
    )
    return sr.http_v2(body, headers)


def _burst(endpoint: str, table: str, kind: str) -> dict[str, Any]:
    client = make_client(endpoint_url=endpoint)
    probe = make_client(endpoint_url=endpoint)
    store = DynamoDBStore(table, client=client)
    channel = "D" + uuid.uuid4().hex[:8].upper()
    user = "U0BURST"
    with fake_slack() as fake:
        slack = handlers.slack.build(from_env(fake.edge_env()), sessions=Sessions(store))
        now = int(time.time())

        def send(event: dict[str, Any]) -> None:
            answer = slack.handle(event)
            assert answer["statusCode"] == 200, answer

        with Meter(client, probe=probe) as meter:
            # Earlier events of the conversation, a second apart, until its records move out
            # to a page; then as many more as leave room for CROSSING records.
            early = 0
            first_page = None
            while True:
                send(_dm(channel, user, now - 250 + early, 0.5))
                early += 1
                if first_page is None and meter.requests.get("BatchWriteItem"):
                    first_page = early
                if first_page is not None and early >= 2 * first_page - CROSSING:
                    break
                assert early < 400, "the conversation never paged"
            meter.reset()
            second = int(time.time())
            events = []
            for i in range(BURST):
                if kind == "dm":
                    events.append(_dm(channel, user, second, 0.000123 + i * 0.0371))
                else:
                    events.append(_slash(channel, user, second, fake.response_url("burst")))
            for event in events:
                send(event)
            burst = _figures(meter, BURST)
            meter.reset()
            for event in events:
                send(event)  # Slack's retry of each (a slash command is never retried: ours)
            again = _figures(meter, BURST)
            meter.reset()
        key = ConversationKey.slack(team="T0001", channel=channel, user=user)
        stored = slack.pipeline.stored(key)[0]  # in the bot's namespace
        kept = Sessions(DynamoDBStore(table, client=make_client(endpoint_url=endpoint))).get(stored)
        assert kept is not None and kept.version == early + BURST, "an event applied twice"
    return {
        "kind": kind,
        "events": BURST,
        "earlier_events": early,
        **burst,
        "duplicate_requests_per_event": again["requests_per_event"],
        "duplicate_operations": again["operations"],
    }


def _figures(meter: Meter, events: int) -> dict[str, Any]:
    assert meter.billing is not None
    return {
        "requests_per_event": round(sum(meter.requests.values()) / events, 2),
        "billed_rcu_per_event": round(meter.billing.read / events, 2),
        "billed_wcu_per_event": round(meter.billing.write / events, 2),
        "operations": dict(meter.requests),
    }


def run(endpoint: str) -> dict[str, Any]:
    table = f"bench-burst-{uuid.uuid4().hex[:8]}"
    create_table(make_client(endpoint_url=endpoint), table)
    return {"bursts": [_burst(endpoint, table, kind) for kind in ("dm", "slash")]}


def table(results: dict[str, Any]) -> list[str]:
    names = {
        "dm": "DMs (Events API, keyed by event_ts: microseconds)",
        "slash": "`/todo list` slash commands (whole seconds: one key)",
    }
    lines = [
        "| 20 events of one second, paged conversation | requests / event | billed RCU / event "
        "| billed WCU / event | operations | requests / duplicate |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["bursts"]:
        ops = ", ".join(f"{v} {k}" for k, v in sorted(r["operations"].items()))
        lines.append(
            f"| {names[r['kind']]} | {r['requests_per_event']:g} | "
            f"{r['billed_rcu_per_event']:g} | {r['billed_wcu_per_event']:g} | {ops} | "
            f"{r['duplicate_requests_per_event']:g} |"
        )
    return lines


def main() -> None:
    """``python -m benchmarks.burst``: this benchmark alone (DynamoDB Local started here); its
    rows replace the ones in ``benchmarks/results.json``, and the docs are written again."""
    import os
    from pathlib import Path

    from tests import dynamodb_local

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with dynamodb_local.running() as server:
        found = run(server.endpoint)
    for line in table(found):
        print(line)
    path = Path(__file__).with_name("results.json")
    results = json.loads(path.read_text()) if path.exists() else {}
    results["burst"] = found
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
