"""A hot item through the real Slack edge, with really signed requests, on SQLite and on AWS's
DynamoDB Local: a vote on a poll its container knows is hot is handed to the serialised path at
once (acked, nothing written, a duplicate delivery not handed twice), the serialised path
applies the handed-off votes as one group commit (one read, one write) with each voter told
once, and inside Lambda with no serial queue a busy vote (on an item known hot, or one that
really loses its race) goes to the deferral instead of being apologised for and dropped."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import handlers.slack
from examples.poll import PollBot
from handlers.pipeline import hot
from handlers.pipeline.serial import ViaDeferral
from handlers.settings import Settings, from_env
from sessions import ConversationKey, Sessions
from sessions.store import Store
from tests.fakes import FakeSlack, QueueDeferrer, StoreWrapper, fake_slack
from tests.functional.conftest import select_store
from tests.slack_requests import block_action, slash

CHANNEL = "C0HOT01"
POLL = ConversationKey.slack(team="T0001", channel=CHANNEL, user="U0ALICE").scoped(
    "channel", "poll"
)


class Held:
    """The serial queue, held: keeps each job handed to it (as SQS would carry it) until the
    test runs them."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []

    def submit(self, job: dict[str, Any], group: str) -> None:
        self.jobs.append(json.loads(json.dumps(job)))


class Counting(StoreWrapper):
    """A real store whose reads and writes of one turn or one batch are counted."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.calls: list[str] = []
        #: Runs once, at the next commit, before it is made.
        self.before_commit: Callable[[], None] | None = None

    def load(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("load")
        return self.inner.load(*args, **kwargs)

    def commit(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("commit")
        hook, self.before_commit = self.before_commit, None
        if hook is not None:
            hook()
        return self.inner.commit(*args, **kwargs)

    def load_batch(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("load_batch")
        return self.inner.load_batch(*args, **kwargs)

    def commit_batch(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("commit_batch")
        return self.inner.commit_batch(*args, **kwargs)


@dataclasses.dataclass
class World:
    fake: FakeSlack
    store: Counting
    sessions: Sessions
    deferrer: QueueDeferrer

    def slack(self, settings: Settings | None = None, **overrides: Any) -> handlers.slack.SlackEdge:
        return handlers.slack.build(
            settings or from_env(),
            sessions=self.sessions,
            bot=PollBot(),
            deferrer=self.deferrer,
            **overrides,
        )

    def votes(self) -> dict[str, int]:
        stored = self.sessions.get(POLL)
        assert stored is not None
        return dict(stored.state["polls"]["1"]["votes"])

    def told(self, user: str) -> int:
        return sum(
            1
            for call in self.fake.responses()
            if call.path == f"/response/vote-{user}"
            and str(call.body.get("text", "")).startswith("You voted")
        )


@pytest.fixture(params=["sqlite", "dynamodb_local"])
def world(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[World]:
    with fake_slack() as fake:
        for name, value in fake.edge_env().items():
            monkeypatch.setenv(name, value)
        store: Store = select_store(request, monkeypatch, tmp_path)
        counting = Counting(store)
        yield World(fake, counting, Sessions(counting), QueueDeferrer())
        store.close()


def ok(answer: dict[str, Any]) -> dict[str, Any]:
    assert answer["statusCode"] == 200, answer
    return answer


def vote(world: World, user: str, option: int) -> dict[str, Any]:
    return block_action(
        f"1:{option}",
        channel=CHANNEL,
        user=user,
        action_id="poll:vote",
        response_url=world.fake.response_url(f"vote-{user}"),
    )


def open_poll(slack: handlers.slack.SlackEdge) -> None:
    ok(slack.handle(slash("Lunch? pizza, sushi", command="/poll", channel=CHANNEL,
                          user="U0ALICE")))  # fmt: skip


def test_a_vote_on_a_hot_poll_is_handed_off_at_once_and_its_duplicate_not_again(
    world: World,
) -> None:
    held = Held()
    slack = world.slack(serialiser=held)
    open_poll(slack)
    version = world.sessions.get(POLL).version  # type: ignore[union-attr]
    hot.lost_race(slack.pipeline, POLL)  # a turn of this container lost a race on the poll
    world.store.calls.clear()
    request = vote(world, "U0BOB", 1)
    ok(slack.handle(request))
    ok(slack.handle(request))  # the same signed request again, while the first is queued
    assert len(held.jobs) == 1
    assert world.store.calls == []  # not tried: no read, no write
    assert world.sessions.get(POLL).version == version  # type: ignore[union-attr]
    assert world.told("U0BOB") == 0
    slack.run_batch(held.jobs)  # what the serial queue's consumer does with it
    assert world.votes() == {"U0BOB": 1}
    assert world.told("U0BOB") == 1


def test_handed_off_votes_are_one_group_commit_and_each_voter_is_told_once(
    world: World,
) -> None:
    held = Held()
    slack = world.slack(serialiser=held)
    open_poll(slack)
    version = world.sessions.get(POLL).version  # type: ignore[union-attr]
    hot.lost_race(slack.pipeline, POLL)
    voters = [f"U0V{n:04d}" for n in range(6)]
    for n, user in enumerate(voters):
        ok(slack.handle(vote(world, user, n % 2)))
    assert len(held.jobs) == len(voters)
    world.store.calls.clear()
    slack.run_batch([*held.jobs, held.jobs[0]])  # SQS may deliver one twice
    assert world.store.calls == ["load_batch", "commit_batch"]
    assert world.votes() == {user: n % 2 for n, user in enumerate(voters)}
    assert world.sessions.get(POLL).version == version + len(voters)  # type: ignore[union-attr]
    assert [world.told(user) for user in voters] == [1] * len(voters)


class During(Held):
    """The serial queue, held, that runs ``during`` inside the first ``submit`` (before the
    job is queued): another delivery arriving while the first is being handed off."""

    def __init__(self, during: Callable[[], None]) -> None:
        super().__init__()
        self.during: Callable[[], None] | None = during

    def submit(self, job: dict[str, Any], group: str) -> None:
        during, self.during = self.during, None
        if during is not None:
            during()
        super().submit(job, group)


def test_copies_of_a_vote_arriving_at_once_are_handed_off_once(world: World) -> None:
    """A copy that arrives while the first is still being queued is acked, not queued again
    (each SQS ``SendMessage`` is paid for, and FIFO would drop it anyway)."""
    request = vote(world, "U0BOB", 1)
    answers: list[dict[str, Any]] = []
    held = During(lambda: answers.append(ok(slack.handle(request))))
    slack = world.slack(serialiser=held)
    open_poll(slack)
    hot.lost_race(slack.pipeline, POLL)
    ok(slack.handle(request))
    assert len(answers) == 1  # the copy was answered while the first was being queued
    assert len(held.jobs) == 1
    slack.run_batch(held.jobs)
    assert world.votes() == {"U0BOB": 1}
    assert world.told("U0BOB") == 1


def test_a_vote_that_loses_its_race_after_its_copy_was_handed_off_is_not_handed_again(
    world: World,
) -> None:
    """The first delivery of a vote runs (the poll is not known to be hot); a copy arrives
    meanwhile and is handed off at once (the item is busy in this container); then the first
    loses its race to another writer: the copy's job holds the vote, so it is not queued a
    second time."""
    held = Held()
    slack = world.slack(serialiser=held)
    open_poll(slack)
    request = vote(world, "U0BOB", 1)

    def meanwhile() -> None:
        ok(slack.handle(request))  # the copy: handed off
        assert len(held.jobs) == 1
        # Another writer commits first (a vote through a second container).
        second = world.slack(serialiser=Held())
        ok(second.handle(vote(world, "U0CAROL", 0)))

    world.store.before_commit = meanwhile
    ok(slack.handle(request))
    assert world.store.before_commit is None  # the first did reach its commit
    assert len(held.jobs) == 1
    slack.run_batch(held.jobs)
    assert world.votes() == {"U0BOB": 1, "U0CAROL": 0}
    assert world.told("U0BOB") == 1


def test_a_lone_handed_off_vote_is_a_group_commit_of_one(world: World) -> None:
    """Its membership mark written, then its user's tombstone read with the poll (one read),
    one write: one request less than the turn with its mark."""
    held = Held()
    slack = world.slack(serialiser=held)
    open_poll(slack)
    hot.lost_race(slack.pipeline, POLL)
    ok(slack.handle(vote(world, "U0BOB", 1)))
    world.store.calls.clear()
    slack.run_batch(held.jobs)
    assert world.store.calls == ["load_batch", "commit_batch"]
    assert world.votes() == {"U0BOB": 1}
    assert world.told("U0BOB") == 1


def test_inside_lambda_without_a_serial_queue_a_busy_vote_goes_to_the_deferral(
    world: World,
) -> None:
    settings = dataclasses.replace(
        from_env(), lambda_function_name="poll-slack", serial_queue_url=None
    )
    slack = world.slack(settings)
    assert isinstance(slack.serialiser, ViaDeferral)  # threads would die with the invocation
    open_poll(slack)
    hot.lost_race(slack.pipeline, POLL)
    ok(slack.handle(vote(world, "U0BOB", 0)))
    assert len(world.deferrer.jobs) == 1  # the vote, handed off: not apologised for, not lost
    world.deferrer.drain(slack.run_deferred)
    assert world.votes() == {"U0BOB": 0}
    assert world.told("U0BOB") == 1


class Racing(StoreWrapper):
    """A real store on which, once armed, the next commit of the poll's item loses its race
    for real: another container's vote is committed on the item first."""

    def __init__(self, inner: Any, rival: Any) -> None:
        super().__init__(inner)
        self.rival = rival
        self.armed = False

    def commit(self, write: Any) -> Any:
        if self.armed and write.key.scope == "channel" and write.key.channel == CHANNEL:
            self.armed = False
            self.rival()
        return self.inner.commit(write)


