"""The DynamoDB record layout on moto: the redelivery that the first layout applied twice, and
the cases of records that move out (pages, late records, unknown times, the previous layout)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from sessions import ConversationKey, Sessions
from sessions import dynamodb_layout as layout
from sessions.dynamodb import DynamoDBStore, create_table
from sessions.errors import ConflictError
from sessions.store import EventRecord, EventWrite, StoredState

KEY = ConversationKey.messenger(page="100", psid="200")
START = 1_800_000_000


class Clock:
    def __init__(self) -> None:
        self.now = float(START)

    def __call__(self) -> float:
        return self.now


class Counted:
    """The moto client, counting requests by operation."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if not callable(attr) or name.startswith("get_waiter"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return call

    def take(self) -> Counter[str]:
        calls, self.calls = self.calls, Counter()
        return calls


@pytest.fixture
def moto() -> Iterator[Counted]:
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, "sessions")
        yield Counted(client)


def count(state: dict[str, Any], event: Any) -> tuple[dict[str, Any], list[str], None]:
    return {"n": state.get("n", 0) + 1, "seen": [*state.get("seen", []), event]}, [], None


def test_a_messenger_redelivery_after_its_record_moved_out_is_a_duplicate(moto: Counted) -> None:
    """The first layout's double apply: Messenger events every 5 s, stamped ``.700``, each
    committed in the same second of our clock, until the oldest record moves out; the first
    event's redelivery a minute later must be found (it was applied again: its time compared
    as newer than the move's mark, floored to the second)."""
    clock = Clock()
    sessions = Sessions(DynamoDBStore("sessions", client=moto), clock=clock)  # type: ignore[arg-type]
    times: dict[str, float] = {}
    moved = False
    i = 0
    while not moved:
        times[f"m{i}"] = START + 5 * i + 0.7
        clock.now = times[f"m{i}"] + 0.05
        sessions.run(KEY, f"m{i}", count, f"m{i}", event_time=times[f"m{i}"])
        moved = moto.take()["batch_write_item"] > 0
        i += 1
        assert i < 200, "the item never filled"
    clock.now += 60
    again = sessions.run(KEY, "m0", count, "m0", event_time=times["m0"])
    assert again.duplicate
    conversation = sessions.get(KEY)
    assert conversation is not None and conversation.state["seen"].count("m0") == 1
    assert conversation.state["n"] == i


@pytest.mark.parametrize(
    "time_of",
    [
        lambda i: float(START + i),  # Slack: whole seconds
        lambda i: START + i * 0.001,  # Messenger: a burst within one second
        lambda i: START + i + 0.123456,  # action_ts: microseconds
        lambda i: START + 300 + i * 0.25,  # the platform's clock 5 minutes ahead of ours
        lambda i: START - 300 + i * 0.25,  # ... and behind
    ],
    ids=["seconds", "milliseconds", "microseconds", "ahead", "behind"],
)
def test_every_event_of_a_busy_conversation_is_found_again(moto: Counted, time_of: Any) -> None:
    clock = Clock()
    sessions = Sessions(DynamoDBStore("sessions", client=moto), clock=clock)  # type: ignore[arg-type]
    for i in range(120):
        clock.now = START + i * 0.5
        sessions.run(KEY, f"e{i}", count, f"e{i}", event_time=time_of(i))
    assert moto.take()["batch_write_item"] >= 2  # records moved out more than once
    clock.now += 600
    for i in range(120):
        assert sessions.run(KEY, f"e{i}", count, f"e{i}", event_time=time_of(i)).duplicate
    conversation = sessions.get(KEY)
    assert conversation is not None and conversation.state["n"] == 120


def test_late_and_timeless_records_move_out_on_their_own(moto: Counted) -> None:
    """An event older than what was already paged, and one with no time, leave the item as
    records of their own when it fills; both are still found, and a new event is not taken
    for either."""
    clock = Clock()
    sessions = Sessions(DynamoDBStore("sessions", client=moto), clock=clock)  # type: ignore[arg-type]
    paged = 0
    i = 0
    while paged < 2:
        clock.now = START + i
        when = None if i == 5 else START + i - (3_000 if i == 40 else 0)
        sessions.run(KEY, f"e{i}", count, f"e{i}", event_time=when)
        paged += moto.take()["batch_write_item"]
        i += 1
    items = moto.client.scan(TableName="sessions")["Items"]
    kinds = Counter(item.get("kind", {}).get("S", "conversation") for item in items)
    assert kinds["page"] == 2 and kinds["event"] >= 1
    clock.now += 60
    assert sessions.run(KEY, "e5", count, "e5", event_time=None).duplicate
    assert sessions.run(KEY, "e40", count, "e40", event_time=START + 40 - 3_000).duplicate
    assert not sessions.run(KEY, "fresh", count, "fresh", event_time=START + 1).duplicate


