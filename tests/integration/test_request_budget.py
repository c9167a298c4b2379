"""DynamoDB requests per turn, counted with botocore's event hooks on AWS's DynamoDB Local."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from sessions import ConversationKey, Sessions
from sessions.dynamodb import DynamoDBStore

KEY = ConversationKey.slack(team="T0001", channel="C0001", user="U0001")


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


def count(state: dict[str, Any], event: Any) -> tuple[dict[str, Any], list[str], str]:
    n = state.get("n", 0) + 1
    return {"n": n}, [f"count is {n}"], f"count is {n}"


@pytest.fixture
def counted(local_client: Any, local_table: str) -> tuple[DynamoDBStore, RequestCounter]:
    counter = RequestCounter(local_client)
    return DynamoDBStore(local_table, client=local_client), counter


def test_new_event_costs_two_requests(counted: tuple[DynamoDBStore, RequestCounter]) -> None:
    store, counter = counted
    sessions = Sessions(store)
    sent: list[Any] = []
    sessions.run(KEY, "Ev1", count, None, sender=lambda k, r: sent.extend(r))
    assert counter.take() == {"BatchGetItem": 1, "TransactWriteItems": 1}
    sessions.run(KEY, "Ev2", count, None, sender=lambda k, r: sent.extend(r))
    assert counter.take() == {"BatchGetItem": 1, "TransactWriteItems": 1}
    assert sent == ["count is 1", "count is 2"]


def test_duplicate_costs_one_request(counted: tuple[DynamoDBStore, RequestCounter]) -> None:
    store, counter = counted
    sessions = Sessions(store)
    sessions.run(KEY, "Ev1", count, None)
    counter.take()
    result = sessions.run(KEY, "Ev1", count, None)
    assert result.duplicate and result.response == "count is 1"
    assert counter.take() == {"BatchGetItem": 1}


def test_sent_mark_costs_a_third_request(counted: tuple[DynamoDBStore, RequestCounter]) -> None:
    store, counter = counted
    sessions = Sessions(store, sent_mark=True)
    sessions.run(KEY, "Ev1", count, None, sender=lambda k, r: None)
    assert counter.take() == {"BatchGetItem": 1, "TransactWriteItems": 1, "UpdateItem": 1}


def test_lost_race_costs_one_more_read_and_write(
    counted: tuple[DynamoDBStore, RequestCounter],
) -> None:
    store, counter = counted
    sessions = Sessions(store, sleep=lambda s: None)
    raced = False

    def racing(state: dict[str, Any], event: Any) -> tuple[dict[str, Any], list[str], str]:
        nonlocal raced
        if not raced:
            raced = True  # another delivery commits between our read and our write
            sessions.run(KEY, "other", count, None)
        return count(state, event)

    result = sessions.run(KEY, "Ev1", racing, None)
    assert result.attempts == 2 and result.state == {"n": 2}
    # ours: 2 reads + 2 writes (one lost); the other delivery: 1 read + 1 write
    assert counter.take() == {"BatchGetItem": 3, "TransactWriteItems": 3}


def test_user_operations_use_one_query(counted: tuple[DynamoDBStore, RequestCounter]) -> None:
    store, counter = counted
    sessions = Sessions(store)
    for i in range(3):
        sessions.run(KEY, f"Ev{i}", count, None)
    counter.take()
    assert len(sessions.conversations(KEY.user_key)) == 1
    assert counter.take() == {"Query": 1}
    sessions.export(KEY.user_key)
    assert counter.take() == {"Query": 1}
