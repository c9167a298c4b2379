"""Where timers cross other features, on every store (SQLite, moto, DynamoDB Local), through
the edges' own pipeline with the local scheduler: a user delete (a channel's timer set by the
deleted user, a forget turn's ``CancelTimer``, a second delete after the user came back to a
warm container), a job retried after a cancel, a fire whose timer is gone, a failing
scheduler during a delete, and a turn that sets many timers. Each test is a regression test
of issue 33: it fails on the code before its fix.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot import Bot, CancelTimer, Message, Outcome, Scopes, Timer
from bot import timers as timer_rules
from bot.spec import BotSpec
from handlers.pipeline import INLINE_SCHEDULES, Deadline, Pipeline, bot_turn
from handlers.pipeline.delivery import Delivery, SlackRoute, TimerJob, dump
from handlers.pipeline.membership import Membership, marks
from handlers.pipeline.timers import TimerLoop, next_time
from sessions import ConversationKey, StoreUnavailableError, UserKey
from sessions.schedules import SQLiteScheduler, with_occurrence
from sessions.store import Store
from tests.contract.sealing import Sessions
from tests.contract.test_timers import Counting, Recorder

CANARY = "canary-7f3a: buy a pregnancy test"
ADA = UserKey("slack", "T0001", "U0001")


class Board(Bot[dict]):
    """A channel's board: ``note <text>`` keeps the user's note, ``remind <s> <text>`` a
    timer that says it back, ``watch <name>`` a timer of that name, ``many <n>`` n timers.
    On a user's delete it drops their note and cancels the timer named ``about-<user>``."""

    namespace = "board"
    scope = "channel"

    def turn(self, state: dict, message: Message) -> Outcome[dict]:
        notes = dict(state.get("notes", {}))
        if message.kind == "user_deleted":
            notes.pop(message.user or "", None)
            return Outcome({**state, "notes": notes}, [], [CancelTimer(f"about-{message.user}")])
        if message.kind == "timer":
            text = dict(message.payload or {}).get("text", "")  # type: ignore[call-overload]
            notes[message.user or ""] = f"fired {text}"
            return Outcome({**state, "notes": notes}, [f"Reminder: {text}"])
        word, _, rest = message.text.partition(" ")
        if word == "note":
            notes[message.user or ""] = rest
            return Outcome({**state, "notes": notes}, ["noted"])
        if word == "remind":
            seconds, _, text = rest.partition(" ")
            timer = Timer(f"r-{message.user}", after=float(seconds), args={"text": text})
            return Outcome(state, ["ok"], [timer])
        if word == "watch":
            return Outcome(state, ["ok"], [Timer(rest, after=600)])
        if word == "daily":
            return Outcome(state, ["ok"], [Timer(rest, cron="0 9 * * *", tz="Europe/Berlin")])
        if word == "many":
            return Outcome(state, ["ok"], [Timer(f"t{i}", after=60 + i) for i in range(int(rest))])
        return Outcome(state, ["?"])


class Desk(Bot[Any]):
    """The board over two scopes: the channel's (its timers) and each user's own in it."""

    namespace = "desk"
    scope = ("channel", "conversation")

    def turn(self, state: Scopes, message: Message) -> Outcome[Scopes]:
        if message.kind == "timer":
            text = dict(message.payload or {}).get("text", "")  # type: ignore[call-overload]
            return Outcome(state.replace(conversation={"fired": text}), [f"Reminder: {text}"])
        if message.kind == "user_deleted":
            return Outcome(state, [])
        seconds, _, text = message.text.partition(" ")[2].partition(" ")
        timer = Timer(f"r-{message.user}", after=float(seconds), args={"text": text})
        mine = state.replace(channel=state.channel or {}, conversation={"asked": True})
        return Outcome(mine, ["ok"], [timer])