@pytest.mark.parametrize("spread", [2.0, 9.9], ids=["a burst of 2 s", "just inside the window"])
def test_events_applied_out_of_their_order_are_paged_together(moto: Counted, spread: float) -> None:
    """A hot item's turns are applied in the order the serialised path received them, not
    in their events' order: after the first page, most records are at or below its mark.
    Within ``PAGE_WINDOW`` of the page's name they go to the next page with the others (one
    write), not to items of their own (one write each); each is found again, and a new event
    of the same seconds is not taken for one of them."""
    rng = random.Random(38)
    clock = Clock()
    sessions = Sessions(DynamoDBStore("sessions", client=moto), clock=clock)  # type: ignore[arg-type]
    times = {f"e{i}": START + rng.random() * spread for i in range(60)}

    def padded(state: dict[str, Any], event: Any) -> tuple[dict[str, Any], list[str], None]:
        # 800 B of state: the item fills every few records.
        return {"n": state.get("n", 0) + 1, "pad": "x" * 800}, [], None

    for name in times:  # dict order: not the events' order
        clock.now = START + spread + 1
        sessions.run(KEY, name, padded, name, event_time=round(times[name], 6))
    items = moto.client.scan(TableName="sessions")["Items"]
    kinds = Counter(item.get("kind", {}).get("S", "conversation") for item in items)
    assert kinds["page"] >= 3 and kinds["event"] == 0, kinds
    clock.now += 60
    for name in times:
        assert sessions.run(KEY, name, padded, name, event_time=round(times[name], 6)).duplicate
    fresh = sessions.run(KEY, "fresh", padded, "fresh", event_time=START + spread / 2)
    assert not fresh.duplicate
    conversation = sessions.get(KEY)
    assert conversation is not None and conversation.state["n"] == len(times) + 1


def test_the_layout_is_a_function_of_the_item_read() -> None:
    """Two writers that read the same full item write the same page under the same name,
    whatever their own event, state and clock (what makes plain writes of pages safe)."""
    item = layout.key_of(KEY.pk, KEY.sk) | {
        "version": layout.n(3),
        "updated_at": layout.n(START),
        "expires_at": layout.n(START + 86_400),
        "state": {"B": b"j" + b"x" * 900},
        "w": {"B": b"12345678"},
    }
    entries: list[layout.Entry] = []
    conversation = layout.Conversation.of(item)
    while not conversation.full():
        entries.append(layout.Entry(bytes([len(entries)]) * 8, (START + len(entries)) * 1000,
                                    START + 86_400))  # fmt: skip
        conversation = layout.Conversation.of(item | layout._pack(entries, []))
    assert len(entries) > 3

    def writes(event: str, now: int, size: int) -> list[layout.Item]:
        placed = layout.place(
            conversation,
            pk=KEY.pk,
            sk=KEY.sk,
            state=StoredState(version=4, blob=b"j" + b"y" * size, expires_at=now, updated_at=now),
            event_sk=KEY.event_sk(event),
            event=EventRecord(version=4, committed_at=now, expires_at=now + 60),
            key=(now + 1) * 1000,
            now=now,
            new_chain="abcd0123",
        )
        return placed.moved

    assert writes("a", START + 10, 50) == writes("b", START + 20, 2_000)


