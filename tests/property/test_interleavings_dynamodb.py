"""Property, on AWS's DynamoDB Local: whatever the interleaving of deliveries, duplicates,
concurrent turns, a user delete and crashes at any step, no state transition is applied twice
or lost, nothing of a deleted user's survives a delete that completed, and no reply is sent
twice. Some events are turns over two scopes (a channel's state, outside the user's
partition, and the user's own item in that channel, committed together): each is applied
once to both or to neither.

An explicit interleaving model: each delivery (and the delete) runs in its own thread, and
every DynamoDB request it makes and every reply it sends is a scheduling point. Only one actor
runs at a time; hypothesis picks which parked actor goes next, and whether it dies there
instead (``Crash``, as a killed Lambda would). A crashed or busy delivery is redelivered, as the
platform does; a crashed delete is run again, as an operator would. So the interleavings are
those of real requests, at DynamoDB's own unit of atomicity.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sessions import BusyError, ConversationKey, Sessions
from sessions.dynamodb import DynamoDBStore
from sessions.store import EventRecord, StoredState, Tombstone

pytestmark = pytest.mark.dynamodb_local

_users = itertools.count(1)
CRASHES_PER_EVENT = 2  # then it gets through, as a redelivery eventually does


class Crash(BaseException):
    """The invocation dies at this step: nothing after it runs."""


@dataclass
class Actor:
    name: str
    label: str
    run: Callable[[], None]
    state: str = "running"  # running | parked | finished
    step: str = ""
    decision: str | None = None


@dataclass
class Scheduler:
    actors: dict[str, Actor] = field(default_factory=dict)
    cv: threading.Condition = field(default_factory=threading.Condition)
    failure: BaseException | None = None
    requests: Counter[str] = field(default_factory=Counter)

    def spawn(
        self, name: str, label: str, run: Callable[[], None], on_end: Callable[[bool], None]
    ) -> None:
        actor = Actor(name, label, run)
        self.actors[name] = actor

        def main() -> None:
            crashed = False
            try:
                run()
            except Crash:
                crashed = True
            except BaseException as exc:  # a real failure: the test reports it
                self.failure = exc
            finally:
                on_end(crashed)
                with self.cv:
                    actor.state = "finished"
                    self.cv.notify_all()

        threading.Thread(target=main, name=name, daemon=True).start()

    def gate(self, step: str) -> None:
        actor = self.actors.get(threading.current_thread().name)
        if actor is None:  # setup and checks run unscheduled
            return
        with self.cv:
            actor.state, actor.step, actor.decision = "parked", step, None
            self.cv.notify_all()
            if not self.cv.wait_for(lambda: actor.decision is not None, timeout=30):
                raise RuntimeError(f"{actor.name} was never scheduled")
            decision = actor.decision
            actor.state = "running"
        if decision == "crash":
            raise Crash(step)

    def settle(self) -> list[Actor]:
        """Wait until no actor is running; return the parked ones."""
        with self.cv:
            if not self.cv.wait_for(
                lambda: all(a.state != "running" for a in self.actors.values()), timeout=30
            ):
                raise RuntimeError("an actor neither parked nor finished")
            return sorted(
                (a for a in self.actors.values() if a.state == "parked"), key=lambda a: a.name
            )

    def release(self, actor: Actor, decision: str) -> None:
        with self.cv:
            actor.decision = decision
            actor.state = "released"
            self.cv.notify_all()
        with self.cv:
            self.cv.wait_for(lambda: actor.state != "released", timeout=30)


class GatedClient:
    """The real DynamoDB Local client; every request first waits for the scheduler."""

    def __init__(self, client: Any, scheduler: Scheduler) -> None:
        self._client = client
        self._scheduler = scheduler

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._scheduler.gate(name)
            self._scheduler.requests[name] += 1
            return attr(*args, **kwargs)

        return call


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    before = draw(st.lists(st.sampled_from(["C1", "C2"]), min_size=1, max_size=4))
    delete = draw(st.booleans())
    after = draw(st.lists(st.sampled_from(["C1", "C2"]), max_size=3)) if delete else []
    copies = draw(st.lists(st.integers(1, 2), min_size=len(before), max_size=len(before)))
    # A busy conversation: C1 already holds this many events (a full item moves its records
    # out to a page with the next commit), some of them redelivered during the run; event
    # times in milliseconds from a platform clock minutes off ours.
    busy = draw(st.sampled_from([0, 0, 20, 36, 37, 59, 60]))
    again = draw(st.lists(st.integers(0, busy - 1), max_size=2)) if busy else []
    skew = draw(st.sampled_from([0.0, -180.25, 240.125]))
    shared = draw(st.lists(st.integers(1, 2), max_size=3))  # two-scope events, their copies
    return {
        "shared": shared,
        "before": list(zip(before, copies, strict=True)),
        "delete": delete,
        "after": after,
        "busy": busy,
        "again": again,
        "skew": skew,
    }


def append(state: dict[str, Any], event: str) -> tuple[dict[str, Any], list[str], None]:
    return {"applied": [*state.get("applied", []), event]}, [f"reply:{event}"], None


def append_both(state: tuple[Any, Any], event: str) -> tuple[tuple[Any, Any], list[str], None]:
    """A turn over two scopes: the event goes into the channel's state and the user's."""
    channel, mine = state
    channel = {"applied": [*(channel or {}).get("applied", []), event]}
    mine = {"applied": [*(mine or {}).get("applied", []), event]}
    return (channel, mine), [f"reply:{event}"], None


#: Interleavings per run: ``make test`` runs 120, ``make test-long`` 1,000.
EXAMPLES = int(os.environ.get("INTERLEAVING_EXAMPLES") or 120)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(scenario=scenarios(), data=st.data())
def test_every_interleaving_keeps_the_guarantees(
    scenario: dict[str, Any], data: st.DataObject, local_client: Any, local_table: str
) -> None:
    scheduler = Scheduler()
    store = DynamoDBStore(local_table, client=GatedClient(local_client, scheduler))  # type: ignore[arg-type]
    sessions = Sessions(store, max_attempts=3, sleep=lambda _: None)
    n = next(_users)
    team = f"T{n}"
    user = ConversationKey.slack(team=team, channel="C1", user="U1").user_key
    bystander = ConversationKey.slack(team=team, channel="C1", user="U2")
    sent: Counter[str] = Counter()
    lost_at_send: set[str] = set()  # crashed after its commit, before its reply went out
    lock = threading.Lock()
    delete_state = {"done": False}
    pending: list[tuple[str, Callable[[], None]]] = []
    names = itertools.count()

    def deliver(key: ConversationKey, event: str, when: float) -> None:
        def sender(_: ConversationKey, replies: Sequence[Any]) -> None:
            try:
                scheduler.gate("send")
            except Crash:
                with lock:
                    lost_at_send.add(event)
                raise
            with lock:
                sent.update(replies)

        def run() -> None:
            try:
                if event.startswith("shared"):
                    channel, mine = key.scoped("channel", "ns"), key.scoped("conversation", "ns")
                    sessions.run(channel, event, append_both, event, event_time=when,
                                 sender=sender, initial=lambda: None, scopes=[mine])  # fmt: skip
                else:
                    sessions.run(key, event, append, event, event_time=when, sender=sender)
            except BusyError:
                pending.append((event, run))  # a 5xx: the platform redelivers

        pending.append((event, run))

    def start_after_events() -> None:
        for i, channel in enumerate(scenario["after"]):
            key = ConversationKey.slack(team=team, channel=channel, user="U1")
            # One time for all (after the delete's): a time read from the clock here would
            # differ by a millisecond or not from run to run, and so would the requests.
            deliver(key, f"after{i}", now + 0.5)

    # The platform's clock (which event times and, here, the delete's time are read from)
    # runs ``skew`` seconds off ours.
    skew = scenario["skew"]
    now = round(time.time() + skew, 3)
    stone = Tombstone(generation=int(now * 1000), expires_at=int(now) + 3600)
    started = threading.Event()

    class StartsAfterTombstone:
        """Genuine new events can only happen once the delete has begun."""

        def __getattr__(self, name: str) -> Any:
            attr = getattr(store.client, name)  # gated
            if name not in ("put_item", "transact_write_items"):  # the tombstone's write
                return attr

            def put(**kwargs: Any) -> Any:
                out = attr(**kwargs)
                if not started.is_set():
                    started.set()
                    start_after_events()
                return out

            return put

    def delete() -> None:
        # A crashed delete is resumed with the same tombstone: the delete goes on.
        DynamoDBStore(local_table, client=StartsAfterTombstone()).delete_user(user, tombstone=stone)  # type: ignore[arg-type]
        delete_state["done"] = True

    # A busy conversation's earlier events, committed before the run (unscheduled).
    busy_at = now - 60
    setup = Sessions(DynamoDBStore(local_table, client=local_client))
    busy_key = ConversationKey.slack(team=team, channel="C1", user="U1")
    for i in range(scenario["busy"]):
        setup.run(busy_key, f"busy{i}", append, f"busy{i}", event_time=busy_at + i * 0.25)
    for i in scenario["again"]:  # redelivered during the run, perhaps after a page move
        deliver(busy_key, f"busy{i}", busy_at + i * 0.25)
    # Events before the delete happened already (their time is in the past).
    happened = now - 5 + 0.0007
    for i, (channel, copies) in enumerate(scenario["before"]):
        key = ConversationKey.slack(team=team, channel=channel, user="U1")
        for _ in range(copies):  # duplicate deliveries, possibly concurrent
            deliver(key, f"before{i}", happened)
    deliver(bystander, "bystander", happened)
    shared_key = ConversationKey.slack(team=team, channel="C1", user="U1")
    for i, copies in enumerate(scenario["shared"]):
        for _ in range(copies):
            deliver(shared_key, f"shared{i}", happened)
    if scenario["delete"]:
        pending.append(("delete", delete))

    def spawn_pending() -> None:
        while pending:
            label, run = pending.pop(0)

            def on_end(crashed: bool, label: str = label, run: Callable[[], None] = run) -> None:
                if crashed:
                    pending.append((label, run))  # redelivered / run again

            scheduler.spawn(f"{next(names):03d}-{label}", label, run, on_end)

    crashes: Counter[str] = Counter()
    steps = 0
    while True:
        spawn_pending()
        parked = scheduler.settle()
        if scheduler.failure is not None:
            raise scheduler.failure
        if not parked:
            if pending:
                continue
            break
        steps += 1
        assert steps < 2000, "the model does not terminate"
        actor = data.draw(st.sampled_from(parked), label="next")
        crash = crashes[actor.label] < CRASHES_PER_EVENT and (
            data.draw(st.integers(0, 5), label="crash?") == 0
        )
        if crash:
            crashes[actor.label] += 1
        scheduler.release(actor, "crash" if crash else "go")

    if scenario["delete"]:
        # The delete's settle pass (``Sessions.delete_user(settle=...)``): once every turn in
        # flight at the delete has ended (here: every actor), delete again under the same
        # tombstone what those turns wrote before their refused commits (a page).
        DynamoDBStore(local_table, client=local_client).delete_user(user, tombstone=stone)

    for operation in ("batch_write_item", "query"):  # records moved out, a page read
        if scheduler.requests[operation]:
            event(f"{operation} during the run")

    # -- invariants ----------------------------------------------------------------------------
    items = dict(DynamoDBStore(local_table, client=local_client).user_items(user))
    before_events = {f"before{i}" for i in range(len(scenario["before"]))}
    before_events |= {f"busy{i}" for i in range(scenario["busy"])}
    shared_events = {f"shared{i}" for i in range(len(scenario["shared"]))}
    before_events |= shared_events
    after_events = {f"after{i}" for i in range(len(scenario["after"]))}
    applied = [
        e for item in items.values() if isinstance(item, StoredState)
        for e in _decode(item)["applied"]
    ]  # fmt: skip
    assert len(applied) == len(set(applied)), f"a transition applied twice: {applied}"
    if scenario["delete"]:
        assert delete_state["done"]
        survivors = {sk: item for sk, item in items.items() if not isinstance(item, Tombstone)}
        assert not (set(applied) & before_events), f"deleted data came back: {applied}"
        for sk, item in survivors.items():
            assert item.generation >= stone.generation, f"pre-delete item {sk} kept"
        assert set(applied) == after_events, f"lost: {after_events - set(applied)}"
    else:
        assert set(applied) == before_events, f"lost: {before_events - set(applied)}"
    events = [i for i in items.values() if isinstance(i, EventRecord)]
    assert not any(e.failed for e in events)

    other = Sessions(DynamoDBStore(local_table, client=local_client)).get(bystander)
    assert other is not None and other.state == {"applied": ["bystander"]}

    # The channel's state (outside the user's partition, which the delete does not touch).
    channel = Sessions(DynamoDBStore(local_table, client=local_client)).get(
        shared_key.scoped("channel", "ns")
    )
    in_channel = channel.state["applied"] if channel else []
    assert len(in_channel) == len(set(in_channel)), f"applied twice: {in_channel}"
    if not scenario["delete"]:
        assert set(in_channel) == shared_events, f"lost: {shared_events - set(in_channel)}"
    else:
        assert set(in_channel) <= shared_events
    if scenario["shared"]:
        event("two-scope events")

    assert all(count == 1 for count in sent.values()), f"a reply sent twice: {sent}"
    prefilled = {f"busy{i}" for i in range(scenario["busy"])}  # answered before the run
    must_be_sent = (set(applied) | set(in_channel) | {"bystander"}) - lost_at_send - prefilled
    assert {f"reply:{e}" for e in must_be_sent} <= set(sent), (sent, lost_at_send)


def _decode(item: StoredState) -> dict[str, Any]:
    from sessions import codec

    value: dict[str, Any] = codec.decode(item.blob)
    return value
