"""The five guarantees of the turn, proved on every store (SQLite, moto, DynamoDB Local)."""

from __future__ import annotations

import base64
import os
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from sessions import (
    BusyError,
    ConversationKey,
    InvalidKeyError,
    StateTooLargeError,
    TurnError,
    codec,
)
from sessions.store import Store
from tests.contract.sealing import Sessions

KEY = ConversationKey.slack(team="T0001", channel="C0001", user="U0001")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Outbox:
    """A sender that records what it was handed, thread-safely."""

    def __init__(self) -> None:
        self.sent: list[tuple[ConversationKey, tuple[Any, ...]]] = []
        self.lock = threading.Lock()

    def __call__(self, key: ConversationKey, replies: Sequence[Any]) -> None:
        with self.lock:
            self.sent.append((key, tuple(replies)))


def count(state: dict[str, Any], event: Any) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    n = state.get("n", 0) + 1
    return {"n": n}, [f"count is {n}"], {"text": f"count is {n}"}


def snapshot(store: Store, key: ConversationKey = KEY) -> list[tuple[str, Any]]:
    return store.user_items(key.user_key)


def test_concurrent_turns_lose_no_update(store: Store) -> None:
    sessions = Sessions(store, max_attempts=40, backoff=0.002, max_backoff=0.05)
    busy = 0
    lock = threading.Lock()

    def worker(w: int) -> None:
        nonlocal busy
        for i in range(50):
            while True:  # the platform redelivers after a 5xx: same event id
                try:
                    sessions.run(KEY, f"ev-{w}-{i}", count, None)
                    break
                except BusyError:
                    with lock:
                        busy += 1

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(8)))
    conversation = sessions.get(KEY)
    assert conversation is not None
    assert conversation.state == {"n": 400}
    assert conversation.version == 400


def test_duplicate_changes_state_once_and_sends_once(store: Store) -> None:
    outbox = Outbox()
    sessions = Sessions(store)
    gate = threading.Barrier(2, timeout=10)
    calls = 0
    lock = threading.Lock()

    def turn(state: dict[str, Any], event: Any) -> tuple[dict[str, Any], list[str], str]:
        nonlocal calls
        with lock:
            calls += 1
            first_two = calls <= 2
        if first_two:
            gate.wait()  # both concurrent deliveries have read before either commits
        n = state.get("n", 0) + 1
        return {"n": n}, [f"reply {n}"], f"response {uuid.uuid4()}"

    with ThreadPoolExecutor(2) as pool:
        concurrent = list(
            pool.map(lambda _: sessions.run(KEY, "Ev1", turn, None, sender=outbox), range(2))
        )
    later = [sessions.run(KEY, "Ev1", turn, None, sender=outbox) for _ in range(2)]
    results = concurrent + later

    firsts = [r for r in results if not r.duplicate]
    assert len(firsts) == 1
    assert {r.response for r in results} == {firsts[0].response}
    assert outbox.sent == [(KEY, ("reply 1",))]
    conversation = sessions.get(KEY)
    assert conversation is not None and conversation.state == {"n": 1}
    assert conversation.version == 1


def test_turn_that_raises_writes_no_state_and_is_dead_lettered_once(store: Store) -> None:
    sessions = Sessions(store)
    sessions.run(KEY, "before", count, None)
    state_before = sessions.get(KEY)
    calls = 0

    def broken(state: Any, event: Any) -> Any:
        nonlocal calls
        calls += 1
        raise RuntimeError("bot bug")

    with pytest.raises(TurnError) as caught:
        sessions.run(KEY, "Ev2", broken, None, dead_letter={"replay": "me"})
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert caught.value.recorded
    assert sessions.get(KEY) == state_before  # no state change
    [(sk, letter)] = sessions.dead_letters(KEY.user_key)
    assert sk == KEY.event_sk("Ev2")
    assert letter.error == "TurnError: turn failed: RuntimeError: bot bug"

    # Every redelivery is a duplicate of the dead letter: the bot is not run again.
    again = sessions.run(KEY, "Ev2", broken, None)
    assert again.duplicate and again.failed and again.error == letter.error
    assert calls == 1

    # A replay (the bug fixed) applies the event once and replaces the dead letter.
    replayed = sessions.run(KEY, "Ev2", count, None, retry_failed=True)
    assert not replayed.duplicate and replayed.state == {"n": 2}
    assert sessions.dead_letters(KEY.user_key) == []
    assert sessions.run(KEY, "Ev2", count, None, retry_failed=True).duplicate


