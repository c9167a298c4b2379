"""User deletes that cannot be undone, poison events recorded once, replies at most once, on
every store (SQLite, moto, DynamoDB Local). Each test here failed before the fix it covers."""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from sessions import (
    ConversationKey,
    ItemTooLargeError,
    StoreUnavailableError,
    UserKey,
)
from sessions.dynamodb import DynamoDBStore
from sessions.sqlite import SQLiteStore
from sessions.store import EventWrite, Snapshot, Store, Tombstone
from tests.contract.sealing import Sessions
from tests.contract.test_guarantees import KEY, Clock, Outbox, count
from tests.fakes import StoreWrapper

DM = ConversationKey.slack(team="T0001", channel="D0001", user="U0001")
PAGE_KEY = ConversationKey.messenger(page="100200300", psid="5550001")


def live_sks(store: Store, user: UserKey) -> list[str]:
    return [short(sk) for sk, _ in store.user_items(user)]


def short(sk: str) -> str:
    """An event record's sort key as every store can list it: the DynamoDB store keeps
    records inline by the first 8 bytes of the digest and lists them so."""
    head, mark, digest = sk.partition("#evt#")
    return f"{head}{mark}{digest[:16]}" if mark else sk


def tombstone_only(store: Store, user: UserKey, stone: Tombstone) -> None:
    """The moment inside a delete between its tombstone and its last deletes (on DynamoDB
    the conversation items go in the tombstone's transaction; sibling records follow)."""
    if isinstance(store, DynamoDBStore):
        conversations = [
            {"Delete": {"TableName": store.table, "Key": {"pk": {"S": user.pk}, "sk": {"S": sk}}}}
            for sk, item in store.user_items(user)
            if "#" not in sk
        ]
        store.client.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": store.table,
                        "Item": {
                            "pk": {"S": user.pk},
                            "sk": {"S": "#tombstone"},
                            "kind": {"S": "tombstone"},
                            "gen": {"N": str(stone.generation)},
                            "expires_at": {"N": str(stone.expires_at)},
                            "updated_at": {"N": str(int(stone.deleted_at))},
                        },
                    }
                },
                *conversations,
            ]
        )
    else:
        assert isinstance(store, SQLiteStore)
        store._conn().execute(
            "INSERT OR REPLACE INTO items (pk, sk, kind, expires_at, updated_at, generation) "
            "VALUES (?, '#tombstone', 'tombstone', ?, ?, ?)",
            (user.pk, stone.expires_at, int(stone.deleted_at), stone.generation),
        )


# -- 1. a user delete cannot be undone --------------------------------------------------------


@pytest.mark.parametrize("stored_before", [True, False], ids=["existing", "new-conversation"])
def test_turn_in_flight_during_a_delete_does_not_write_the_user_back(
    store: Store, stored_before: bool
) -> None:
    clock = Clock()
    sessions = Sessions(store, clock=clock)
    if stored_before:
        sessions.run(KEY, "old", count, None, event_time=clock.now - 5)
    sessions.run(DM, "other-channel", count, None, event_time=clock.now - 5)
    event_time = clock.now - 1  # the in-flight event happened before the delete
    deletes = 0

    def turn_racing_a_delete(state: dict[str, Any], event: Any) -> Any:
        nonlocal deletes
        if deletes == 0:  # loaded already; the delete runs before this turn commits
            deletes += 1
            clock.now += 0.5
            sessions.delete_user(KEY.user_key)
        return count(state, event)

    result = sessions.run(KEY, "in-flight", turn_racing_a_delete, None, event_time=event_time)
    # 2 attempts, or 3 on a store that learns of the tombstone from its refused re-creation.
    assert result.ignored and result.attempts in (2, 3)
    assert live_sks(store, KEY.user_key) == ["#tombstone"]
    assert sessions.conversations(KEY.user_key) == []