def test_a_delete_settles_then_removes_what_a_turn_in_flight_wrote(moto: Counted) -> None:
    """A turn that read a full item before a delete writes its page after the delete removed
    everything (its commit then fails): the delete's second pass, after the settle time,
    removes that page and leaves what a genuine new event wrote meanwhile."""
    clock = Clock()
    store = DynamoDBStore("sessions", client=moto)  # type: ignore[arg-type]
    sessions = Sessions(store, clock=clock)
    i = 0
    while True:  # fill the item: the next commit moves its records out
        clock.now = START + i
        sessions.run(KEY, f"e{i}", count, f"e{i}", event_time=START + i)
        i += 1
        item = moto.client.get_item(TableName="sessions", Key=layout.key_of(KEY.pk, KEY.sk))
        if layout.Conversation.of(item["Item"]).full():
            break
    stale = store.load(KEY, KEY.event_sk("stale"), event_time=START + i)
    other = ConversationKey.messenger(page="100", psid="300")

    def while_settling(seconds: float) -> None:
        assert seconds == 65
        # The stale turn's commit: its page is written, its conversation write refused.
        with pytest.raises(ConflictError):
            store.commit(
                EventWrite(
                    KEY,
                    KEY.event_sk("stale"),
                    EventRecord(version=99, committed_at=START + i, expires_at=START + 9_999),
                    tombstone=None,
                    now=int(clock.now),
                    state=StoredState(
                        version=99, blob=b"j{}", expires_at=START + 99_999, updated_at=START + i
                    ),
                    expected=stale.state,
                    loaded=stale,
                    event_time=START + i,
                )
            )
        assert any("#evt#p." in sk for sk, _ in _items(moto, KEY.pk))
        clock.now += 1  # a genuine new event after the delete, on another conversation
        sessions.run(other, "new", count, "new", event_time=clock.now)

    sessions.sleep = while_settling
    clock.now = START + i + 1
    deleted = sessions.delete_user(KEY.user_key, settle=65)
    assert deleted >= i
    assert [sk for sk, _ in _items(moto, KEY.pk)] == ["#tombstone"]
    assert sessions.get(other) is not None


def _items(moto: Counted, pk: str) -> list[tuple[str, Any]]:
    out = moto.client.query(
        TableName="sessions",
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": pk}},
    )
    return [(item["sk"]["S"], item) for item in out["Items"]]


def test_an_expired_own_record_does_not_hide_a_later_paged_one(moto: Counted) -> None:
    """An event whose record went to an item of its own (a large recorded response) comes
    again after its record expired (applied again, as any event past the event TTL), this
    time recorded inline, while the expired item waits for DynamoDB's TTL sweep. A later own
    record's mark then covers the event's time, and its inline record moves to a page: a
    further delivery must find it there, not stop at the expired item and apply it again."""
    clock = Clock()
    sessions = Sessions(DynamoDBStore("sessions", client=moto), clock=clock, event_ttl=3600)  # type: ignore[arg-type]
    big = "r" * 600  # more than a record keeps inline: an item of its own

    def answer(state: dict[str, Any], event: Any) -> tuple[dict[str, Any], list[str], str]:
        return count(state, event)[0], [], big

    sessions.run(KEY, "e0", answer, "e0", event_time=START)
    clock.now += 3601  # e0's record expired; the next write drops its mark
    sessions.run(KEY, "e1", count, "e1", event_time=clock.now)
    assert not sessions.run(KEY, "e0", count, "e0 again", event_time=START).duplicate
    sessions.run(KEY, "e2", answer, "e2", event_time=clock.now)  # a mark covering e0's time
    for i in range(60):  # a busy stretch: the item fills and its records move to a page
        clock.now += 0.001
        sessions.run(KEY, f"b{i}", count, f"b{i}", event_time=clock.now)
    items = moto.client.scan(TableName="sessions")["Items"]
    assert any(item.get("kind", {}).get("S") == "page" for item in items)  # it was paged
    third = sessions.run(KEY, "e0", count, "e0 third", event_time=START)
    assert third.duplicate
    conversation = sessions.get(KEY)
    assert conversation is not None and "e0 third" not in conversation.state["seen"]


def test_a_lookup_over_a_range_of_keys_reads_every_page_a_key_of_it_may_be_in() -> None:
    """A Slack redelivery over an item written before ``event_ts`` looks from its second's key
    up to its own (the coarse mark). Its record, filed under any key of the range, is in a page
    named within the window above that key, or else in the first page above it: the pages
    read must include both, even where the window above the range's top holds none of them."""
    sk, chain = "D1", "ab"

    def pages(*names: int) -> list[layout.Item]:
        return [{"sk": {"S": layout.page_sk(sk, chain, hi)}} for hi in names]

    def names(found: list[layout.Item]) -> list[int]:
        return [layout.page_hi(p) for p in found]

    # The second's key's own page, below the event's key.
    assert {1_000, 5_000} <= set(names(layout.pages_for(1_000, 1_500, pages(1_000, 5_000, 30_000))))
    # A key of the range with no page within the window above it: the first page past it.
    wide = 1_000 + layout.PAGE_WINDOW + 9_000
    assert names(layout.pages_for(1_000, 3_000, pages(1_000, wide))) == [1_000, wide]
    # One key: the pages within the window, or else the first (the first past is not needed).
    assert names(layout.pages_for(1_000, 1_000, pages(1_000, wide))) == [1_000]
    assert names(layout.pages_for(1_000, 1_000, pages(wide))) == [wide]
