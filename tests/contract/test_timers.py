"""Timers on every store (SQLite, moto, DynamoDB Local) with the local scheduler, and on moto's
EventBridge Scheduler: created once however often the origin event is redelivered, fired once
however often the scheduler delivers, cancelled by name, by a later message and by a user
delete, and a fire for a deleted user stores nothing.

The turns run through the edges' own pipeline (``handlers.pipeline``); a fire is what the
scheduler hands our function: the schedule's payload with its due time filled in.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from bot import Bot, CancelTimer, Message, Outcome, Timer
from bot import timers as timer_rules
from bot.replies import AnyReply
from bot.spec import BotSpec
from handlers.pipeline import Answer, Deadline, Pipeline
from handlers.pipeline.delivery import Delivery, SlackRoute
from handlers.pipeline.timers import next_time
from sessions import ConversationKey, UserKey
from sessions.schedules import (
    OCCURRENCE,
    Schedule,
    SQLiteScheduler,
    partition_prefix,
    with_occurrence,
)
from sessions.store import Store
from tests.contract.sealing import Sessions

KEY = ConversationKey.slack(team="T0001", channel="D0001", user="U0001")


class Alarms(Bot[dict]):
    """``set <name> <seconds>``, ``idle`` (a cancel_on_message timer), ``daily`` (a cron),
    ``cancel <name>``; any other text is counted. A fire counts and says its name and args."""

    namespace = "alarms"

    def turn(self, state: dict, message: Message) -> Outcome[dict]:
        fired = list(state.get("fired", []))
        if message.kind == "timer":
            payload = dict(message.payload or {})  # type: ignore[call-overload]
            fired.append([message.action, message.time])
            return Outcome({**state, "fired": fired}, [f"{message.action} {payload}"])
        words = message.text.split()
        said = state.get("said", 0) + 1
        new = {**state, "said": said}
        if words[:1] == ["set"]:
            timer = Timer(words[1], after=float(words[2]), args={"n": said})
            return Outcome(new, ["set"], [timer])
        if words[:1] == ["idle"]:
            return Outcome(new, ["idle"], [Timer("idle", after=60, cancel_on_message=True)])
        if words[:1] == ["daily"]:
            return Outcome(new, ["daily"], [Timer("daily", cron="0 9 * * *", tz="Europe/Berlin")])
        if words[:1] == ["cancel"]:
            return Outcome(new, ["cancelled"], [CancelTimer(words[1])])
        return Outcome(new, [f"said {said}"])


class Recorder:
    """The platform adapter: records what each delivery sent."""

    turn_budget = 2.0

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[str]]] = []
        self._lock = threading.Lock()

    def deliver(
        self,
        delivery: Delivery,
        replies: Sequence[AnyReply],
        answer: Answer | None,
        deadline: Deadline,
    ) -> None:
        with self._lock:
            self.sent.append((delivery.message.kind, [str(getattr(r, "text", r)) for r in replies]))

    def apologise(self, delivery: Delivery, answer: Answer | None, deadline: Deadline) -> None:
        pass


class Counting:
    """A scheduler wrapper counting creates and deletes."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.created: list[str] = []
        self.deleted: list[str] = []
        self._lock = threading.Lock()

    def create(self, schedule: Schedule) -> None:
        with self._lock:
            self.created.append(schedule.name)
        self.inner.create(schedule)

    def delete(self, name: str) -> None:
        with self._lock:
            self.deleted.append(name)
        self.inner.delete(name)

    def delete_prefix(self, prefix: str) -> int:
        return int(self.inner.delete_prefix(prefix))

    def pending(self, prefix: str = "") -> list[Schedule]:
        return list(self.inner.pending(prefix))