def test_a_genuine_event_during_a_delete_starts_afresh_and_survives_the_delete(
    store: Store,
) -> None:
    """Between a DynamoDB delete's tombstone and its deletes, pre-delete state is still stored:
    it must read as absent, and what a genuine new event writes must not be deleted."""
    clock = Clock()
    sessions = Sessions(store, clock=clock)
    sessions.run(KEY, "a", count, None, event_time=clock.now)
    sessions.run(KEY, "b", count, None, event_time=clock.now)
    sessions.run(DM, "c", count, None, event_time=clock.now)
    clock.now += 10
    stone = Tombstone(generation=int(clock.now * 1000), expires_at=int(clock.now) + 3600)
    tombstone_only(store, KEY.user_key, stone)

    assert sessions.get(KEY) is None and sessions.conversations(KEY.user_key) == []
    exported = sessions.export(KEY.user_key)
    assert all(c["deleted"] for c in exported["conversations"])

    clock.now += 1
    fresh = sessions.run(KEY, "after", count, None, event_time=clock.now)
    assert fresh.state == {"n": 1}  # not {"n": 3}: the old state is gone for the turn

    deleted = store.delete_user(KEY.user_key, tombstone=stone)  # the delete goes on
    # SQLite: DM's state and the three old event records; DynamoDB: those went with the
    # conversation items in the tombstone's transaction.
    assert deleted == (0 if isinstance(store, DynamoDBStore) else 4)
    [conversation] = sessions.conversations(KEY.user_key)
    assert conversation.key.channel == KEY.channel and conversation.state == {"n": 1}
    assert sorted(live_sks(store, KEY.user_key)) == sorted(
        ["#tombstone", KEY.channel, short(KEY.event_sk("after"))]
    )


def test_a_late_deferred_job_without_its_time_is_the_only_way_back(store: Store) -> None:
    """Every edge passes the event's time; this pins what happens when it is missing, and
    that with it the same late job is a no-op."""
    clock = Clock()
    sessions = Sessions(store, clock=clock)
    sessions.run(KEY, "a", count, None, event_time=clock.now)
    happened = clock.now
    clock.now += 60
    sessions.delete_user(KEY.user_key)
    clock.now += 3000  # Lambda retries an async job for up to an hour
    late = sessions.run(KEY, "deferred", count, None, event_time=happened)
    assert late.ignored
    assert live_sks(store, KEY.user_key) == ["#tombstone"]


# -- 2. times at the platform's resolution ------------------------------------------------------


def test_messenger_message_a_few_ms_after_a_delete_is_kept(store: Store) -> None:
    clock = Clock(1_800_000_000.2)
    sessions = Sessions(store, clock=clock)
    sessions.run(PAGE_KEY, "mid.old", count, None, event_time=1_800_000_000.1)
    sessions.delete_user(PAGE_KEY.user_key)  # at .200
    clock.now += 0.5
    before = sessions.run(PAGE_KEY, "mid.before", count, None, event_time=1_800_000_000.199)
    at = sessions.run(PAGE_KEY, "mid.at", count, None, event_time=1_800_000_000.2)
    after = sessions.run(PAGE_KEY, "mid.after", count, None, event_time=1_800_000_000.201)
    assert before.ignored and at.ignored
    assert not after.ignored and after.state == {"n": 1}


def test_slack_event_in_the_same_second_as_a_delete_is_ignored(store: Store) -> None:
    """Slack's event_time is whole seconds: the same second may be before the delete."""
    clock = Clock(1_800_000_000.2)
    sessions = Sessions(store, clock=clock)
    sessions.delete_user(KEY.user_key)
    clock.now += 2
    assert sessions.run(KEY, "Ev1", count, None, event_time=1_800_000_000).ignored
    assert not sessions.run(KEY, "Ev2", count, None, event_time=1_800_000_001).ignored


# -- 3 and 6. poison events and oversized records -----------------------------------------------


