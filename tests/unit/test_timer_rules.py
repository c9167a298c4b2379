"""The pure rules of timers (``bot.timers``) and ``bot.testing``'s clock: what a turn's
Timer and CancelTimer do to the pending table, what a fire and a user message do, and the
checks a bot's Timer gets."""

from __future__ import annotations

from typing import Any

import pytest

from bot import Bot, BotTypeError, CancelTimer, Effect, Message, Outcome, Timer, effect, timers
from bot.testing import Conversation
from examples.todo import TodoBot


def test_a_timer_id_is_the_same_on_every_run_of_the_event() -> None:
    effects = [Timer("a", after=60, args={"x": 1})]
    one, changes = timers.after_turn({}, effects, idempotency_key="ev-1", now=1000.0)
    two, _ = timers.after_turn({}, effects, idempotency_key="ev-1", now=1000.0)
    other, _ = timers.after_turn({}, effects, idempotency_key="ev-2", now=1000.0)
    assert one == two and one["a"]["id"] != other["a"]["id"]
    assert one["a"]["due"] == 1060.0 and one["a"]["args"] == {"x": 1}
    assert [e["id"] for e in changes.scheduled] == [one["a"]["id"]] and changes.cancelled == ()


def test_replace_cancel_and_set_again_in_one_turn() -> None:
    table, _ = timers.after_turn({}, [Timer("a", after=60)], idempotency_key="e1", now=0)
    old = table["a"]["id"]
    effects = [Timer("a", after=10), CancelTimer("a"), Timer("a", after=20), Timer("b", at=5)]
    table, changes = timers.after_turn(table, effects, idempotency_key="e2", now=100)
    assert table["a"]["due"] == 120 and table["b"]["due"] == 5
    assert changes.cancelled == (old,)
    assert {e["name"] for e in changes.scheduled} == {"a", "b"}  # the first "a" never left
    table, changes = timers.after_turn(table, [CancelTimer("zzz")], idempotency_key="e3", now=0)
    assert changes == timers.Changes() and set(table) == {"a", "b"}


def test_a_fire_runs_only_for_a_live_timer_and_once_per_time() -> None:
    table, _ = timers.after_turn(
        {}, [Timer("d", cron="0 9 * * *", args={"k": "v"})], idempotency_key="e", now=0
    )
    entry = table["d"]
    fire = Message(kind="timer", action="d", value=entry["id"], time=entry["due"])
    after, cancelled, message = timers.before_turn(table, fire)
    assert message is not None and message.payload == {"k": "v"} and cancelled == []
    assert after["d"]["due"] == entry["due"] + 86_400 and after["d"]["last"] == entry["due"]
    assert timers.before_turn(after, fire)[2] is None  # that time again: nothing
    stale = Message(kind="timer", action="d", value="fx-other", time=entry["due"] + 86_400)
    assert timers.before_turn(after, stale)[2] is None  # a replaced timer's fire


@pytest.mark.parametrize("kind", ["text", "command", "action", "submission"])
def test_a_user_message_cancels_cancel_on_message_timers(kind: str) -> None:
    effects = [Timer("idle", after=600, cancel_on_message=True), Timer("keep", after=600)]
    table, _ = timers.after_turn({}, effects, idempotency_key="e", now=0)
    after, cancelled, message = timers.before_turn(table, Message(kind=kind))  # type: ignore[arg-type]
    assert list(after) == ["keep"] and cancelled == [table["idle"]["id"]] and message is not None


