"""Events of one conversation within one second, on AWS's DynamoDB Local, once its records are
paged: Slack's Events API at ``event_ts`` (microseconds) costs what any new event costs; events
that share a key (slash commands: whole seconds) look past the page mark with one ``Query`` and
never leave records of their own; and a deploy over records filed by whole seconds (the edge
before ``event_ts``) still finds every redelivery."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from sessions import ConversationKey, Sessions
from sessions.dynamodb import DynamoDBStore, make_client
from sessions.dynamodb_layout import key_of
from tests.contract.test_guarantees import Clock
from tests.integration.test_request_budget import SMALL, Meter, counter

KEY = ConversationKey.slack(team="T0001", channel="D0BURST", user="U0001")


@pytest.fixture
def metered(
    local_client: Any, local_table: str, dynamodb_endpoint: str
) -> Iterator[tuple[Sessions, Meter, Clock]]:
    clock = Clock()
    meter = Meter(local_client, make_client(endpoint_url=dynamodb_endpoint))
    sessions = Sessions(
        DynamoDBStore(local_table, client=local_client), clock=clock, sleep=lambda s: None
    )
    yield sessions, meter, clock
    meter.billing.close()


def page_out(sessions: Sessions, meter: Meter, clock: Clock, count: Any) -> int:
    """Events a second apart until the conversation's records move out to a page; how many."""
    for i in range(200):
        clock.now += 1
        sessions.run(KEY, f"Ev-early-{i}", count, None, event_time=clock.now - 0.5)
        if "BatchWriteItem" in meter.take()[0]:
            return i + 1
    raise AssertionError("the item never filled")


def kinds(client: Any, table: str) -> Counter[str]:
    out = client.query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": KEY.pk}},
    )
    return Counter(item.get("kind", {}).get("S", "conversation") for item in out["Items"])


def test_a_burst_of_slack_events_in_one_second_costs_what_any_new_event_costs(
    metered: tuple[Sessions, Meter, Clock],
) -> None:
    """Twenty DMs of one second, each at its ``event_ts``: a read and a write each (a page
    now and then), never a ``Query`` or a ``BatchGetItem``; a duplicate within the burst is
    one read and applies nothing."""
    sessions, meter, clock = metered
    count = counter(SMALL, respond=False)
    page_out(sessions, meter, clock, count)
    before = sessions.get(KEY).state["n"]  # type: ignore[union-attr]
    meter.take()
    second = int(clock.now) + 1
    calls: Counter[str] = Counter()
    for i in range(20):
        clock.now = second + 0.4 + i * 0.01
        when = second + 0.000123 + i * 0.0371  # event_ts: microseconds, all in one second
        sessions.run(KEY, f"Ev-burst-{i}", count, None, event_time=when)
        calls += meter.take()[0]
    assert set(calls) <= {"GetItem", "PutItem", "BatchWriteItem"}, calls
    assert calls["GetItem"] == calls["PutItem"] == 20
    again = sessions.run(KEY, "Ev-burst-7", count, None, event_time=second + 0.000123 + 7 * 0.0371)
    assert again.duplicate and meter.take()[0] == {"GetItem": 1}
    assert sessions.get(KEY).state["n"] == before + 20  # type: ignore[union-attr]


def test_a_burst_of_one_key_crossing_a_move_out_keeps_its_records_inline(
    metered: tuple[Sessions, Meter, Clock],
) -> None:
    """Twenty slash commands in one whole second on a paged conversation, the item filling
    midway: the records of their key stay inline when the older ones move out (they are at
    most half), so the page mark stays below their key and none of them needs a lookup."""
    sessions, meter, clock = metered
    count = counter(SMALL, respond=False)
    room = page_out(sessions, meter, clock, count)
    for i in range(room // 2 + 2):  # the item half full of earlier events
        clock.now += 1
        sessions.run(KEY, f"Ev-more-{i}", count, None, event_time=clock.now - 0.5)
    meter.take()
    second = float(int(clock.now) + 1)
    calls: Counter[str] = Counter()
    for i in range(20):
        clock.now = second + 0.05 * i
        sessions.run(KEY, f"cmd-{i}", count, None, event_time=second)
        calls += meter.take()[0]
    assert calls == {"GetItem": 20, "PutItem": 20, "BatchWriteItem": 1}, calls
    clock.now += 60
    for i in range(20):
        assert sessions.run(KEY, f"cmd-{i}", count, None, event_time=second).duplicate


def test_events_of_one_key_past_the_page_mark_cost_one_query_and_no_record_of_their_own(
    metered: tuple[Sessions, Meter, Clock], local_client: Any, local_table: str
) -> None:
    """Slash commands carry whole seconds: sixty in one second share a key. Once the page
    mark is that key, each looks past it with one ``Query`` (the pages within the window above
    it), never a ``BatchGetItem``; their records move out to the next pages (late records of
    the mark's own key, within the window), never to items of their own; every one is found
    again."""
    sessions, meter, clock = metered
    count = counter(SMALL, respond=False)
    second = float(int(clock.now) + 10)
    calls: Counter[str] = Counter()
    for i in range(90):
        clock.now = second + 0.01 * i
        sessions.run(KEY, f"cmd-{i}", count, None, event_time=second)
        calls += meter.take()[0]
    assert calls["BatchWriteItem"] >= 2 and calls["Query"] >= 20, calls
    assert "BatchGetItem" not in calls
    found = kinds(local_client, local_table)
    assert found["event"] == 0 and found["page"] >= 2, found
    clock.now += 60
    for i in range(90):
        again = sessions.run(KEY, f"cmd-{i}", count, None, event_time=second)
        assert again.duplicate, f"cmd-{i} applied again"
        assert meter.take()[0].keys() <= {"GetItem", "Query"}
    assert sessions.get(KEY).state["n"] == 90  # type: ignore[union-attr]


def test_records_filed_by_whole_seconds_before_the_deploy_still_guard_duplicates(
    metered: tuple[Sessions, Meter, Clock], local_client: Any, local_table: str
) -> None:
    """The edge before ``event_ts`` filed Slack events by ``event_time``; the layout then
    wrote no coarse mark. After the deploy the same events come again keyed by their
    ``event_ts``, up to a second later than their records' keys: inline, paged (the page's
    highest key the event's whole second) or in an item of their own (a large response),
    each is found again, and applied once."""
    sessions, _, clock = metered
    count = counter(SMALL, respond=False)
    big = "r" * 700

    def answer(state: dict[str, Any], event: Any) -> Any:
        return count(state, event)[0], [], big

    fine: dict[str, float] = {}
    start = int(clock.now) + 10
    for i in range(70):
        name = f"Ev{i}"
        fine[name] = start + i // 3 + 0.5 + 0.001 * i  # event_ts; three events a second
        clock.now = fine[name] + 0.2
        turn = answer if i % 10 == 9 else count
        sessions.run(KEY, name, turn, None, event_time=float(int(fine[name])))  # event_time
        # The layout of the moment did not know the coarse mark.
        local_client.update_item(
            TableName=local_table,
            Key=key_of(KEY.pk, KEY.sk),
            UpdateExpression="REMOVE cm, cmx",
        )
    found = kinds(local_client, local_table)
    assert found["page"] >= 1 and found["event"] >= 1, found
    clock.now += 60
    for name, when in fine.items():
        assert sessions.run(KEY, name, count, None, event_time=when).duplicate, name
    assert sessions.get(KEY).state["n"] == 70  # type: ignore[union-attr]