def test_a_state_that_no_longer_decodes_is_dead_lettered_not_retried(store: Store) -> None:
    from sessions import CodecError

    clock = Clock()
    sessions = Sessions(store, clock=clock)
    sessions.run(KEY, "a", count, None)
    snap = store.load(KEY, None)
    assert snap.state is not None
    corrupt = snap.state.__class__(
        version=snap.state.version + 1,
        blob=b"j{not json",
        expires_at=snap.state.expires_at,
        updated_at=snap.state.updated_at,
    )
    store.commit(
        EventWrite(
            KEY,
            KEY.event_sk("corrupting"),
            store.load(KEY, KEY.event_sk("a")).event,  # type: ignore[arg-type]
            tombstone=None,
            now=int(clock.now),
            state=corrupt,
            expected=snap.state,
        )
    )
    with pytest.raises(CodecError) as caught:
        sessions.run(KEY, "b", count, None, dead_letter={"event": "b"})
    assert caught.value.recorded
    [(_, letter)] = sessions.dead_letters(KEY.user_key)
    assert letter.error is not None and letter.error.startswith("CodecError: corrupt state")
    assert sessions.run(KEY, "b", count, None).failed  # the redelivery is answered, not retried
    exported = sessions.export(KEY.user_key)
    assert "undecodable" in exported["conversations"][0]["state"]
    assert any(e["payload"] == {"event": "b"} for e in exported["events"])


def test_recorded_response_and_outbox_over_the_item_limit_fail_alike(store: Store) -> None:
    sessions = Sessions(store, sent_mark=True)
    sessions.run(KEY, "seed", count, None)
    noise = base64.b64encode(os.urandom(220_000)).decode()  # ~220 KB each after zlib

    def huge(state: dict[str, Any], event: Any) -> Any:
        return {"n": 2}, [noise], {"echo": noise}

    with pytest.raises(ItemTooLargeError) as caught:
        sessions.run(KEY, "huge", huge, None)
    assert caught.value.recorded and caught.value.size > caught.value.limit
    conversation = sessions.get(KEY)
    assert conversation is not None and conversation.state == {"n": 1}
    [(sk, letter)] = sessions.dead_letters(KEY.user_key)
    assert sk == KEY.event_sk("huge") and letter.error is not None
    assert letter.error.startswith("ItemTooLargeError")


def test_dead_letter_write_that_finds_the_store_down_is_retryable(store: Store) -> None:
    class DownOnRecord(StoreWrapper):
        def record_failure(self, *args: Any, **kwargs: Any) -> None:
            raise StoreUnavailableError("throttled")

    sessions = Sessions(DownOnRecord(store))  # type: ignore[arg-type]

    def broken(state: Any, event: Any) -> Any:
        raise RuntimeError("bot bug")

    with pytest.raises(StoreUnavailableError):
        sessions.run(KEY, "Ev", broken, None)
    assert store.user_items(KEY.user_key) == []


# -- 5. sent-mark mode ---------------------------------------------------------------------------


class FailingMark(StoreWrapper):
    def mark_sent(self, *args: Any, **kwargs: Any) -> None:
        raise StoreUnavailableError("throttled")


def test_a_failed_sent_mark_after_a_successful_send_does_not_fail_the_turn(store: Store) -> None:
    outbox = Outbox()
    sessions = Sessions(FailingMark(store), sent_mark=True)  # type: ignore[arg-type]
    result = sessions.run(KEY, "e", count, None, sender=outbox)
    assert result.sent and result.send_error is None
    assert outbox.sent == [(KEY, ("count is 1",))]


