"""What the whole-product model (``tests/property/test_product_model.py``) found in the
stores, on every store: a multi-scope turn whose first scope is a Slack channel (outside the
user's partition) and whose other scope is in the user's partition, for an event at the very
time of the user's delete (Slack's whole seconds make that the usual case within the second
after a delete). The event may have happened before the delete, so it must be ignored, as it
is for a turn of the user's own partition: nothing may be written in the deleted partition.
DynamoDB refuses the commit (its transaction checks the user's tombstone when it creates an
item there); the SQLite store checks the same condition."""

from __future__ import annotations

from typing import Any

from sessions import ConversationKey, UserKey
from sessions.store import Store, Tombstone
from tests.contract.sealing import Sessions


def both(state: tuple[Any, Any], event: Any) -> tuple[tuple[Any, Any], list[str], None]:
    channel, mine = state
    return ({"n": (channel or {}).get("n", 0) + 1}, {"n": (mine or {}).get("n", 0) + 1}), [], None


def test_a_turn_at_the_time_of_a_delete_writes_nothing_in_the_deleted_partition(
    store: Store,
) -> None:
    sessions = Sessions(store)
    user = UserKey("slack", "T0001", "U0001")
    key = ConversationKey.slack(team="T0001", channel="C0001", user="U0001")
    channel, mine = key.scoped("channel", "bot"), key.scoped("conversation", "bot")
    sessions.delete_user(user)
    (stone,) = [item for _, item in store.user_items(user) if isinstance(item, Tombstone)]
    second = float(stone.generation // 1000)  # a Slack event of the delete's own second
    result = sessions.run(channel, "ev-1", both, None, event_time=second, scopes=(mine,))
    left = [sk for sk, item in store.user_items(user) if not isinstance(item, Tombstone)]
    assert left == []
    assert result.ignored
    assert sessions.get(channel) is None
