"""Erasing a workspace (an uninstalled app), on every store: every partition of its users and
channels found by the workspace's index, never a scan, each deleted with a tombstone so that
a late event recreates nothing; another workspace untouched."""

from __future__ import annotations

from typing import Any

from sessions import ConversationKey
from sessions.store import EventRecord, Store, StoredState
from tests.contract.sealing import Sessions

WHEN = 1_700_000_000.0


def count(state: dict[str, Any], event: Any) -> tuple[dict[str, Any], list[str], None]:
    return {"n": state.get("n", 0) + 1}, [], None


def test_a_workspace_is_erased_partition_by_partition(store: Store) -> None:
    sessions = Sessions(store)
    keys = {
        "alice": ConversationKey.slack(team="T1", channel="C1", user="U1").scoped(
            "conversation", "bot"
        ),
        "bob": ConversationKey.slack(team="T1", channel="D2", user="U2").scoped("user", "bot"),
        "channel": ConversationKey.slack(team="T1", channel="C1", user="U1").scoped(
            "channel", "bot"
        ),
        "legacy": ConversationKey.slack(team="T1", channel="C1", user="U3"),
        "other": ConversationKey.slack(team="T2", channel="C1", user="U1").scoped(
            "conversation", "bot"
        ),
    }
    for name, key in keys.items():
        sessions.run(key, f"ev-{name}", count, None, event_time=WHEN)
    partitions = store.workspace_partitions("slack", "T1")
    assert sorted(partitions) == sorted({keys[n].pk for n in ("alice", "bob", "channel", "legacy")})
    assert store.workspace_partitions("slack", "T2") == [keys["other"].pk]

    assert sessions.erase_workspace("slack", "T1") >= 4
    for name in ("alice", "bob", "channel", "legacy"):
        assert sessions.get(keys[name]) is None, name
        left = [
            sk
            for sk, item in store.user_items(_partition(keys[name]))
            if isinstance(item, StoredState | EventRecord)
        ]
        assert left == [], (name, left)
    other = sessions.get(keys["other"])
    assert other is not None and other.state == {"n": 1}
    # A late redelivery of an event from before the erase recreates nothing, even of the
    # channel's shared state.
    for name in ("alice", "channel"):
        late = sessions.run(keys[name], f"late-{name}", count, None, event_time=WHEN + 1)
        assert late.ignored, name
        assert sessions.get(keys[name]) is None


def _partition(key: ConversationKey) -> Any:
    from sessions.keys import partition_from_pk

    return partition_from_pk(key.pk)
