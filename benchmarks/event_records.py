"""Where event records live: sibling items (what ``sessions`` does) vs inline in the item.

Both layouts cost 2 requests per new event and 1 per duplicate. What differs is the write
units, and how the conversation item grows:

- sibling: ``BatchGetItem`` (state, record, tombstone) + ``TransactWriteItems`` (state Put +
  record Put). Transactions bill twice the units, so a turn writes 2 x (state KB + record KB).
- inline: ``GetItem`` + a conditional ``PutItem`` of the whole item, which carries the last
  24 h of event ids (capped at INLINE_CAP) and the recent responses, so every write pays for
  every remembered id.

This module measures both on DynamoDB Local, at several conversation rates, with the
consumed capacity DynamoDB reports.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from benchmarks.capacity import Meter
from sessions import ConversationKey, Sessions
from sessions.dynamodb import DynamoDBStore, create_table

INLINE_CAP = 1000  # ids kept inline at most (the dedup window shrinks past it)
RESPONSE_WINDOW = 15 * 60


def _todo_turn(state: dict[str, Any], event: int) -> tuple[dict[str, Any], list[str], str]:
    items = [*state.get("items", []), f"todo item number {event} with some words"][-12:]
    return {"items": items}, [f"added item {event}"], f"added item {event}"


def sibling(client: Any, table: str, events: int, spacing: float) -> dict[str, float]:
    meter = Meter(client)
    now = [1_800_000_000.0]
    sessions = Sessions(DynamoDBStore(table, client=client), clock=lambda: now[0])
    key = ConversationKey.slack(team="T0001", channel=f"C{events:04d}", user="U0001")
    for i in range(events):
        sessions.run(key, f"Ev{i:08d}", _todo_turn, i)
        now[0] += spacing
    return _per_turn(meter, events)


def inline(client: Any, table: str, events: int, spacing: float) -> dict[str, float]:
    """The inline design, written out here only to be measured."""
    meter = Meter(client)
    now = 1_800_000_000.0
    pk, sk = "slack#T0001#U0001", f"I{events:04d}"
    for i in range(events):
        got = client.get_item(
            TableName=table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
        ).get("Item")
        state = json.loads(got["state"]["S"]) if got else {}
        seen: dict[str, float] = json.loads(got["seen"]["S"]) if got else {}
        responses: dict[str, str] = json.loads(got["responses"]["S"]) if got else {}
        version = int(got["version"]["N"]) if got else 0
        event_id = hashlib.sha256(f"Ev{i:08d}".encode()).hexdigest()[:16]
        new_state, _, response = _todo_turn(state, i)
        seen = {k: t for k, t in seen.items() if t > now - 86_400}
        seen[event_id] = now
        seen = dict(sorted(seen.items(), key=lambda kv: kv[1])[-INLINE_CAP:])
        responses = {k: v for k, v in responses.items() if seen.get(k, 0) > now - RESPONSE_WINDOW}
        responses[event_id] = response
        item = {
            "pk": {"S": pk},
            "sk": {"S": sk},
            "version": {"N": str(version + 1)},
            "state": {"S": json.dumps(new_state)},
            "seen": {"S": json.dumps(seen)},
            "responses": {"S": json.dumps(responses)},
            "expires_at": {"N": str(int(now) + 7 * 86_400)},
        }
        condition = "attribute_not_exists(pk)" if not got else "version = :v"
        values = {":v": {"N": str(version)}} if got else None
        kwargs: dict[str, Any] = {"ConditionExpression": condition}
        if values:
            kwargs["ExpressionAttributeValues"] = values
        client.put_item(TableName=table, Item=item, **kwargs)
        now += spacing
    return _per_turn(meter, events)


def _per_turn(meter: Meter, events: int) -> dict[str, float]:
    meter.close()
    return {
        "requests_per_turn": sum(meter.requests.values()) / events,
        "read_units_per_turn": meter.read_units / events,
        "write_units_per_turn": meter.write_units / events,
    }


SCENARIOS = [
    ("quiet: 20 events, 1 per hour", 20, 3600.0),
    ("busy: 300 events, 1 per minute", 300, 60.0),
    ("chatty: 2000 events, 1 per 10 s", 2000, 10.0),
]


def run(client: Any) -> list[dict[str, Any]]:
    table = f"bench-records-{int(time.time())}"
    create_table(client, table)
    rows = []
    for name, events, spacing in SCENARIOS:
        rows.append(
            {
                "scenario": name,
                "sibling": sibling(client, table, events, spacing),
                "inline": inline(client, table, events, spacing),
            }
        )
    return rows
