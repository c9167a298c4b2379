"""DynamoDB requests and billed capacity per turn, path by path, on AWS's DynamoDB Local.

Requests are counted with botocore's event hooks; capacity is what AWS would bill, computed
from the real item sizes by ``benchmarks.billing`` (DynamoDB Local does not report a
transaction's capacity as AWS bills it). Each path has a budget; a layout change that makes a
path dearer fails here.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.billing import Billing
from benchmarks.requests_per_turn import state_of
from sessions import ConversationKey, Sessions, TurnError
from sessions.dynamodb import DynamoDBStore, make_client
from sessions.dynamodb_layout import MAX_SKEW
from tests.contract.test_guarantees import Clock

KEY = ConversationKey.slack(team="T0001", channel="C0001", user="U0001")
SMALL = state_of(200)
LARGE = state_of(3 * 1024)


class RequestCounter:
    """Counts every HTTP request the client sends (``before-send`` fires once per attempt,
    so botocore's own retries would be counted too)."""

    def __init__(self, client: Any) -> None:
        self.calls: Counter[str] = Counter()
        client.meta.events.register("before-send.dynamodb", self._count)

    def _count(self, request: Any, **_: Any) -> None:
        operation = request.headers["X-Amz-Target"].decode().split(".")[-1]
        self.calls[operation] += 1

    def take(self) -> Counter[str]:
        calls, self.calls = self.calls, Counter()
        return calls


class Meter(RequestCounter):
    """Requests, and the units AWS would bill for them."""

    def __init__(self, client: Any, probe: Any) -> None:
        super().__init__(client)
        self.billing = Billing(client, probe)

    def take(self) -> tuple[Counter[str], float, float]:  # type: ignore[override]
        """Requests by operation, billed read units, billed write units since the last take."""
        taken = (self.calls, self.billing.read, self.billing.write)
        self.calls = Counter()
        self.billing.reset()
        return taken


def counter(base: dict[str, Any], *, respond: bool = True) -> Any:
    """A turn over a state of ``base``'s size; ``respond``: with a recorded response, as a
    slash command's ack has (events and Messenger messages have none)."""

    def count(state: dict[str, Any], event: Any) -> tuple[dict[str, Any], list[str], Any]:
        n = state.get("n", 0) + 1
        return {**base, "n": n}, [f"count is {n}"], f"count is {n}" if respond else None

    return count


@pytest.fixture
def metered(
    local_client: Any, local_table: str, dynamodb_endpoint: str
) -> Iterator[tuple[Sessions, Meter, Clock]]:
    clock = Clock()  # in the future: DynamoDB Local sweeps expired items
    meter = Meter(local_client, make_client(endpoint_url=dynamodb_endpoint))
    sessions = Sessions(
        DynamoDBStore(local_table, client=local_client), clock=clock, sleep=lambda s: None
    )
    yield sessions, meter, clock
    meter.billing.close()


def run(sessions: Sessions, clock: Clock, event: str, turn: Any) -> Any:
    clock.now += 60
    return sessions.run(KEY, event, turn, None, event_time=clock.now - 1)


@pytest.mark.parametrize(("base", "wcu"), [(SMALL, 1.0), (LARGE, 1.0)], ids=["200B", "3KB"])
def test_new_event_is_a_read_and_one_conditional_put(
    metered: tuple[Sessions, Meter, Clock], base: dict[str, Any], wcu: float
) -> None:
    sessions, meter, clock = metered
    count = counter(base)
    sent: list[Any] = []
    run(sessions, clock, "Ev0", count)
    meter.take()
    result = sessions.run(
        KEY, "Ev1", count, None, event_time=clock.now, sender=lambda k, r: sent.extend(r)
    )
    assert result.state["n"] == 2 and sent == ["count is 2"]
    assert meter.take() == ({"GetItem": 1, "PutItem": 1}, 1.0, wcu)


def test_first_event_of_a_conversation_checks_the_tombstone_in_its_transaction(
    metered: tuple[Sessions, Meter, Clock],
) -> None:
    sessions, meter, clock = metered
    run(sessions, clock, "Ev0", counter(SMALL))
    # The conversation item (1 KB), the user's tombstone record's update and the workspace
    # stone's ConditionCheck (an uninstall refuses the creation), each billed double.
    assert meter.take() == ({"GetItem": 1, "TransactWriteItems": 1}, 1.0, 6.0)


def test_duplicate_is_one_read_of_one_unit(metered: tuple[Sessions, Meter, Clock]) -> None:
    sessions, meter, clock = metered
    count = counter(SMALL)
    run(sessions, clock, "Ev0", count)
    run(sessions, clock, "Ev1", count)
    meter.take()
    result = sessions.run(KEY, "Ev1", count, None, event_time=clock.now - 1)
    assert result.duplicate and result.response == "count is 2"
    assert meter.take() == ({"GetItem": 1}, 1.0, 0.0)


def test_conflict_costs_a_failed_put_and_one_more_round(
    metered: tuple[Sessions, Meter, Clock],
) -> None:
    sessions, meter, clock = metered
    count = counter(SMALL)
    run(sessions, clock, "Ev0", count)
    meter.take()
    raced = False

    def racing(state: dict[str, Any], event: Any) -> Any:
        nonlocal raced
        if not raced:
            raced = True  # another delivery commits between our read and our write
            sessions.run(KEY, "other", count, None, event_time=clock.now)
        return count(state, event)

    result = sessions.run(KEY, "Ev1", racing, None, event_time=clock.now)
    assert result.attempts == 2 and result.state["n"] == 3
    # ours: 2 reads + 2 puts (one refused, still billed); the other delivery: 1 read + 1 put
    assert meter.take() == ({"GetItem": 3, "PutItem": 3}, 3.0, 3.0)


@pytest.mark.parametrize(
    "offset",
    [-1.0, -0.3, 180.000123, -240.5],
    ids=["seconds", "milliseconds", "microseconds-clock-ahead", "clock-behind"],
)
def test_a_busy_conversation_pages_its_records_and_still_deduplicates_them(
    metered: tuple[Sessions, Meter, Clock], offset: float
) -> None:
    """Every record moves out to one page when the item is full: one more plain write, then
    the usual turn again. A redelivery of a paged event is found by one ``Query``, whatever
    the event time's resolution and however far the platform's clock is from ours."""
    sessions, meter, clock = metered
    count = counter(SMALL, respond=False)
    times: dict[str, float] = {}

    def deliver(event: str) -> Any:
        clock.now += 60
        times.setdefault(event, clock.now + offset)
        return sessions.run(KEY, event, count, None, event_time=times[event])

    paged_at = None
    for i in range(200):
        deliver(f"Ev{i}")
        calls, _, wcu = meter.take()
        if "BatchWriteItem" in calls:
            # The page first, then the conversation item: 1 write unit each.
            assert calls == {"GetItem": 1, "BatchWriteItem": 1, "PutItem": 1} and wcu == 2.0
            paged_at = i
            break
        assert calls == {"GetItem": 1, "PutItem": 1} or i == 0
    assert paged_at is not None and paged_at >= 20  # ~30 records fit beside 200 B of state
    deliver("next")
    # A new event after the page: newer than anything paged, so no second read.
    assert meter.take()[0] == {"GetItem": 1, "PutItem": 1}
    for event in ("Ev0", f"Ev{paged_at - 2}"):  # the oldest and the newest paged record
        clock.now += 60
        again = sessions.run(KEY, event, count, None, event_time=times[event])
        assert again.duplicate
        calls, rcu, wcu = meter.take()
        assert calls == {"GetItem": 1, "Query": 1} and rcu == 2.0 and wcu == 0.0
    # The record of the highest key stayed inline when the others moved out.
    assert sessions.run(
        KEY, f"Ev{paged_at - 1}", count, None, event_time=times[f"Ev{paged_at - 1}"]
    ).duplicate
    assert meter.take()[0] == {"GetItem": 1}
    assert sessions.get(KEY).state["n"] == paged_at + 2  # type: ignore[union-attr]


def test_failing_turn_records_a_dead_letter_beside_the_state(
    metered: tuple[Sessions, Meter, Clock],
) -> None:
    sessions, meter, clock = metered
    run(sessions, clock, "Ev0", counter(SMALL))
    meter.take()

    def broken(state: Any, event: Any) -> Any:
        raise RuntimeError("bot bug")

    with contextlib.suppress(TurnError):
        run(sessions, clock, "Ev1", broken)
    assert meter.take() == ({"GetItem": 1, "TransactWriteItems": 1}, 1.0, 4.0)
    again = sessions.run(KEY, "Ev1", broken, None, event_time=clock.now - 1)
    assert again.duplicate and again.failed
    assert meter.take() == ({"GetItem": 1, "BatchGetItem": 1}, 3.0, 0.0)


def test_sent_mark_costs_a_third_request(
    local_client: Any, local_table: str, dynamodb_endpoint: str
) -> None:
    meter = Meter(local_client, make_client(endpoint_url=dynamodb_endpoint))
    clock = Clock()
    store = DynamoDBStore(local_table, client=local_client)
    sessions = Sessions(store, clock=clock, sent_mark=True)
    count = counter(SMALL)
    sessions.run(KEY, "Ev0", count, None, event_time=clock.now)
    meter.take()
    clock.now += 5
    sessions.run(KEY, "Ev1", count, None, event_time=clock.now, sender=lambda k, r: None)
    # The record keeps the outbox in its own item until the mark: a transaction, then the mark.
    calls, _, wcu = meter.take()
    assert calls == {"GetItem": 1, "TransactWriteItems": 1, "UpdateItem": 1} and wcu == 5.0
    meter.billing.close()


def test_user_operations_use_one_query(metered: tuple[Sessions, Meter, Clock]) -> None:
    sessions, meter, clock = metered
    for i in range(3):
        run(sessions, clock, f"Ev{i}", counter(SMALL))
    meter.take()
    assert len(sessions.conversations(KEY.user_key)) == 1
    assert meter.take()[0] == {"Query": 1}
    sessions.export(KEY.user_key)
    assert meter.take()[0] == {"Query": 1}


def test_items_of_the_old_layout_keep_deduplicating(
    local_client: Any, local_table: str, dynamodb_endpoint: str
) -> None:
    """A conversation written before inline records (``kind = "state"``, each event record an
    item of its own) still recognises its events' redeliveries, and its next commit moves it
    to the new layout without forgetting them."""
    from sessions.dynamodb_layout import event_item, state_item
    from sessions.store import EventRecord, StoredState

    clock = Clock()
    now = int(clock.now)
    old_state = StoredState(version=3, blob=b'j{"v":1,"s":{"n":3}}', expires_at=now + 600,
                            updated_at=now - 5)  # fmt: skip
    record = EventRecord(version=3, committed_at=now - 5, expires_at=now + 3600)
    for item in (
        state_item(KEY.pk, KEY.sk, old_state),
        event_item(KEY.pk, KEY.event_sk("old"), record),
    ):
        local_client.put_item(TableName=local_table, Item=item)
    sessions = Sessions(DynamoDBStore(local_table, client=local_client), clock=clock)
    count = counter(SMALL)

    assert sessions.run(KEY, "old", count, None, event_time=clock.now - 6).duplicate
    clock.now += 1
    assert sessions.run(KEY, "new", count, None, event_time=clock.now).state["n"] == 4
    # Converted: an event later than the old records could be (their time is our commit
    # time, and the platform's clock may be up to MAX_SKEW ahead) is one read; the old
    # record still counts.
    meter = Meter(local_client, make_client(endpoint_url=dynamodb_endpoint))
    clock.now += MAX_SKEW + 1
    assert sessions.run(KEY, "newer", count, None, event_time=clock.now).state["n"] == 5
    assert meter.take()[0] == {"GetItem": 1, "PutItem": 1}
    assert sessions.run(KEY, "old", count, None, event_time=clock.now - MAX_SKEW - 8).duplicate
    assert sessions.get(KEY).state["n"] == 5  # type: ignore[union-attr]
    meter.billing.close()


def test_stores_sharing_a_client_share_one_capacity_meter(
    local_table: str, dynamodb_endpoint: str
) -> None:
    """A store hooks its client once, however many stores are built on it (a process that
    builds a store per request must not pile up handlers), and a turn's capacity is taken
    once, by the turn that spent it."""
    client = make_client(endpoint_url=dynamodb_endpoint)
    model = client.meta.service_model.operation_model("GetItem")

    def handlers() -> int:
        emitted = client.meta.events.emit(
            "after-call.dynamodb.GetItem", parsed={}, model=model, http_response=None, context={}
        )
        return len(emitted)

    bare = handlers()
    stores = [DynamoDBStore(local_table, client=client) for _ in range(5)]
    assert handlers() == bare + 1
    reports: list[Any] = []
    clock = Clock()
    sessions = Sessions(stores[0], clock=clock, sleep=lambda s: None, observer=reports.append)
    run(sessions, clock, "Ev0", counter(SMALL))
    (report,) = reports
    assert report.read_units is not None and report.read_units > 0
    assert report.write_units is not None and report.write_units > 0
    assert stores[1].take_capacity() == (0.0, 0.0)