class World:
    """One store, one local scheduler, and as many containers (pipelines) as asked."""

    def __init__(self, store: Store, tmp_path: Path, the_bot: Any = None) -> None:
        self.local = SQLiteScheduler(str(tmp_path / "timers.sqlite3"), next_time=next_time)
        self.scheduler = Counting(self.local)
        self.sessions = Sessions(store, scheduler=self.scheduler, max_attempts=50, backoff=0.002)
        self.spec = BotSpec.of(the_bot or Board())
        self.platform = Recorder()
        self.jobs: list[Any] = []
        self.pipeline = self.container()
        self.channel = ConversationKey.slack(team="T0001", channel="C0001", user="U0001").scoped(
            "channel", self.spec.namespace
        )
        self.events = 0

    def container(self) -> Pipeline:
        return Pipeline(
            sessions=self.sessions,
            spec=self.spec,
            platform=self.platform,
            deferrer=lambda: self,  # type: ignore[arg-type,return-value]
        )

    def submit(self, job: Any) -> None:  # the deferral: kept, run by the test
        self.jobs.append(job)

    def say(
        self,
        text: str,
        *,
        user: str = "U0001",
        at: float | None = None,
        pipeline: Pipeline | None = None,
        deadline: Deadline | None = None,
    ) -> Delivery:
        self.events += 1
        at = self.sessions.clock() if at is None else at
        key = ConversationKey.slack(team="T0001", channel="C0001", user=user)
        message = Message(text=text, platform="slack", workspace="T0001", conversation="C0001",
                          user=user, time=at)  # fmt: skip
        delivery = Delivery(key, f"Ev{self.events}", message, at, SlackRoute("event"))
        (pipeline or self.pipeline).run(delivery, deadline=deadline or Deadline())
        return delivery

    def delete(self, user: UserKey = ADA) -> tuple[int, int]:
        """``make admin delete``: the forget turns, then the user's own items."""
        done = Membership(self.sessions, self.spec).forget(user, turn=bot_turn(self.spec))
        self.sessions.delete_user(user)
        return done

    def state(self) -> Any:
        conversation = self.sessions.get(self.channel)
        return None if conversation is None else conversation.state

    def timers(self) -> dict[str, Any]:
        state = self.state()
        return timer_rules.split(state[0] if isinstance(state, list) else state)[1]

    def fire(self, payload: Any, due: float) -> None:
        self.pipeline.run_job(with_occurrence(payload, due)["sessions_deferred"])

    def close(self) -> None:
        self.local.close()


@pytest.fixture
def world(store: Store, tmp_path: Path) -> Iterator[World]:
    world = World(store, tmp_path)
    yield world
    world.close()


def test_a_deleted_users_channel_timer_never_fires_in_their_name(world: World) -> None:
    """Case 1: a timer Ada set on the channel's state, carrying her text, goes with her
    delete: out of the state, its schedule deleted, and a fire already on its way runs no turn
    and sends nothing."""
    at = world.sessions.clock()
    world.say(f"remind 600 {CANARY}", at=at)
    (schedule,) = world.local.pending()
    assert "r-U0001" in world.timers()
    assert world.delete() == (1, 0)
    assert world.timers() == {}
    assert CANARY not in json.dumps(world.state())
    assert world.local.pending() == []
    sent = len(world.platform.sent)
    world.fire(schedule.payload, at + 600)
    assert world.platform.sent[sent:] == []
    assert CANARY not in json.dumps(world.state())


def test_a_forget_turns_cancel_timer_takes_effect(world: World) -> None:
    """Case 1: the bot's own ``CancelTimer`` in its forget turn is not dropped (a timer Bob
    set about Ada, say)."""
    world.say("note hello")  # Ada writes to the channel: her mark
    world.say("watch about-U0001", user="U0002")
    world.say("watch other", user="U0002")
    assert set(world.timers()) == {"about-U0001", "other"}
    world.delete()
    assert set(world.timers()) == {"other"}
    assert len(world.local.pending()) == 1


def test_a_fire_of_a_timer_set_before_its_users_delete_runs_no_turn(world: World) -> None:
    """Case 1, the fire's own guard: a timer of Ada's that the forget turn did not cancel (it
    was written before timers recorded who set them) fires after her delete: no turn in her
    name, the timer and its schedule go."""
    at = world.sessions.clock()
    world.say(f"remind 600 {CANARY}", at=at)
    (schedule,) = world.local.pending()
    # As stored by the code before: the entry without its setter.
    stored = world.sessions.get(world.channel)
    assert stored is not None
    state, table = timer_rules.split(stored.state)
    for entry in table.values():
        entry.pop("by", None)
    world.sessions.run(
        world.channel, "rewrite", lambda _s, _m: (timer_rules.join(state, table), [], None), None
    )
    world.delete()
    assert "r-U0001" in world.timers()  # not recognisable as hers
    sent = len(world.platform.sent)
    world.fire(schedule.payload, at + 600)
    assert world.platform.sent[sent:] == []
    assert world.timers() == {}
    assert CANARY not in json.dumps(world.state())
    assert world.local.pending() == []


def test_a_fire_after_the_delete_writes_nothing_in_the_users_partition(
    store: Store, tmp_path: Path
) -> None:
    """Case 1 over two scopes: a fire of a timer Ada set before her delete (one the forget
    turn could not tell was hers, as stored before) neither runs in her name nor re-creates
    an item in her partition."""
    world = World(store, tmp_path, Desk())
    try:
        at = world.sessions.clock()
        world.say(f"remind 600 {CANARY}", at=at)
        (schedule,) = world.local.pending()
        stored = world.sessions.get(world.channel)
        assert stored is not None
        state, table = timer_rules.split(stored.state)
        for entry in table.values():
            entry.pop("by", None)
        world.sessions.run(
            world.channel,
            "rewrite",
            lambda _s, _m: (timer_rules.join(state, table), [], None),
            None,
        )
        world.delete()
        world.fire(schedule.payload, at + 600)
        assert [kind for kind, _ in world.platform.sent].count("timer") == 0
        left = world.sessions.store.user_items(ADA)
        assert CANARY not in repr(left)
        assert [sk for sk, _ in left if "desk:" in sk] == []
        assert world.local.pending() == []
    finally:
        world.close()


