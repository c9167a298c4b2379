"""The guarantees in every scope, on every store (SQLite, moto, DynamoDB Local): each event
applied once, no lost update, dead letters, deletes final; and a turn over two scopes (a
channel's state and each user's) committed atomically under concurrent writers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from sessions import BusyError, ConversationKey, TurnError
from sessions.store import Store
from tests.contract.sealing import Sessions

BASE = ConversationKey.slack(team="T0001", channel="C0001", user="U0001")
SCOPED = {
    "conversation": BASE.scoped("conversation", "bot"),
    "channel": BASE.scoped("channel", "bot"),
    "user": BASE.scoped("user", "bot"),
    "messenger-channel": ConversationKey.messenger(page="100", psid="200").scoped("channel", "bot"),
    "messenger-user": ConversationKey.messenger(page="100", psid="200").scoped("user", "bot"),
    "no-namespace": BASE,
}


def count(state: dict[str, Any], event: Any) -> tuple[dict[str, Any], list[str], None]:
    n = state.get("n", 0) + 1
    return {"n": n}, [f"count is {n}"], None


def both(state: tuple[Any, Any], event: Any) -> tuple[tuple[Any, Any], list[str], None]:
    """A turn over two scopes: the channel's tally and the user's own count."""
    channel, mine = state
    channel = {"n": (channel or {}).get("n", 0) + 1}
    mine = {"n": (mine or {}).get("n", 0) + 1}
    return (channel, mine), [f"{channel['n']} / {mine['n']}"], None


def keep_going(sessions: Any, *args: Any, **kwargs: Any) -> Any:
    while True:  # the platform redelivers after a 5xx: same event id
        try:
            return sessions.run(*args, **kwargs)
        except BusyError:
            continue


def test_the_keys_of_each_scope_are_apart() -> None:
    items = {(key.pk, key.sk) for key in SCOPED.values()}
    assert len(items) == len(SCOPED)
    other = BASE.scoped("channel", "other")
    assert (other.pk, other.sk) not in items
    # Everyone in the channel shares one item; a user's user-scope item is theirs everywhere.
    bob = ConversationKey.slack(team="T0001", channel="C0001", user="U0002")
    assert (bob.scoped("channel", "bot").pk, bob.scoped("channel", "bot").sk) == (
        SCOPED["channel"].pk,
        SCOPED["channel"].sk,
    )
    elsewhere = ConversationKey.slack(team="T0001", channel="C0009", user="U0001")
    assert elsewhere.scoped("user", "bot").sk == SCOPED["user"].sk
    assert SCOPED["channel"].pk != BASE.pk  # outside every user's partition


@pytest.mark.parametrize("scope", sorted(SCOPED))
def test_every_scope_applies_each_event_once_and_loses_no_update(store: Store, scope: str) -> None:
    key = SCOPED[scope]
    sessions = Sessions(store, max_attempts=40, backoff=0.002, max_backoff=0.05)

    def worker(w: int) -> None:
        for i in range(10):
            for _ in range(2):  # every event delivered twice
                keep_going(sessions, key, f"ev-{w}-{i}", count, None)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(worker, range(4)))
    conversation = sessions.get(key)
    assert conversation is not None and conversation.state == {"n": 40}
    assert conversation.version == 40


@pytest.mark.parametrize("scope", sorted(SCOPED))
def test_every_scope_dead_letters_a_failing_turn_once(store: Store, scope: str) -> None:
    key = SCOPED[scope]
    sessions = Sessions(store)
    sessions.run(key, "ok", count, None)

    def broken(state: Any, event: Any) -> Any:
        raise ValueError("bug")

    with pytest.raises(TurnError) as raised:
        sessions.run(key, "bad", broken, None, dead_letter={"replay": 1})
    assert raised.value.recorded
    again = sessions.run(key, "bad", broken, None)
    assert again.duplicate and again.failed
    conversation = sessions.get(key)
    assert conversation is not None and conversation.state == {"n": 1}


def test_a_user_delete_removes_the_users_scopes_and_leaves_the_channels(store: Store) -> None:
    sessions = Sessions(store)
    for scope in ("conversation", "user", "channel", "no-namespace"):
        sessions.run(SCOPED[scope], f"ev-{scope}", count, None, event_time=1_700_000_000.0)
    sessions.delete_user(BASE.user_key)
    assert sessions.get(SCOPED["conversation"]) is None
    assert sessions.get(SCOPED["user"]) is None
    assert sessions.get(SCOPED["no-namespace"]) is None
    assert sessions.get(SCOPED["channel"]) is not None  # the channel's: its forget turn's job
    # A late redelivery of an event from before the delete stores nothing in the user's scopes.
    late = sessions.run(SCOPED["user"], "ev-user", count, None, event_time=1_700_000_000.0)
    assert late.ignored and sessions.get(SCOPED["user"]) is None


def test_a_turn_over_two_scopes_commits_both_or_neither(store: Store) -> None:
    """Eight users of one channel, each event delivered twice: the channel's tally counts
    every event once, and each user's own count their events once."""
    sessions = Sessions(store, max_attempts=60, backoff=0.002, max_backoff=0.05)
    users = [f"U{n:04d}" for n in range(8)]

    def worker(user: str) -> None:
        key = ConversationKey.slack(team="T0001", channel="C0001", user=user)
        channel, mine = key.scoped("channel", "bot"), key.scoped("conversation", "bot")
        for i in range(5):
            for _ in range(2):
                keep_going(sessions, channel, f"{user}-{i}", both, None, scopes=[mine])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, users))
    channel = sessions.get(SCOPED["channel"])
    assert channel is not None and channel.state == {"n": 40} and channel.version == 40
    for user in users:
        key = ConversationKey.slack(team="T0001", channel="C0001", user=user)
        mine = sessions.get(key.scoped("conversation", "bot"))
        assert mine is not None and mine.state == {"n": 5} and mine.version == 5


def test_a_lost_race_on_the_second_scope_writes_neither(store: Store) -> None:
    """The other scope moves between the turn's read and its commit: the commit fails as a
    whole (the channel's state and the event's record stay unwritten), and the re-run
    sees both scopes' new states."""
    sessions = Sessions(store, max_attempts=5, backoff=0.0, sleep=lambda _: None)
    channel, mine = SCOPED["channel"], SCOPED["conversation"]
    sessions.run(mine, "seed", count, None)
    raced = threading.Event()
    seen: list[Any] = []

    def turn(state: tuple[Any, Any], event: Any) -> Any:
        seen.append(state)
        if not raced.is_set():
            raced.set()
            sessions.run(mine, "meanwhile", count, None)  # another turn of the user's scope
        return both(state, event)

    result = sessions.run(channel, "ev", turn, None, scopes=[mine])
    assert result.attempts == 2
    assert seen[0][1] == {"n": 1} and seen[1][1] == {"n": 2}
    assert sessions.get(channel).state == {"n": 1}  # type: ignore[union-attr]
    assert sessions.get(mine).state == {"n": 3}  # type: ignore[union-attr]
    assert sessions.run(channel, "ev", turn, None, scopes=[mine]).duplicate


def test_a_failing_multi_scope_turn_writes_no_scope(store: Store) -> None:
    sessions = Sessions(store)
    channel, mine = SCOPED["channel"], SCOPED["user"]

    def wrong(state: tuple[Any, Any], event: Any) -> Any:
        return {"n": 1}, [], None  # one state for two scopes: a bot's bug

    with pytest.raises(TurnError):
        sessions.run(channel, "ev", wrong, None, scopes=[mine])
    assert sessions.get(channel) is None and sessions.get(mine) is None