def test_inside_lambda_without_a_serial_queue_a_vote_that_loses_its_race_is_deferred(
    world: World,
) -> None:
    """No queue configured, inside Lambda, on an item no container knows is hot: a vote that
    really loses its race (another container's vote commits between its read and its write)
    is handed to the deferral (a vote is an interaction: Slack never sends it again), never
    apologised for and dropped; the deferral applies it once and tells the voter once."""
    settings = dataclasses.replace(
        from_env(), lambda_function_name="poll-slack", serial_queue_url=None
    )
    other = world.slack(settings)  # another container, on the same store
    open_poll(other)
    racing = Racing(world.store, lambda: ok(other.handle(vote(world, "U0CAROL", 1))))
    slack = handlers.slack.build(
        settings, sessions=Sessions(racing), bot=PollBot(), deferrer=world.deferrer
    )
    assert isinstance(slack.serialiser, ViaDeferral)
    racing.armed = True
    ok(slack.handle(vote(world, "U0BOB", 0)))
    assert not racing.armed  # the race happened
    assert world.votes() == {"U0CAROL": 1}
    assert len(world.deferrer.jobs) == 1  # handed off
    assert not [c for c in world.fake.responses() if c.path == "/response/vote-U0BOB"]
    world.deferrer.drain(slack.run_deferred)
    assert world.votes() == {"U0CAROL": 1, "U0BOB": 0}
    assert world.told("U0BOB") == 1 and world.told("U0CAROL") == 1