def test_a_second_delete_reaches_the_channel_after_the_user_came_back(world: World) -> None:
    """Case 2: Ada writes, is deleted, writes again in the same warm container (which
    remembers her first mark): the second delete must still find the channel."""
    world.say("note first")
    assert world.delete() == (1, 0)
    world.say(f"note {CANARY}", at=world.sessions.clock() + 1)
    assert CANARY in json.dumps(world.state())
    assert world.delete() == (1, 0)
    assert CANARY not in json.dumps(world.state())


def test_a_retried_timer_job_does_not_recreate_a_cancelled_schedule(world: World) -> None:
    """Case 4: the job that schedules a timer (its inline create failed) runs after the user
    cancelled it: no schedule is created."""
    delivery = world.say("watch later", user="U0002")
    (schedule,) = world.local.pending()
    (entry,) = world.timers().values()
    # The user cancels it (the state without it, committed; its schedule deleted) ...
    state, _ = timer_rules.split(world.state())
    world.sessions.run(world.channel, "cancel", lambda _s, _m: (state, [], None), None)
    world.local.delete(schedule.name)
    # ... then the retried job of the first turn arrives.
    job = TimerJob(delivery, world.channel, ({"kind": "timer_set", "timer": entry},))
    world.pipeline.run_job(dump(job))
    assert world.local.pending() == []


def test_a_fire_that_finds_no_timer_deletes_its_schedule(world: World) -> None:
    """Case 4: a schedule left behind (its delete failed) stops at its next fire, instead of
    firing (and costing a read) forever."""
    at = world.sessions.clock()
    world.say("watch gone", user="U0002", at=at)
    (schedule,) = world.local.pending()
    state, _ = timer_rules.split(world.state())
    world.sessions.run(world.channel, "drop", lambda _s, _m: (state, [], None), None)
    assert world.local.pending() != []
    world.fire(schedule.payload, at + 600)
    assert world.local.pending() == []


def test_a_recurring_schedule_whose_timer_is_gone_ends(world: World) -> None:
    """Case 4: a cron schedule left behind (its timer gone from the state) is deleted at its
    next occurrence by the local loop's fire, instead of moving on to the next day forever."""
    world.say("daily standup", user="U0002")
    (schedule,) = world.local.pending()
    state, _ = timer_rules.split(world.state())
    world.sessions.run(world.channel, "drop", lambda _s, _m: (state, [], None), None)
    loop = TimerLoop(world.local, lambda _target, payload: world.pipeline.run_job(
        payload["sessions_deferred"]))  # fmt: skip
    assert loop.fire_due(schedule.at) == 1
    assert world.local.pending() == []


class FailingPrefix(Counting):
    def delete_prefix(self, prefix: str) -> int:
        raise ConnectionError("the scheduler is unavailable")


def test_a_user_delete_does_not_ignore_schedules_it_could_not_delete(world: World) -> None:
    """Case 4: the data goes, but a delete that could not cancel the user's schedules says
    so (the admin reports it; running it again finishes), instead of reporting success."""
    sessions = Sessions(world.sessions.store, scheduler=FailingPrefix(world.local),
                        sleep=lambda _s: None)  # fmt: skip
    with pytest.raises(StoreUnavailableError):
        sessions.delete_user(ADA)


def test_a_turn_sets_at_most_fifty_timers(world: World) -> None:
    """Case 7: 51 timers in one turn is the bot's error: a dead letter, nothing scheduled."""
    world.say("many 51", user="U0002")
    assert world.local.pending() == []
    assert world.timers() == {}


def test_schedules_past_the_webhooks_budget_are_handed_to_the_deferral(world: World) -> None:
    """Case 7: a webhook makes at most INLINE_SCHEDULES scheduler calls before its ack; the
    rest are one job for the deferral, which schedules them all."""
    webhook = Deadline.webhook(60.0, 60.0)
    world.say("many 50", user="U0002", deadline=webhook)
    assert len(world.scheduler.created) == INLINE_SCHEDULES
    assert len(world.jobs) == 1
    for job in world.jobs:
        world.pipeline.run_job(job)
    assert len(world.local.pending()) == 50
    assert len(world.timers()) == 50


def test_a_membership_mark_records_the_bot_that_wrote_it(world: World) -> None:
    """Item 3: the admin CLI finds the bot whose forget turn a user's delete needs by the
    mark (sealed like every stored value, read back on every store)."""
    world.say("note hello")
    assert marks(world.sessions, ADA) == {"board": {f"{__name__}:Board"}}
