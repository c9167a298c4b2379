"""Group commits (``Sessions.run_batch``) keep every promise of a single turn, on every store:
each event applied once and in order, a duplicate inside one batch or of an earlier commit never
applied again, replies after the write and at most once (a crash between the write and the
sends loses them, never doubles them), a delete between two batches judged by the second."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from sessions import ConversationKey
from sessions.group_commit import Batched
from sessions.store import Store
from tests.contract.sealing import Sessions
from tests.contract.test_guarantees import Clock

KEY = ConversationKey.slack(team="T0001", channel="C0001", user="U0001")


class Crash(BaseException):
    """The invocation dies (a timeout): nothing after this point runs."""


def append(state: dict[str, Any], event: str) -> tuple[dict[str, Any], list[str], None]:
    return {"seen": [*state.get("seen", []), event]}, [f"got {event}"], None


class Sent:
    def __init__(self) -> None:
        self.replies: list[str] = []

    def __call__(self, key: ConversationKey, replies: Sequence[Any]) -> None:
        self.replies += list(replies)


def batch(
    events: Sequence[str], sender: Any = None, *, at: float = 1_800_000_000.0
) -> list[Batched]:
    return [Batched(e, append, e, event_time=at, sender=sender) for e in events]


def seen(sessions: Any, key: ConversationKey = KEY) -> list[str]:
    found = sessions.get(key)
    return list(found.state["seen"]) if found else []


def test_a_batch_applies_each_event_once_in_order(store: Store) -> None:
    sessions = Sessions(store)
    sent = Sent()
    results = sessions.run_batch(KEY, batch(["a", "b", "c", "d"], sent))
    assert seen(sessions) == ["a", "b", "c", "d"]
    assert [r.replies for r in results] == [("got a",), ("got b",), ("got c",), ("got d",)]
    assert sent.replies == ["got a", "got b", "got c", "got d"]
    assert [r.version for r in results] == [1, 2, 3, 4]


def test_a_duplicate_inside_one_batch_is_applied_once(store: Store) -> None:
    sessions = Sessions(store)
    sent = Sent()
    results = sessions.run_batch(KEY, batch(["a", "b", "a", "c", "b"], sent))
    assert seen(sessions) == ["a", "b", "c"]
    assert [r.duplicate for r in results] == [False, False, True, False, True]
    assert sent.replies == ["got a", "got b", "got c"]


def test_a_batch_skips_events_committed_before_it(store: Store) -> None:
    sessions = Sessions(store)
    sessions.run(KEY, "a", append, "a", event_time=1_800_000_000.0)
    sent = Sent()
    results = sessions.run_batch(KEY, batch(["a", "b"], sent))
    assert seen(sessions) == ["a", "b"]
    assert results[0].duplicate and not results[1].duplicate
    assert sent.replies == ["got b"]
    again = sessions.run_batch(KEY, batch(["b", "a"], sent))  # the whole batch redelivered
    assert all(r.duplicate for r in again)
    assert seen(sessions) == ["a", "b"] and sent.replies == ["got b"]


def test_a_crash_between_the_write_and_the_sends_never_doubles(store: Store) -> None:
    sessions = Sessions(store)

    def dies(key: ConversationKey, replies: Sequence[Any]) -> None:
        raise Crash("the container died after the batch's write")

    with pytest.raises(Crash):
        sessions.run_batch(KEY, batch(["a", "b", "c"], dies))
    assert seen(sessions) == ["a", "b", "c"]  # written, all of them, once
    sent = Sent()
    results = sessions.run_batch(KEY, batch(["a", "b", "c"], sent))  # the redelivery
    assert all(r.duplicate for r in results)
    assert sent.replies == []  # at most once: lost with the crash, never repeated
    assert seen(sessions) == ["a", "b", "c"]


def test_a_crash_before_the_write_writes_nothing(store: Store) -> None:
    sessions = Sessions(store)

    def dies_on_c(state: dict[str, Any], event: str) -> Any:
        if event == "c":
            raise Crash("the container died in the fold")
        return append(state, event)

    with pytest.raises(Crash):
        sessions.run_batch(KEY, [Batched(e, dies_on_c, e, event_time=1.8e9) for e in "abc"])
    assert seen(sessions) == []
    sessions.run_batch(KEY, batch(["a", "b", "c"]))
    assert seen(sessions) == ["a", "b", "c"]


def test_a_delete_between_batches_is_judged_by_the_next(store: Store) -> None:
    clock = Clock(1_800_000_000.0)
    sessions = Sessions(store, clock=clock)
    sessions.run_batch(KEY, batch(["a", "b"], at=clock.now))
    clock.now += 10
    sessions.delete_user(KEY.user_key)
    clock.now += 10
    late = batch(["c"], at=clock.now - 15)  # happened before the delete: a late redelivery
    fresh = batch(["d", "e"], at=clock.now)
    results = sessions.run_batch(KEY, [*late, *fresh])
    assert results[0].ignored
    assert seen(sessions) == ["d", "e"]  # nothing of before the delete comes back


def test_a_race_lost_by_the_batch_folds_again(store: Store) -> None:
    sessions = Sessions(store, backoff=0.0001)
    rival = Sessions(store)
    raced = []

    def racing(state: dict[str, Any], event: str) -> Any:
        if not raced:  # another writer commits between the batch's read and its write
            raced.append(True)
            rival.run(KEY, "r", append, "r", event_time=1.8e9)
        return append(state, event)

    results = sessions.run_batch(KEY, [Batched(e, racing, e, event_time=1.8e9) for e in "ab"])
    assert seen(sessions) == ["r", "a", "b"]
    assert all(r.attempts == 2 for r in results)


def test_a_turn_that_raises_is_a_dead_letter_alone(store: Store) -> None:
    sessions = Sessions(store)

    def picky(state: dict[str, Any], event: str) -> Any:
        if event == "bad":
            raise ValueError("no")
        return append(state, event)

    results = sessions.run_batch(
        KEY, [Batched(e, picky, e, event_time=1.8e9) for e in ("a", "bad", "b")]
    )
    assert seen(sessions) == ["a", "b"]
    assert results[1].failed and not results[1].duplicate
    again = sessions.run(KEY, "bad", picky, "bad", event_time=1.8e9)
    assert again.duplicate and again.failed


def test_batches_on_a_paged_conversation_still_deduplicate(store: Store) -> None:
    """Enough batches that the item's records move out to pages (DynamoDB): every event of
    every batch, delivered again in one batch, is a duplicate."""
    sessions = Sessions(store)
    every = [f"e{i:03d}" for i in range(150)]
    for start in range(0, len(every), 10):
        chunk = every[start : start + 10]
        sessions.run_batch(
            KEY, [Batched(e, append, e, event_time=1.8e9 + i) for i, e in enumerate(chunk, start)]
        )
    assert seen(sessions) == every
    old = [Batched(e, append, e, event_time=1.8e9 + i) for i, e in enumerate(every[:10])]
    assert all(r.duplicate for r in sessions.run_batch(KEY, old))
    assert seen(sessions) == every
