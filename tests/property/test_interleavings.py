"""Property: whatever the interleaving of deliveries, redeliveries and crashes before the
commit, the final state is each distinct event applied exactly once, and each event's replies
are handed to the sender exactly once."""

from __future__ import annotations

import tempfile
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessions import ConversationKey, Sessions
from sessions.sqlite import SQLiteStore

KEY = ConversationKey.messenger(page="100", psid="200")


class Crash(BaseException):
    """The invocation dies (a timeout, a killed container): no ``except Exception`` sees it,
    unlike a bug in the turn, which is a poison event."""


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[tuple[str, bool]], int]:
    """A shuffled list of (event id, crashes before commit) and a concurrency level."""
    events = draw(st.integers(min_value=1, max_value=12))
    plan: list[tuple[str, bool]] = []
    for e in range(events):
        copies = draw(st.integers(min_value=1, max_value=4))
        crashes = draw(st.lists(st.booleans(), min_size=copies - 1, max_size=copies - 1))
        # The platform keeps redelivering until one delivery succeeds: the last never crashes.
        plan.extend((f"m{e}", crash) for crash in [*crashes, False])
    order = draw(st.permutations(range(len(plan))))
    shuffled = [plan[i] for i in order]
    # Re-impose "the last delivery of each event succeeds" after shuffling.
    last = {event: i for i, (event, _) in enumerate(shuffled)}
    fixed = [(event, crash and last[event] != i) for i, (event, crash) in enumerate(shuffled)]
    return fixed, draw(st.sampled_from([1, 1, 2, 4]))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deliveries())
def test_each_distinct_event_applies_once(plan: tuple[list[tuple[str, bool]], int]) -> None:
    schedule, threads = plan
    sent: Counter[str] = Counter()
    lock = threading.Lock()

    def sender(key: ConversationKey, replies: Sequence[Any]) -> None:
        with lock:
            sent.update(replies)

    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "s.sqlite3")
        sessions = Sessions(store, max_attempts=200, backoff=0.0005, max_backoff=0.005)

        def deliver(item: tuple[str, bool]) -> None:
            event, crash = item

            def turn(state: dict[str, Any], ev: str) -> tuple[dict[str, Any], list[str], str]:
                if crash:
                    raise Crash("lambda died before the commit")
                return {"applied": [*state.get("applied", []), ev]}, [f"reply:{ev}"], ev

            try:
                result = sessions.run(KEY, event, turn, event, sender=sender)
            except Crash:
                assert crash
                return
            assert result.response == event

        if threads == 1:
            for item in schedule:
                deliver(item)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(deliver, schedule))

        conversation = sessions.get(KEY)
        store.close()

    distinct = {event for event, _ in schedule}
    assert conversation is not None
    applied = conversation.state["applied"]
    assert sorted(applied) == sorted(distinct)
    if threads == 1:
        first_success = []
        for event, crash in schedule:
            if not crash and event not in first_success:
                first_success.append(event)
        assert applied == first_success
    assert sent == Counter(f"reply:{e}" for e in distinct)