def test_a_replay_payload_is_made_only_when_the_turn_fails(store: Store) -> None:
    """The edges hand the runner a function that serialises their event: a turn that
    commits never calls it; a failed one keeps what it made."""
    sessions = Sessions(store)
    made: list[str] = []

    def payload(name: str) -> Any:
        def make() -> dict[str, str]:
            made.append(name)
            return {"replay": name}

        return make

    sessions.run(KEY, "fine", count, None, dead_letter=payload("fine"))
    assert made == []

    def broken(state: Any, event: Any) -> Any:
        raise RuntimeError("bot bug")

    with pytest.raises(TurnError):
        sessions.run(KEY, "bad", broken, None, dead_letter=payload("bad"))
    assert made == ["bad"]
    [(_sk, letter)] = sessions.dead_letters(KEY.user_key)
    assert letter.payload is not None and codec.decode(letter.payload) == {"replay": "bad"}


def test_expired_conversation_reads_as_new(store: Store) -> None:
    clock = Clock()
    sessions = Sessions(store, clock=clock, idle_ttl=3600)
    sessions.run(KEY, "a", count, None)
    sessions.run(KEY, "b", count, None)
    assert sessions.get(KEY) is not None

    clock.now += 3601  # past expires_at, before DynamoDB's TTL sweeper would delete it
    assert sessions.get(KEY) is None
    assert sessions.conversations(KEY.user_key) == []
    result = sessions.run(KEY, "c", count, None)
    assert result.state == {"n": 1}


def test_expired_event_record_no_longer_deduplicates(store: Store) -> None:
    clock = Clock()
    sessions = Sessions(store, clock=clock, event_ttl=600, response_ttl=60)
    first = sessions.run(KEY, "e", count, None)
    clock.now += 61
    again = sessions.run(KEY, "e", count, None)
    assert again.duplicate and again.response is None  # id kept, response no longer served
    assert first.response == {"text": "count is 1"}
    clock.now += 600
    late = sessions.run(KEY, "e", count, None)
    assert not late.duplicate and late.state == {"n": 2}


@pytest.mark.parametrize(
    "parts",
    [
        {"team": "T1#U2", "channel": "C1", "user": "U1"},
        {"team": "T1", "channel": "", "user": "U1"},
        {"team": "T1", "channel": "C1", "user": "U" * 500},
        {"team": "T1", "channel": "C1", "user": "ü1"},
        {"team": "T1", "channel": "c1", "user": "U1"},
    ],
)
def test_invalid_keys_are_rejected(store: Store, parts: dict[str, str]) -> None:
    Sessions(store).run(KEY, "seed", count, None)
    before = snapshot(store)
    with pytest.raises(InvalidKeyError):
        ConversationKey.slack(**parts)
    assert snapshot(store) == before


def test_invalid_idempotency_key_is_rejected(store: Store) -> None:
    sessions = Sessions(store)
    with pytest.raises(InvalidKeyError):
        sessions.run(KEY, "", count, None)
    with pytest.raises(InvalidKeyError):
        sessions.run(KEY, "x" * 2000, count, None)
    assert snapshot(store) == []


def test_oversized_state_fails_writes_no_state_and_is_dead_lettered(store: Store) -> None:
    sessions = Sessions(store, max_large_state=400_000)  # (the large-state mode takes more)
    sessions.run(KEY, "seed", count, None)
    before = snapshot(store)

    def bloat(state: Any, event: Any) -> Any:
        return {"blob": base64.b64encode(os.urandom(600_000)).decode()}, [], None  # 800 KB

    with pytest.raises(StateTooLargeError):
        sessions.run(KEY, "big", bloat, None)
    after = snapshot(store)
    [(sk, letter)] = [item for item in after if item not in before]
    [(listed_sk, listed)] = sessions.dead_letters(KEY.user_key)
    # (the listing opens what encryption sealed: the error's description)
    assert sk == listed_sk == KEY.event_sk("big") and letter.failed and listed.failed
    assert listed.error is not None and listed.error.startswith("StateTooLargeError: ")
    assert sessions.get(KEY) is not None and sessions.get(KEY).state == {"n": 1}  # type: ignore[union-attr]


def test_large_compressible_state_round_trips(store: Store) -> None:
    sessions = Sessions(store)
    big = {"items": [f"todo item number {i}" for i in range(20_000)]}  # ~500 KB of JSON
    sessions.run(KEY, "big", lambda s, e: (big, [], None), None)
    conversation = sessions.get(KEY)
    assert conversation is not None and conversation.state == big