class World:
    def __init__(self, store: Store, scheduler: Any, payload_of: Any) -> None:
        self.scheduler = Counting(scheduler)
        self.sessions = Sessions(store, scheduler=self.scheduler, max_attempts=50, backoff=0.002)
        self.platform = Recorder()
        self.jobs: list[Any] = []
        self.pipeline = Pipeline(
            sessions=self.sessions,
            spec=BotSpec.of(Alarms()),
            platform=self.platform,
            deferrer=lambda: self,  # type: ignore[arg-type,return-value]
        )
        self._payload_of = payload_of
        self.stored = KEY.scoped("conversation", "alarms")

    def submit(self, job: Any) -> None:  # the deferral: kept, run by the test
        self.jobs.append(job)

    def say(self, text: str, event: str, *, at: float | None = None) -> None:
        at = time.time() if at is None else at
        message = Message(text=text, platform="slack", workspace="T0001", conversation="D0001",
                          user="U0001", time=at)  # fmt: skip
        delivery = Delivery(KEY, event, message, at, SlackRoute("event"))
        self.pipeline.run(delivery)

    def schedules(self) -> list[str]:
        return [s.name for s in self.scheduler.pending(partition_prefix("slack", "T0001", KEY.pk))]

    def payload(self, name: str) -> dict[str, Any]:
        """What the scheduler would hand our function for schedule ``name``."""
        return dict(self._payload_of(name))

    def fire(self, payload: Mapping[str, Any], due: float) -> None:
        self.pipeline.run_job(with_occurrence(payload, due)["sessions_deferred"])

    def stored_state(self) -> Any:
        conversation = self.sessions.get(self.stored)
        return None if conversation is None else conversation.state

    def state(self) -> Any:
        """The bot's part of the stored state."""
        return timer_rules.split(self.stored_state())[0]

    def timers(self) -> dict[str, Any]:
        """The pending timers kept beside it."""
        return timer_rules.split(self.stored_state())[1]

    def version(self) -> int | None:
        conversation = self.sessions.get(self.stored)
        return None if conversation is None else conversation.version


def _local(tmp_path: Path) -> tuple[Any, Any]:
    scheduler = SQLiteScheduler(str(tmp_path / "timers.sqlite3"), next_time=next_time)

    def payload_of(name: str) -> Mapping[str, Any]:
        (found,) = [s for s in scheduler.pending() if s.name == name]
        return found.payload

    return scheduler, payload_of


@pytest.fixture(params=["local", "eventbridge"])
def world(request: pytest.FixtureRequest, store: Store, tmp_path: Path) -> Iterator[World]:
    if request.param == "local":
        yield World(store, *_local(tmp_path))
        return
    import boto3
    from moto import mock_aws

    from sessions.eventbridge import EventBridgeScheduler

    with mock_aws():
        client = boto3.client("scheduler", region_name="us-east-1")
        client.create_schedule_group(Name="sessions-test")
        scheduler = EventBridgeScheduler(
            "sessions-test",
            targets={"slack": "arn:aws:lambda:us-east-1:123456789012:function:sessions-test-slack"},
            role_arn="arn:aws:iam::123456789012:role/sessions-test-timers",
            dead_letter_arn="arn:aws:sqs:us-east-1:123456789012:sessions-test-timer-failures",
            cron_expression=lambda cron, tz: (
                __import__("bot.cron").cron.Cron.parse(cron, tz).eventbridge()
            ),
            client=client,
        )

        def payload_of(name: str) -> Mapping[str, Any]:
            found = client.get_schedule(Name=name, GroupName="sessions-test")
            data: dict[str, Any] = json.loads(found["Target"]["Input"])
            return data

        world = World(store, scheduler, payload_of)
        world.client = client  # type: ignore[attr-defined]
        yield world


def test_a_timer_is_created_once_under_ten_concurrent_redeliveries(world: World) -> None:
    at = time.time()
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda _: world.say("set remind 120", "ev-set", at=at), range(10)))
    assert len(world.schedules()) == 1
    assert len(world.scheduler.created) == 1  # only the committed turn scheduled it
    pending = world.timers()
    assert list(pending) == ["remind"] and pending["remind"]["due"] == pytest.approx(at + 120)
    assert [kind for kind, _ in world.platform.sent] == ["text"]


def test_a_timer_fires_once_under_five_concurrent_scheduler_deliveries(world: World) -> None:
    at = time.time()
    world.say("set remind 120", "ev-set", at=at)
    (name,) = world.schedules()
    payload = world.payload(name)
    assert OCCURRENCE in json.dumps(payload)  # the scheduler fills the due time in
    with ThreadPoolExecutor(5) as pool:
        list(pool.map(lambda _: world.fire(payload, at + 120), range(5)))
    state = world.state()
    assert state["fired"] == [["remind", pytest.approx(at + 120)]]
    assert world.timers() == {} and "__timers__" not in json.dumps(world.stored_state())
    fires = [replies for kind, replies in world.platform.sent if kind == "timer"]
    assert fires == [["remind {'n': 1}"]]
    # A late retry of the same fire (or another occurrence of a gone timer) does nothing.
    version = world.version()
    world.fire(payload, at + 120)
    world.fire(payload, at + 180)
    assert world.version() == version