def test_concurrent_redeliveries_past_resend_after_resend_once(store: Store) -> None:
    clock = Clock()
    sessions = Sessions(store, clock=clock, sent_mark=True, resend_after=10)

    def crash(key: ConversationKey, replies: Sequence[Any]) -> None:
        raise ConnectionError("process died while sending")

    sessions.run(KEY, "e", count, None, sender=crash)
    clock.now += 11

    both_loaded = threading.Barrier(2, timeout=10)

    class LoadTogether(StoreWrapper):
        def load(self, key: ConversationKey, event_sk: str | None, **kw: Any) -> Snapshot:
            snap = self.inner.load(key, event_sk, **kw)
            both_loaded.wait()  # both redeliveries saw the unsent outbox
            return snap

    racing = Sessions(LoadTogether(store), clock=clock, sent_mark=True, resend_after=10)  # type: ignore[arg-type]
    outbox = Outbox()
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: racing.run(KEY, "e", count, None, sender=outbox), [1, 2]))
    assert all(r.duplicate for r in results)
    assert outbox.sent == [(KEY, ("count is 1",))]
    assert sorted(r.sent for r in results) == [False, True]


# -- 8. export says what it includes -------------------------------------------------------------


def test_export_marks_expired_conversations(store: Store) -> None:
    clock = Clock()
    sessions = Sessions(store, clock=clock, idle_ttl=3600, event_ttl=600)
    sessions.run(KEY, "a", count, None)
    clock.now += 1800
    sessions.run(DM, "b", count, None)
    clock.now += 1801  # KEY's conversation expired, DM's is live
    exported = sessions.export(KEY.user_key)
    by_channel = {c["channel"]: c for c in exported["conversations"]}
    assert by_channel[KEY.channel]["expired"] and not by_channel[DM.channel]["expired"]
    assert all(e["expired"] for e in exported["events"])
    assert [c.key.channel for c in sessions.conversations(KEY.user_key)] == [DM.channel]


# -- no lost update when an item is removed and recreated between a load and its commit ----------


def remove_item(store: Store, key: ConversationKey) -> None:
    """What DynamoDB's TTL sweep does to an expired conversation item."""
    if isinstance(store, DynamoDBStore):
        store.client.delete_item(
            TableName=store.table, Key={"pk": {"S": key.pk}, "sk": {"S": key.sk}}
        )
    else:
        assert isinstance(store, SQLiteStore)
        store._conn().execute("DELETE FROM items WHERE pk = ? AND sk = ?", (key.pk, key.sk))


def test_a_conversation_recreated_during_a_delete_is_not_overwritten(store: Store) -> None:
    """Found by the interleaving model: a turn loads the pre-delete state (version 1), the
    delete removes it, another genuine event recreates the conversation at version 1, and
    the first turn's commit must not take that version for the one it read."""
    clock = Clock()
    sessions = Sessions(store, clock=clock)
    sessions.run(KEY, "before", count, None, event_time=clock.now)
    clock.now += 10
    stone = Tombstone(generation=int(clock.now * 1000), expires_at=int(clock.now) + 3600)
    tombstone_only(store, KEY.user_key, stone)
    after = clock.now + 1
    raced: list[bool] = []

    def racing(state: dict[str, Any], event: Any) -> Any:
        if not raced:
            raced.append(True)
            store.delete_user(KEY.user_key, tombstone=stone)  # the delete goes on
            recreated = sessions.run(KEY, "other", count, None, event_time=after)
            assert recreated.state == {"n": 1} and recreated.version == 1
        return count(state, event)

    result = sessions.run(KEY, "first", racing, None, event_time=after)
    assert result.attempts == 2 and result.state == {"n": 2}
    conversation = sessions.get(KEY)
    assert conversation is not None and conversation.state == {"n": 2}


def test_a_conversation_recreated_after_a_ttl_sweep_is_not_overwritten(store: Store) -> None:
    clock = Clock()
    sessions = Sessions(store, clock=clock, idle_ttl=3600)
    sessions.run(KEY, "old", count, None)  # version 1, expires in an hour
    clock.now += 7200
    raced: list[bool] = []

    def racing(state: dict[str, Any], event: Any) -> Any:
        if not raced:
            raced.append(True)
            remove_item(store, KEY)  # the TTL sweep
            clock.now += 1
            assert sessions.run(KEY, "other", count, None).version == 1
        return count(state, event)

    result = sessions.run(KEY, "first", racing, None)
    assert result.attempts == 2 and result.state == {"n": 2}