def test_chatty_conversation_item_stays_small(store: Store, request: pytest.FixtureRequest) -> None:
    # moto deep-copies the whole table on every TransactWriteItems (its rollback backup), so
    # N transactions cost O(N^2): 5,000 take ~10 minutes there. The real engines get 5,000.
    events = 500 if request.node.callspec.params["store"] == "moto" else 5000
    sessions = Sessions(store)

    def chat(state: dict[str, Any], event: int) -> tuple[dict[str, Any], list[str], str]:
        recent = ([*state.get("recent", []), f"message {event}"])[-10:]
        return {"n": state.get("n", 0) + 1, "recent": recent}, [], "ok"

    for i in range(events):
        sessions.run(KEY, f"m{i}", chat, i)
    snap = store.load(KEY, None)
    assert snap.state is not None
    assert snap.state.version == events
    # The conversation item holds the state only: event records live beside it.
    assert len(snap.state.blob) < 1024, len(snap.state.blob)


def test_deleted_users_late_redelivery_stores_nothing(store: Store) -> None:
    clock = Clock()
    sessions = Sessions(store, clock=clock)
    other = ConversationKey.slack(team="T0001", channel="C0001", user="U0002")
    sessions.run(KEY, "old", count, None, event_time=clock.now)
    sessions.run(
        KEY.__class__.slack(team="T0001", channel="D0001", user="U0001"), "dm", count, None
    )
    sessions.run(other, "theirs", count, None)
    event_time = clock.now

    clock.now += 30
    deleted = sessions.delete_user(KEY.user_key)
    assert deleted == 4  # two conversations and their two event records
    left = snapshot(store)
    assert [sk for sk, _ in left] == ["#tombstone"]

    clock.now += 60
    late = sessions.run(KEY, "old", count, None, event_time=event_time)
    assert late.ignored
    assert [sk for sk, _ in snapshot(store)] == ["#tombstone"]
    # Other users are untouched, and the user can come back with new events.
    other_view = sessions.get(other)
    assert other_view is not None and other_view.state == {"n": 1}
    fresh = sessions.run(KEY, "new", count, None, event_time=clock.now)
    assert fresh.state == {"n": 1}


def test_list_and_export_a_user(store: Store) -> None:
    sessions = Sessions(store)
    dm = ConversationKey.slack(team="T0001", channel="D0001", user="U0001")
    sessions.run(KEY, "a", count, None)
    sessions.run(dm, "b", count, None)
    sessions.run(dm, "c", count, None)
    listed = {c.key.channel: c.state for c in sessions.conversations(KEY.user_key)}
    assert listed == {"C0001": {"n": 1}, "D0001": {"n": 2}}
    exported = sessions.export(KEY.user_key)
    assert exported["user"] == "slack#T0001#U0001"
    assert [c["state"] for c in exported["conversations"]] == [{"n": 1}, {"n": 2}]
    assert len(exported["events"]) == 3
    assert exported["tombstone"] is None


def test_enterprise_id_is_kept(store: Store) -> None:
    sessions = Sessions(store)
    key = ConversationKey.slack(team="T0001", channel="C0001", user="U0001", enterprise="E0001")
    sessions.run(key, "a", count, None)
    [conversation] = sessions.conversations(key.user_key)
    assert conversation.key.enterprise == "E0001"


def test_send_failure_after_commit_keeps_state_and_is_not_repeated(store: Store) -> None:
    clock = Clock()
    sessions = Sessions(store, clock=clock)
    failing_calls = 0

    def failing(key: ConversationKey, replies: Sequence[Any]) -> None:
        nonlocal failing_calls
        failing_calls += 1
        raise ConnectionError("Slack is down")

    result = sessions.run(KEY, "e", count, None, sender=failing)
    assert result.send_error is not None and not result.sent
    clock.now += 60
    outbox = Outbox()
    again = sessions.run(KEY, "e", count, None, sender=outbox)
    assert again.duplicate and outbox.sent == []  # at most once
    assert failing_calls == 1


def test_sent_mark_mode_resends_after_a_crash_between_commit_and_send(store: Store) -> None:
    clock = Clock()
    sessions = Sessions(store, clock=clock, sent_mark=True, resend_after=10)

    def crash(key: ConversationKey, replies: Sequence[Any]) -> None:
        raise ConnectionError("process died while sending")

    sessions.run(KEY, "e", count, None, sender=crash)
    outbox = Outbox()
    early = sessions.run(KEY, "e", count, None, sender=outbox)
    assert early.duplicate and outbox.sent == []  # maybe still sending: do not double
    clock.now += 11
    late = sessions.run(KEY, "e", count, None, sender=outbox)
    assert late.duplicate and late.sent
    assert outbox.sent == [(KEY, ("count is 1",))]
    # Marked sent: a further redelivery sends nothing.
    sessions.run(KEY, "e", count, None, sender=outbox)
    assert len(outbox.sent) == 1
    conversation = sessions.get(KEY)
    assert conversation is not None and conversation.state == {"n": 1}