def test_a_fire_in_iso_time_as_eventbridge_sends_it(world: World) -> None:
    at = float(int(time.time()))
    world.say("set remind 60", "ev-set", at=at)
    (name,) = world.schedules()
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at + 60))
    world.fire(world.payload(name), iso)  # type: ignore[arg-type]
    assert world.state()["fired"] == [["remind", at + 60]]


def test_cancel_by_name_unschedules_and_a_late_fire_does_nothing(world: World) -> None:
    at = time.time()
    world.say("set remind 120", "ev-set", at=at)
    (name,) = world.schedules()
    payload = world.payload(name)
    world.say("cancel remind", "ev-cancel", at=at + 1)
    assert world.schedules() == [] and world.scheduler.deleted == [name]
    version = world.version()
    world.fire(payload, at + 120)  # a fire already on its way
    assert world.version() == version and "fired" not in world.state()


def test_setting_a_name_again_replaces_the_timer(world: World) -> None:
    at = time.time()
    world.say("set remind 120", "ev-1", at=at)
    (first,) = world.schedules()
    old = world.payload(first)
    world.say("set remind 300", "ev-2", at=at + 1)
    (second,) = world.schedules()
    assert second != first and world.scheduler.deleted == [first]
    world.fire(old, at + 120)
    assert "fired" not in world.state()
    world.fire(world.payload(second), at + 301)
    assert world.state()["fired"] == [["remind", pytest.approx(at + 301)]]


def test_a_later_message_cancels_a_cancel_on_message_timer(world: World) -> None:
    at = time.time()
    world.say("idle", "ev-idle", at=at)
    (name,) = world.schedules()
    payload = world.payload(name)
    world.say("hello", "ev-hello", at=at + 5)
    assert world.schedules() == []
    version = world.version()
    world.fire(payload, at + 60)
    assert world.version() == version and "fired" not in world.state()
    # Without a later message it fires.
    world.say("idle", "ev-idle-2", at=at + 10)
    (name,) = world.schedules()
    world.fire(world.payload(name), at + 70)
    assert world.state()["fired"] == [["idle", pytest.approx(at + 70)]]


def test_a_recurring_timer_fires_once_per_time(world: World) -> None:
    at = time.time()
    world.say("daily", "ev-daily", at=at)
    (name,) = world.schedules()
    payload = world.payload(name)
    first = world.timers()["daily"]["due"]
    second = next_time("0 9 * * *", "Europe/Berlin", first)
    assert second is not None and second - first in (82_800, 86_400, 90_000)  # a day, DST
    for due in (first, first, second, second):
        world.fire(payload, due)
    assert [f[1] for f in world.state()["fired"]] == [first, second]
    assert world.timers()["daily"]["due"] == next_time("0 9 * * *", "Europe/Berlin", second)
    assert len(world.schedules()) == 1  # still scheduled


def test_a_user_delete_cancels_their_timers_and_a_late_fire_stores_nothing(
    world: World,
) -> None:
    at = time.time()
    world.say("set remind 120", "ev-set", at=at)
    world.say("daily", "ev-daily", at=at + 1)
    names = world.schedules()
    payloads = [world.payload(n) for n in names]
    assert len(names) == 2
    world.sessions.delete_user(UserKey("slack", "T0001", "U0001"))
    assert world.schedules() == []
    for payload in payloads:  # fires already on their way
        world.fire(payload, at + 120)
    assert world.sessions.get(world.stored) is None
    exported = world.sessions.export(UserKey("slack", "T0001", "U0001"))
    assert exported["conversations"] == [] and exported["events"] == []
    assert [kind for kind, _ in world.platform.sent] == ["text", "text"]


def test_a_workspace_erase_cancels_every_timer_of_the_workspace(world: World) -> None:
    world.say("set remind 120", "ev-set")
    other = Schedule(
        name=partition_prefix("slack", "T0002", "slack#T0002#U0009") + "x" * 28,
        at=time.time() + 60,
        payload={"sessions_deferred": {"kind": "fire"}},
        target="slack",
    )
    world.scheduler.create(other)
    world.sessions.erase_workspace("slack", "T0001")
    assert world.schedules() == []
    assert [s.name for s in world.scheduler.pending("t.")] == [other.name]


def test_the_state_outlives_its_pending_timers(world: World) -> None:
    at = time.time()
    world.say("set remind 2592000", "ev-set", at=at)  # thirty days, past the idle TTL
    conversation = world.sessions.get(world.stored)
    assert conversation is not None
    assert conversation.expires_at >= at + 2_592_000
