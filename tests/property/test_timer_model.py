"""A model test of "fire or not" for timers: random sequences of turns that set, replace,
cancel and (by a later message) cancel timers, and of scheduler deliveries of any schedule
ever made (again and again, early or late by a skewed clock, at every time resolution the
schedulers send: epoch seconds with milliseconds, whole seconds, EventBridge's ISO-8601), run
through the edges' pipeline on SQLite. A fire runs the bot's turn exactly when the model
says its timer is still the pending one of its name, and at most once."""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sessions.sqlite import SQLiteStore
from tests.contract import sealing
from tests.contract.test_timers import World, _local

names = st.sampled_from(["a", "b"])
turns = st.one_of(
    st.tuples(st.just("set"), names, st.integers(1, 3600)),
    st.tuples(st.just("cancel"), names, st.just(0)),
    st.tuples(st.just("idle"), st.just("idle"), st.just(0)),
    st.tuples(st.just("hello"), st.just(""), st.just(0)),
)
fires = st.tuples(
    st.just("fire"),
    st.integers(0, 20),  # which schedule ever made (modulo how many there are)
    st.integers(1, 3),  # delivered this many times
    st.integers(-120, 120),  # the scheduler's clock, skewed by this many seconds
    st.sampled_from(["ms", "s", "iso"]),
)


def occurrence(at: float, skew: int, resolution: str) -> Any:
    when = at + skew
    if resolution == "ms":
        return round(when, 3)
    if resolution == "s":
        return float(int(when))
    return dt.datetime.fromtimestamp(int(when), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@settings(max_examples=80, deadline=None)
@given(steps=st.lists(st.one_of(turns, fires), min_size=1, max_size=14))
def test_a_fire_runs_exactly_when_its_timer_is_pending(steps: list[tuple[Any, ...]]) -> None:
    sealing.seal(None)
    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStore(Path(folder) / "sessions.sqlite3")
        world = World(store, *_local(Path(folder)))
        # name, id, payload, due, schedule name
        made: list[tuple[str, str, dict[str, Any], float, str]] = []
        pending: dict[str, str] = {}  # the model: name -> id of the pending timer
        ran = 0
        start = time.time()
        for n, step in enumerate(steps):
            if step[0] == "fire":
                if not made:
                    continue
                name, timer_id, payload, due, schedule_name = made[step[1] % len(made)]
                expected = pending.get(name) == timer_id
                for _ in range(step[2]):
                    world.fire(payload, occurrence(due, step[3], step[4]))
                world.scheduler.inner.delete(schedule_name)  # a one-time schedule, once run
                if expected:
                    del pending[name]
                    ran += 1
            else:
                kind, name, after = step
                text = {"set": f"set {name} {after}", "cancel": f"cancel {name}"}.get(kind, kind)
                before = set(world.timers())
                world.say(text, f"ev-{n}", at=start + n)
                pending.pop("idle", None)  # any message of the user cancels it
                if kind == "cancel":
                    pending.pop(name, None)
                table = world.timers()
                for timer_name in set(table) - before | {
                    t for t in table if table[t]["id"] != pending.get(t)
                }:
                    entry = table[timer_name]
                    if pending.get(timer_name) != entry["id"]:
                        schedule = [
                            s
                            for s in world.scheduler.pending()
                            if world.payload(s.name)["sessions_deferred"]["delivery"]["message"][
                                "value"
                            ]
                            == entry["id"]
                        ]
                        assert len(schedule) == 1
                        payload = world.payload(schedule[0].name)
                        made.append(
                            (timer_name, entry["id"], payload, entry["due"], schedule[0].name)
                        )
                        pending[timer_name] = entry["id"]
            # The stored table is the model, and so are the schedules.
            assert {k: v["id"] for k, v in world.timers().items()} == pending
            assert len(world.scheduler.pending()) == len(pending)
        fired = (world.state() or {}).get("fired", [])
        assert len(fired) == ran
        assert sum(1 for kind, _ in world.platform.sent if kind == "timer") == ran
        store.close()