@pytest.mark.parametrize("kind", ["effect", "user_deleted"])
def test_what_is_not_the_users_doing_cancels_nothing(kind: str) -> None:
    table, _ = timers.after_turn(
        {}, [Timer("idle", after=600, cancel_on_message=True)], idempotency_key="e", now=0
    )
    after, cancelled, _ = timers.before_turn(table, Message(kind=kind))  # type: ignore[arg-type]
    assert after == table and cancelled == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one"),
        ({"after": 1, "at": 2}, "exactly one"),
        ({"after": -1}, "not a time"),
        ({"after": float("nan")}, "not a time"),
        ({"after": True}, "not a time"),
        ({"cron": "61 * * * *"}, "outside"),
        ({"after": 1, "tz": "Nowhere/Land"}, "time zone"),
        ({"after": 1, "args": {"x": object()}}, "not JSON"),
        ({"after": 1, "args": {"x": "y" * 5000}}, "bytes"),
    ],
)
def test_a_malformed_timer_says_what_is_wrong(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(BotTypeError, match=match):
        Timer("t", **kwargs)


def test_a_name_is_1_to_64_characters() -> None:
    for name in ("", "x" * 65):
        with pytest.raises(BotTypeError, match="name"):
            Timer(name, after=1)


class Nudge(Bot[dict]):
    """Sets an idle nudge on every message; the nudge asks for an effect."""

    def turn(self, state: dict, message: Message) -> Outcome[dict]:
        if message.kind == "timer":
            return Outcome(state, ["still there?"], [Effect("note")])
        if message.kind == "effect":
            return Outcome({**state, "noted": True}, [])
        return Outcome(state, ["ok"], [Timer("nudge", after=600, cancel_on_message=True)])

    @effect("note")
    def note(self, args: Any, call: Any) -> str:
        return "noted"


def test_testing_advance_fires_due_timers_in_order() -> None:
    chat = Conversation(Nudge(), clock=lambda: 1_000_000.0)
    chat.say("hi")
    assert [t["name"] for t in chat.pending_timers] == ["nudge"]
    assert chat.advance(599) == []
    chat.say("hello again")  # cancels the first nudge, sets another
    assert chat.advance(599) == []
    assert chat.texts(chat.advance(1)) == ["still there?"]
    assert chat.pending_timers == [] and chat.state == {"noted": True}
    assert chat.clock() == 1_000_000.0 + 1199


def test_the_todo_bot_reminds_and_a_done_item_cancels_its_reminder() -> None:
    chat = Conversation(TodoBot(), platform="messenger")
    chat.say("add water the plants")
    chat.say("add call mum")
    assert chat.texts(chat.say("remind me about 1 in 10 minutes")) == [
        "OK, I'll remind you about “water the plants” in 10 minutes."
    ]
    chat.say("remind me about 2 in 2 hours")
    assert chat.texts(chat.advance(600)) == ["⏰ Reminder: “water the plants”"]
    chat.press(chat.last_buttons()[0])  # Done from the reminder
    chat.say("done 1")  # call mum, done before its reminder
    assert chat.pending_timers == []
    assert chat.advance(7200) == []
    assert "There is no item 9" in chat.texts(chat.say("remind me about 9 in 1 minute"))[0]


def test_the_standup_opens_on_its_schedule_and_closes_itself() -> None:
    import datetime as dt

    from examples.standup import bot as standup

    monday = dt.datetime(2026, 12, 7, 7, 0, tzinfo=dt.UTC).timestamp()  # 08:00 in Berlin
    alice = Conversation(standup, user="U0ALICE", conversation="C0TEAM", clock=lambda: monday)
    assert alice.texts(alice.command("/standup", "daily 09:30 Europe/Berlin")) == [
        "A standup every weekday at 09:30 (Europe/Berlin)."
    ]
    assert alice.advance(5399) == []
    assert alice.texts(alice.advance(1)) == ["Standup #1: press Answer to give yours."]
    bob = alice.as_user("U0BOB")
    bob.submit("standup:submit", {"yesterday": "x", "today": "y", "blockers": ""})
    closed = alice.texts(alice.advance(2 * 3600))
    assert closed[0] == "Standup closed: 1 answered. Summary coming." and "U0BOB" in closed[1]
    # Tuesday to Friday: a round a day, each closed; none on the weekend.
    week = alice.texts(alice.advance(4 * 86_400))
    assert [t for t in week if t.startswith("Standup #")] == [
        f"Standup #{n}: press Answer to give yours." for n in (2, 3, 4, 5)
    ]
    assert alice.advance(2 * 86_400) == []
    assert alice.texts(alice.advance(86_400))[0] == "Standup #6: press Answer to give yours."
    assert alice.texts(alice.command("/standup", "stop")) == ["No more scheduled standups here."]
    assert alice.pending_timers == []
