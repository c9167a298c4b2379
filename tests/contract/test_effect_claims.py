"""``Sessions.claim``, the gate that runs a bot's effect at most once, on every store."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sessions import ConversationKey
from sessions.store import Store
from tests.contract.sealing import Sessions
from tests.contract.test_guarantees import Clock

KEY = ConversationKey.slack(team="T0001", channel="D0001", user="U0001")


def test_a_token_is_claimed_once_even_by_racing_callers(store: Store) -> None:
    sessions = Sessions(store)
    assert sessions.claim(KEY, "effect:fx-1", event_time=None) is True
    assert sessions.claim(KEY, "effect:fx-1", event_time=None) is False
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda _: sessions.claim(KEY, "effect:fx-2", event_time=None),
                            range(8)))  # fmt: skip
    assert won.count(True) == 1
    other = ConversationKey.slack(team="T0001", channel="D0002", user="U0001")
    assert sessions.claim(other, "effect:fx-1", event_time=None) is True  # per conversation


def test_a_claim_expires_with_the_event_ttl(store: Store) -> None:
    clock = Clock()  # in the future: DynamoDB Local sweeps items whose TTL has passed
    sessions = Sessions(store, clock=clock, event_ttl=60)
    assert sessions.claim(KEY, "effect:fx-1", event_time=None)
    clock.now += 61
    assert sessions.claim(KEY, "effect:fx-1", event_time=None)


def test_a_user_deleted_after_the_event_blocks_its_effect(store: Store) -> None:
    clock = Clock()  # in the future: DynamoDB Local sweeps items whose TTL has passed
    sessions = Sessions(store, clock=clock)
    sessions.delete_user(KEY.user_key)
    before, after = clock.now - 5, clock.now + 5
    assert sessions.claim(KEY, "effect:fx-old", event_time=before) is False
    # An event after the delete claims through the tombstone (the commit checks it).
    assert sessions.claim(KEY, "effect:fx-new", event_time=after) is True
    assert sessions.claim(KEY, "effect:fx-new", event_time=after) is False
